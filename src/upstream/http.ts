/**
 * The innermost stage: the request on a keep-alive connection of the service's undici pool.
 * A 2xx answer is read (within the size limit) and parsed as JSON; any other status is thrown
 * as a `status` CallError, its body discarded.
 */
import type { Dispatcher, Pool } from 'undici'
import type { ServicePlan } from '../plan/types.ts'
import { CallError, statusError } from './failure.ts'
import type { Transport } from './pipeline.ts'

export function httpSend(pool: Pool, service: ServicePlan): Transport {
  const limit = service.maxResponseSize
  return async (request) => {
    const signal = request.signal
    let res: Dispatcher.ResponseData
    try {
      res = await pool.request({
        method: request.method as Dispatcher.HttpMethod,
        path: request.path,
        headers: request.headers,
        body: request.body,
        signal,
      })
    } catch (err) {
      throw transportError(err, signal)
    }
    if (res.statusCode < 200 || res.statusCode >= 300) {
      // Only the status matters; drain a little so the connection can be reused, else close it.
      await res.body.dump({ limit: 64 * 1024 }).catch(() => {})
      throw statusError(res.statusCode, res.headers)
    }
    let text: string
    try {
      const declared = res.headers['content-length']
      if (declared === undefined) {
        text = await readChunked(res, limit)
      } else if (Number(declared) > limit) {
        // Nothing reads this body, so the error destroy() emits needs a listener or it is uncaught and ends the process.
        res.body.on('error', () => {})
        res.body.destroy()
        throw new CallError('too_large', `response of ${String(declared)} bytes exceeds the ${limit}-byte limit`)
      } else {
        // The common case: the length is known up front, so undici's own reader is safe and fastest.
        text = await res.body.text()
      }
    } catch (err) {
      throw transportError(err, signal)
    }
    let body: unknown = null
    if (text.length > 0) {
      try {
        body = JSON.parse(text)
      } catch (err) {
        throw new CallError('bad_body', `${service.name} answered ${res.statusCode} with a body that is not JSON`, {
          cause: err,
        })
      }
    }
    return { status: res.statusCode, headers: res.headers, body }
  }
}

/** Reads a chunked body, counting as it goes and stopping at the limit. */
async function readChunked(res: Dispatcher.ResponseData, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) {
      res.body.destroy()
      throw new CallError('too_large', `response exceeds the ${limit}-byte limit`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, size).toString('utf8')
}

/** What undici threw, as a CallError: the abort's reason when the try was aborted, else connect or network. */
function transportError(err: unknown, signal: AbortSignal): CallError {
  if (err instanceof CallError) return err
  if (signal.aborted) {
    const reason: unknown = signal.reason
    return reason instanceof CallError ? reason : new CallError('aborted', 'call aborted', { cause: err })
  }
  const code = (err as { code?: string }).code
  const connect =
    code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'UND_ERR_CONNECT_TIMEOUT'
  return new CallError(connect ? 'connect' : 'network', (err as Error).message ?? String(err), { cause: err })
}

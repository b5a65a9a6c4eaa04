/**
 * The innermost stage: the request on a keep-alive connection of the service's undici pool.
 * A 2xx answer is read (within the size limit), decoded when the service compressed it
 * (gzip, deflate, br: the limit holds for the decoded size too) and parsed as JSON; any other
 * status is thrown as a `status` CallError, its body discarded.
 */
import { Transform, type TransformCallback, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib'
import type { Dispatcher, Pool } from 'undici'
import type { ServicePlan } from '../plan/types.ts'
import { CallError, statusError } from './failure.ts'
import type { TryCancel } from './cancel.ts'
import { cancelOf, type Transport } from './pipeline.ts'

/** What every call asks for (runtime/request.ts and the health probes send it): what readDecoded decodes. */
export const ACCEPT_ENCODING = 'gzip, deflate, br'

const DECODERS: Readonly<Record<string, () => Transform>> = {
  gzip: createGunzip,
  'x-gzip': createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress,
}

export function httpSend(pool: Pool, service: ServicePlan): Transport {
  const limit = service.maxResponseSize
  return async (request) => {
    // A try's TryCancel goes to undici as it is (an EventEmitter signal, no listener to register); anything else, its signal.
    const cancel = cancelOf(request)
    if (cancel?.reason != null) throw cancel.reason
    const signal = cancel ?? request.signal
    let res: Dispatcher.ResponseData
    try {
      res = await pool.request({
        method: request.method as Dispatcher.HttpMethod,
        path: request.path,
        headers: request.headers,
        body: request.body,
        // undici documents an EventEmitter that emits 'abort' as a signal too; a TryCancel is its smallest form.
        signal: signal as AbortSignal,
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
      const encoding = res.headers['content-encoding']
      if (declared !== undefined && Number(declared) > limit) {
        // Nothing reads this body, so the error destroy() emits needs a listener or it is uncaught and ends the process.
        res.body.on('error', () => {})
        res.body.destroy()
        throw new CallError('too_large', `response of ${String(declared)} bytes exceeds the ${limit}-byte limit`)
      } else if (encoding !== undefined && encoding !== 'identity') {
        // Only a compressed answer pays for decoding: an uncompressed one costs this header lookup.
        text = await readDecoded(res, encoding, limit)
      } else if (declared === undefined) {
        text = await readChunked(res, limit)
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
        throw new CallError('bad_body', 'answered with a body that is not JSON', {
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

/**
 * Reads a compressed body and decodes it, streaming: at most `limit` bytes are read off the
 * wire and at most `limit` bytes (plus one chunk) are ever inflated, so a small body that
 * inflates to gigabytes fails as `too_large` as soon as it passes the limit, and a body of
 * empty gzip members cannot be read forever either. An empty body is empty, whatever its
 * content-encoding says (as a 200 without one is).
 */
async function readDecoded(res: Dispatcher.ResponseData, encoding: string | string[], limit: number): Promise<string> {
  const codings = (Array.isArray(encoding) ? encoding.join(',') : encoding)
    .toLowerCase()
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '' && c !== 'identity')
  const decoders: Transform[] = []
  // Applied in the order listed, so undone in reverse; more than two is no service's honest answer.
  for (let i = codings.length - 1; i >= 0; i--) {
    const make = codings.length > 2 ? undefined : DECODERS[codings[i] as string]
    if (make === undefined) {
      res.body.on('error', () => {})
      res.body.destroy()
      throw new CallError(
        'bad_body',
        `answered with content-encoding ${codings.join(', ')}, which Baton does not decode`,
      )
    }
    decoders.push(make())
  }
  let read = 0
  const wire = new Transform({
    transform(chunk: Buffer, _encoding: string, done: TransformCallback): void {
      read += chunk.length
      if (read > limit) done(new CallError('too_large', `compressed response exceeds the ${limit}-byte limit`))
      else done(null, chunk)
    },
  })
  const chunks: Buffer[] = []
  let size = 0
  const sink = new Writable({
    write(chunk: Buffer, _encoding: string, done: (error?: Error | null) => void): void {
      size += chunk.length
      if (size > limit) {
        done(new CallError('too_large', `response exceeds the ${limit}-byte limit once decoded`))
        return
      }
      chunks.push(chunk)
      done()
    },
  })
  // Which error came first tells a body that does not decode (bad_body) from a connection that broke (network):
  // the stream that fails emits before the pipeline passes its error on to the others.
  let sourceFailed = false
  let undecodable: unknown = null
  res.body.on('error', () => {
    if (undecodable === null) sourceFailed = true
  })
  for (const decoder of decoders) {
    decoder.on('error', (err) => {
      if (!sourceFailed && !(err instanceof CallError)) undecodable ??= err
    })
  }
  try {
    await pipeline([res.body, wire, ...decoders, sink])
  } catch (err) {
    if (err !== undecodable) throw err
    if (read === 0) return ''
    throw new CallError('bad_body', `answered with a ${codings.join(', ')} body that does not decode`, {
      cause: err,
    })
  }
  return Buffer.concat(chunks, size).toString('utf8')
}

/** What undici threw, as a CallError: the abort's reason when the try was aborted, else connect or network. */
function transportError(err: unknown, signal: AbortSignal | TryCancel): CallError {
  if (err instanceof CallError) return err
  const aborted = 'aborted' in signal ? signal.aborted : signal.reason !== null
  if (aborted) {
    const reason: unknown = signal.reason
    return reason instanceof CallError ? reason : new CallError('aborted', 'call aborted', { cause: err })
  }
  const code = (err as { code?: string }).code
  const connect =
    code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'UND_ERR_CONNECT_TIMEOUT'
  return new CallError(connect ? 'connect' : 'network', (err as Error).message ?? String(err), { cause: err })
}

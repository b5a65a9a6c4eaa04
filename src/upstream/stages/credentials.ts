/**
 * The service's OAuth2 token on every try (client credentials, fetched once for all concurrent
 * callers); a 401 from the service discards the token so that the next try fetches a new one.
 * Static credentials (a bearer token, an API key) are plain headers and need no stage.
 */
import { CallError } from '../failure.ts'
import type { OAuth2Tokens } from '../credentials.ts'
import type { Transport } from '../pipeline.ts'

export function credentialsStage(tokens: OAuth2Tokens | null): ((next: Transport) => Transport) | null {
  if (tokens === null) return null
  return (next) => async (request) => {
    // The endpoint's deadline (and a client hanging up) bound the wait for a token too.
    const token = await untilAborted(tokens.get(), request.signal)
    request.headers = { ...request.headers, authorization: `Bearer ${token}` }
    try {
      return await next(request)
    } catch (err) {
      if (err instanceof CallError && err.status === 401) tokens.reject(token)
      throw err
    }
  }
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(signal.reason as Error)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err as Error)
      },
    )
  })
}

/**
 * What makes two tries the same request to a service, for the stages that let one answer serve
 * several tries (coalescing, the per-call cache): method, path with query, body, and every header
 * sent except those that differ per request without changing the answer. Credentials forwarded
 * from the client (Authorization, Cookie) are headers like any other, so a key never spans two
 * callers' credentials.
 */
import type { Outgoing } from './pipeline.ts'

/** Headers that differ per request without changing the answer: the request id and the trace context. */
export const PER_REQUEST: ReadonlySet<string> = new Set(['x-request-id', 'traceparent', 'tracestate', 'baggage'])

export function requestKey(request: Outgoing): string {
  let key = `${request.method} ${request.path}\n${request.body ?? ''}`
  const headers = request.headers
  for (const name in headers) if (!PER_REQUEST.has(name)) key += `\n${name}:${headers[name]}`
  return key
}

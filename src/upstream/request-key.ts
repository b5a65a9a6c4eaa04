/**
 * What makes two tries the same request to a service, for the stages that let one answer serve
 * several tries (coalescing, the per-call cache): method, path with query, body, and every header
 * sent except those that differ per request without changing the answer. Credentials forwarded
 * from the client (Authorization, Cookie) are headers like any other, so a key never spans two
 * callers' credentials.
 */
import { PER_REQUEST } from '../plan/headers.ts'
import type { Outgoing } from './pipeline.ts'

export function requestKey(request: Outgoing): string {
  let key = `${request.method} ${request.path}\n${request.body ?? ''}`
  const headers = request.headers
  for (const name in headers) if (!PER_REQUEST.has(name)) key += `\n${name}:${headers[name]}`
  return key
}

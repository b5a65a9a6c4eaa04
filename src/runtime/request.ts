/**
 * Builds a call's request from the request's scope: the path and query (encoded), the headers
 * (request id, accept-encoding, the service's static and per-caller headers, the client headers
 * it may see, the call's own), and the JSON body.
 */
import type { Evaluator } from '../expr/index.ts'
import type { RequestView, Scope } from '../plan/scope.ts'
import type { CallPlan } from '../plan/types.ts'
import { CallError } from '../upstream/failure.ts'
import { ACCEPT_ENCODING } from '../upstream/http.ts'
import type { CallRequest } from '../upstream/pipeline.ts'

/** Per request: bodies shared by calls written identically (CallPlan.bodySlot), serialised once. */
export type SharedBodies = (string | undefined)[]

/** The request a call's request is built for. */
export interface RequestState {
  readonly scope: Scope
  readonly requestId: string
  /** The request's shared bodies, allocated on first use. */
  sharedBodies(): SharedBodies
}

/** The path, with its query string, that the call's request goes to. */
export function requestPath(call: CallPlan, scope: Scope): string {
  const path = call.path(scope) as string
  return call.query === null ? path : path + queryString(call.query, scope)
}

/** The call's JSON body, or null when it sends none. */
export function requestBody(call: CallPlan, request: RequestState): string | null {
  if (call.body === null) return null
  const scope = request.scope
  if (call.bodySlot === -1) return JSON.stringify(call.body(scope))
  const shared = request.sharedBodies()
  return (shared[call.bodySlot] ??= JSON.stringify(call.body(scope)))
}

/** The call's request; `path` and `body` when the caller has already made them (a forEach tells its items apart by them). */
export function buildRequest(
  call: CallPlan,
  request: RequestState,
  path: string = requestPath(call, request.scope),
  body: string | null = requestBody(call, request),
): CallRequest {
  const scope = request.scope
  // Services may compress their answers: the transport decodes what this names (a service's `headers` may override it).
  const headers: Record<string, string> = { 'x-request-id': request.requestId, 'accept-encoding': ACCEPT_ENCODING }
  const service = call.service
  for (const [name, value] of service.headers) headers[name] = value
  if (service.forwardHeaders.length > 0) forwardHeaders(service.forwardHeaders, scope.request.headers, headers)
  if (service.authHeaders.length > 0) setHeaders(service.authHeaders, scope, call.name, headers)
  if (call.headers !== null) setHeaders(call.headers, scope, call.name, headers)
  if (body !== null) headers['content-type'] = 'application/json'
  return { method: call.method, path, headers, body }
}

function queryString(query: NonNullable<CallPlan['query']>, scope: Scope): string {
  let out = ''
  for (const [key, evaluate] of query) {
    const value = evaluate(scope)
    if (value === null || value === undefined) continue
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v === null || v === undefined) continue
      out += `${out === '' ? '?' : '&'}${encodeURIComponent(key)}=${encodeURIComponent(typeof v === 'object' ? JSON.stringify(v) : String(v))}`
    }
  }
  return out
}

const INVALID_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/

/** Evaluated header values; a value a header cannot carry (from a client, a claim, a service) fails the call as a bad request. */
function setHeaders(
  list: readonly (readonly [string, Evaluator])[],
  scope: Scope,
  call: string,
  to: Record<string, string>,
): void {
  for (const [name, evaluate] of list) {
    const value = evaluate(scope)
    if (value === null || value === undefined) continue
    const text = typeof value === 'object' ? JSON.stringify(value) : String(value)
    // RFC 9110 field values: visible ASCII, space, tab and obs-text. A line break would inject a header;
    // other characters would make the HTTP client throw, which must not count against the service.
    if (INVALID_FIELD_VALUE.test(text)) {
      throw new CallError(
        'bad_request',
        /[\r\n]/.test(text)
          ? `a value for header ${name} of ${call} contains line breaks`
          : `a value for header ${name} of ${call} has characters a header cannot carry`,
      )
    }
    to[name] = text
  }
}

function forwardHeaders(names: readonly string[], from: RequestView['headers'], to: Record<string, string>): void {
  const connection = from.connection
  const perHop =
    typeof connection === 'string'
      ? connection
          .toLowerCase()
          .split(',')
          .map((s) => s.trim())
      : null
  for (const name of names) {
    const value = from[name]
    if (value === undefined || perHop?.includes(name) === true) continue
    to[name] = Array.isArray(value) ? value.join(', ') : value
  }
}

/** How a failed call turns into the client's answer: the template's error table, in one place. */
import { type ErrorCode, ErrorCodes } from '../errors.ts'
import type { CallError } from '../upstream/failure.ts'

export interface ErrorAnswer {
  readonly status: number
  readonly code: ErrorCode
  readonly message: string
}

/** The answer when a required call fails (deadline and "all timed out" are decided by the scheduler). */
export function answerFor(error: CallError, service: string): ErrorAnswer {
  if (error.kind === 'status' && error.status !== null) {
    const s = error.status
    if (s === 401)
      return { status: 401, code: 'DOWNSTREAM_UNAUTHORIZED', message: `${service} refused the credentials (401)` }
    if (s === 403) return { status: 403, code: 'DOWNSTREAM_FORBIDDEN', message: `${service} refused access (403)` }
    if (s === 429)
      return { status: 429, code: 'DOWNSTREAM_RATE_LIMITED', message: `${service} is rate limiting requests (429)` }
    if (s >= 400 && s < 500)
      return { status: s, code: 'DOWNSTREAM_REJECTED', message: `${service} rejected the request (${s})` }
    if (s >= 300 && s < 400)
      return {
        status: 502,
        code: 'DOWNSTREAM_FAILURE',
        message: `${service} answered a redirect (${s}), which is not followed`,
      }
    return { status: 502, code: 'DOWNSTREAM_FAILURE', message: `${service} failed (${s})` }
  }
  if (error.kind === 'bad_request') return { status: 400, code: 'BAD_REQUEST', message: error.message }
  if (error.kind === 'circuit_open')
    return { status: 502, code: 'CIRCUIT_OPEN', message: `${service} is failing: its circuit breaker is open` }
  if (error.kind === 'bulkhead_full')
    return { status: 503, code: 'BULKHEAD_FULL', message: `too many calls in flight to ${service}` }
  return {
    status: ErrorCodes.DOWNSTREAM_FAILURE.status,
    code: 'DOWNSTREAM_FAILURE',
    message: `${service} failed: ${describe(error)}`,
  }
}

function describe(error: CallError): string {
  switch (error.kind) {
    case 'timeout':
      return 'timed out'
    case 'connect':
      return 'could not connect'
    case 'network':
      return 'connection error'
    case 'bad_body':
      // Not JSON, or compressed in a way that does not decode: the message says which (never the body itself).
      return error.message
    case 'too_large':
      return 'answer too large'
    case 'expression':
      return 'could not build its request'
    case 'too_many_items':
    case 'no_match':
      return error.message
    case 'redirect':
      return error.message
    case 'credentials':
      return 'no credentials for it'
    default:
      return error.message
  }
}

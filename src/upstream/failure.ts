/**
 * Why a call failed: one error type for every failure of a call, from the socket to the
 * scheduler, and one rule for whether a failure says something about the service.
 */

/** Why a call failed; `status` is an HTTP answer outside 2xx, the rest never reached one. */
export type FailureKind =
  | 'status'
  | 'timeout'
  | 'deadline'
  | 'aborted'
  | 'connect'
  | 'network'
  | 'bad_body'
  | 'too_large'
  | 'circuit_open'
  | 'bulkhead_full'
  | 'expression'
  | 'too_many_items'
  | 'no_match'
  | 'bad_request'
  | 'credentials'
  | 'redirect'

import { EmptyPathValueError, ExpressionEvalError } from '../expr/index.ts'
import { readsOnlyTheClient } from '../plan/scope.ts'

type Headers = Readonly<Record<string, string | string[] | undefined>>

export class CallError extends Error {
  readonly kind: FailureKind
  /** The service's status for `status` failures, else null. */
  readonly status: number | null
  /** The service's headers for `status` failures (Retry-After, and `calls.<name>.headers`), else null. */
  readonly headers: Headers | null

  constructor(kind: FailureKind, message: string, options?: { cause?: unknown; status?: number; headers?: Headers }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'CallError'
    this.kind = kind
    this.status = options?.status ?? null
    this.headers = options?.headers ?? null
  }

  /** The service's Retry-After, as it sent it; null when none. */
  get retryAfter(): string | null {
    const value = this.headers?.['retry-after']
    return typeof value === 'string' ? value : null
  }
}

/** A service answered outside 2xx. */
export function statusError(status: number, headers: Headers): CallError {
  return new CallError('status', `answered ${status}`, { status, headers })
}

/**
 * Does this failure count against the service (its breaker, its error rate)? A 5xx answer, a
 * timeout of the call's own, a connection that failed or broke, a body that is not JSON or too
 * large: yes. A 4xx is the service working as designed; the gateway refusing to send (breaker
 * open, bulkhead full, no credentials, a request that cannot be built) and a call cut short
 * by the client say nothing about it. The endpoint's deadline counts only against a call that
 * had no timeout of its own (`timed` false): then the deadline was its timeout; otherwise
 * other calls used the time up.
 *
 * Calls, retries and active health probes all use this one rule.
 */
export function countsAgainstService(error: CallError, timed: boolean): boolean {
  switch (error.kind) {
    case 'status':
      return (error.status as number) >= 500
    case 'deadline':
      return !timed
    case 'timeout':
    case 'connect':
    case 'network':
    case 'bad_body':
    case 'too_large':
      return true
    default:
      return false
  }
}

/** Anything thrown while a call ran, as a CallError (a bug or an unexpected library error becomes `network`). */
export function toCallError(err: unknown): CallError {
  if (err instanceof CallError) return err
  if (err instanceof EmptyPathValueError) return emptyPathValue(err)
  // JSON.stringify of a request body nested too deeply to serialise, or an expression that failed: the request cannot be built.
  if (err instanceof RangeError || err instanceof ExpressionEvalError) {
    return new CallError('expression', (err as Error).message, { cause: err })
  }
  return new CallError('network', err instanceof Error ? err.message : String(err), { cause: err })
}

/**
 * A value a call's path needs is missing or empty. Read from the request, it is the client's
 * mistake (`bad_request`, 400); read from another call's answer, the call cannot be made
 * (`expression`: a required call fails the request, an optional one falls back).
 */
function emptyPathValue(err: EmptyPathValueError): CallError {
  const { source, roots } = err.part
  return new CallError(
    readsOnlyTheClient(roots) ? 'bad_request' : 'expression',
    `${source} is missing or empty, and a path segment cannot be empty`,
    {
      cause: err,
    },
  )
}

/**
 * Who gets in, transport-neutral: per-IP and global limits (before credentials, so a flood of
 * bad tokens is refused before any signature is checked), then credentials, then per-user and
 * per-endpoint limits. Returns the caller (a principal, or null on a public endpoint) or a
 * rejection, with the RateLimit headers every answer of a limited endpoint carries. The HTTP
 * server (server/guard.ts) runs it before the body is read.
 */
import { type ErrorCode, ErrorCodes } from '../errors.ts'
import type { Principal } from '../plan/scope.ts'
import type { EndpointPlan } from '../plan/types.ts'
import type { AuthRequest, Authenticator } from './auth.ts'
import type { LimitVerdict, RateLimits } from './ratelimit.ts'

export interface AdmissionRequest extends AuthRequest {
  /** The client's address (after trusted proxies). */
  readonly ip: string
}

/** Why a request was turned away, as the client is told and as metrics count it. */
export interface Rejection {
  readonly status: number
  readonly code: ErrorCode
  readonly message: string
  /** unauthenticated, forbidden, auth_unavailable, rate_limited, overloaded, rate_limit_unavailable; validation_failed (the server's) */
  readonly reason: string
  readonly headers: Readonly<Record<string, string>>
}

export type Admission =
  | {
      readonly admitted: true
      readonly principal: Principal | null
      readonly headers: Readonly<Record<string, string>>
    }
  | { readonly admitted: false; readonly rejection: Rejection }

/** Told about each rejection (metrics, the log). */
export interface EdgeObserver {
  rejected(
    endpoint: EndpointPlan,
    rejection: Rejection,
    request: { readonly ip: string; readonly requestId: string },
  ): void
}

export type Admit = (request: AdmissionRequest) => Promise<Admission>

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

/** The endpoint's admission; null when it is public and unlimited (then nothing runs before it). */
export function admissionFor(
  endpoint: EndpointPlan,
  authenticator: Authenticator | null,
  limits: RateLimits | null,
): Admit | null {
  const demand = authenticator === null ? null : endpoint.auth
  const limited = limits !== null && !endpoint.rateLimit.exempt ? limits : null
  if (demand === null && limited === null) return null
  return async (request) => {
    const ip = request.ip
    const pending = limited?.before(ip)
    const before = pending == null ? null : await pending
    if (before?.reject != null) return limitRejection(before)
    let principal: Principal | null = null
    if (demand !== null && authenticator !== null) {
      const verdict = await authenticator.check(request, demand)
      if (!verdict.ok) {
        const headers: Record<string, string> =
          verdict.challenge === null ? {} : { 'www-authenticate': verdict.challenge }
        if (verdict.code === 'AUTH_UNAVAILABLE') headers['retry-after'] = '1'
        // The limits counted before credentials were looked at go on the 401/403 too.
        return {
          admitted: false,
          rejection: {
            status: ErrorCodes[verdict.code].status,
            code: verdict.code,
            message: verdict.message,
            reason:
              verdict.code === 'FORBIDDEN'
                ? 'forbidden'
                : verdict.code === 'AUTH_UNAVAILABLE'
                  ? 'auth_unavailable'
                  : 'unauthenticated',
            headers: before === null ? headers : { ...before.headers, ...headers },
          },
        }
      }
      principal = verdict.principal
    }
    const pendingAfter = limited?.after(endpoint, ip, principal, before)
    const after = pendingAfter == null ? before : await pendingAfter
    if (after?.reject != null) return limitRejection(after)
    return { admitted: true, principal, headers: after?.headers ?? NO_HEADERS }
  }
}

function limitRejection(verdict: LimitVerdict): Admission {
  const { code, retryAfter, message, limit } = verdict.reject!
  return {
    admitted: false,
    rejection: {
      status: ErrorCodes[code].status,
      code,
      message,
      reason: limit === 'global' ? 'overloaded' : limit === 'store' ? 'rate_limit_unavailable' : 'rate_limited',
      headers: { ...verdict.headers, 'retry-after': String(retryAfter) },
    },
  }
}

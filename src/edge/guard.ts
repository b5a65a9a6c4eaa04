/**
 * An endpoint's edge as a fastify onRequest hook, run before the body is read: per-IP and
 * global limits, then credentials, then per-user and per-endpoint limits. Rejections are
 * answered in the envelope, counted, and logged with the access log.
 */
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import type { Logger } from 'pino'
import { type ErrorCode, ErrorCodes, errorEnvelope } from '../errors.ts'
import type { GatewayMetrics } from '../observability/metrics.ts'
import type { EndpointPlan } from '../plan/types.ts'
import { requestIdOf, send } from '../server/answers.ts'
import type { Authenticator } from './auth.ts'
import type { LimitVerdict, RateLimits } from './ratelimit.ts'

export interface GuardOptions {
  readonly metrics: GatewayMetrics | null
  readonly logger: Logger | null
  /** Log a line per rejection (with the access log). */
  readonly accessLog: boolean
}

/** Null when the endpoint is public and unlimited. */
export function guardFor(
  endpoint: EndpointPlan,
  authenticator: Authenticator | null,
  limits: RateLimits | null,
  options: GuardOptions,
): onRequestAsyncHookHandler | null {
  const demand = authenticator === null ? null : endpoint.auth
  const limited = limits !== null && !endpoint.rateLimit.exempt ? limits : null
  if (demand === null && limited === null) return null
  const { metrics, logger } = options
  const reject = (
    req: FastifyRequest,
    reply: FastifyReply,
    status: number,
    code: ErrorCode,
    message: string,
    reason: string,
    headers: Readonly<Record<string, string>>,
  ): FastifyReply => {
    metrics?.requestRejected(endpoint, reason)
    if (options.accessLog)
      logger?.info(
        {
          event: 'rejected',
          method: endpoint.method,
          route: endpoint.key,
          status,
          code,
          reason,
          ip: req.ip,
          requestId: requestIdOf(req),
        },
        `${endpoint.method} ${endpoint.route} ${status} ${code}`,
      )
    return send(reply, { status, body: errorEnvelope(code, message), headers }, requestIdOf(req))
  }
  /** Sets the verdict's headers; false (and the answer sent) when it rejects. */
  const applyLimits = (req: FastifyRequest, reply: FastifyReply, verdict: LimitVerdict): boolean => {
    if (verdict.reject === null) {
      for (const name in verdict.headers) reply.header(name, verdict.headers[name])
      return true
    }
    const { code, retryAfter, message, limit } = verdict.reject
    reject(
      req,
      reply,
      ErrorCodes[code].status,
      code,
      message,
      limit === 'global' ? 'overloaded' : limit === 'store' ? 'rate_limit_unavailable' : 'rate_limited',
      { ...verdict.headers, 'retry-after': String(retryAfter) },
    )
    return false
  }
  return async (req, reply) => {
    const ip = req.ip
    const pending = limited?.before(ip)
    const before = pending == null ? null : await pending
    if (before !== null && !applyLimits(req, reply, before)) return reply
    if (demand !== null && authenticator !== null) {
      const verdict = await authenticator.check(
        { headers: req.headers, query: req.query as Record<string, unknown> },
        demand,
      )
      if (!verdict.ok) {
        const reason =
          verdict.code === 'FORBIDDEN'
            ? 'forbidden'
            : verdict.code === 'AUTH_UNAVAILABLE'
              ? 'auth_unavailable'
              : 'unauthenticated'
        const headers: Record<string, string> =
          verdict.challenge === null ? {} : { 'www-authenticate': verdict.challenge }
        if (verdict.code === 'AUTH_UNAVAILABLE') headers['retry-after'] = '1'
        reject(req, reply, ErrorCodes[verdict.code].status, verdict.code, verdict.message, reason, headers)
        return reply
      }
      req.principal = verdict.principal
    }
    const after = limited?.after(endpoint, ip, req.principal, before)
    if (after != null && !applyLimits(req, reply, await after)) return reply
    return undefined
  }
}

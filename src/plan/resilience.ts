/** Resilience settings, resolved at compile time into what the runtime reads per call. */
import type { CallConfig, RetryConfig, ServiceConfig } from '../config/schema.ts'
import { formatDuration } from '../config/units.ts'
import type { BreakerOptions } from '../policies/breaker.ts'

export interface RetryPlan {
  /** Retries after the first try. */
  readonly attempts: number
  readonly backoff: 'exponential' | 'fixed'
  readonly delay: number
  readonly maxDelay: number
  readonly on5xx: boolean
  readonly onTimeout: boolean
  readonly onConnect: boolean
  readonly onNetwork: boolean
  /** Other statuses retried, e.g. 429. */
  readonly statuses: readonly number[]
}

export interface ServiceResilience {
  /** The service's default retry policy (before the idempotency rule). */
  readonly retry: RetryPlan | null
  /** Share of recent requests that retries may add (0.2 = 20 %). */
  readonly retryBudget: number
  readonly breaker: BreakerOptions | null
  readonly bulkhead: { readonly maxConcurrent: number; readonly maxQueued: number } | null
  readonly probe: { readonly path: string; readonly interval: number; readonly timeout: number } | null
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

export function serviceResilience(service: ServiceConfig): ServiceResilience {
  return {
    retry: service.retry === undefined ? null : retryPlan(service.retry),
    retryBudget: service.retry === undefined ? 0.2 : percent(service.retry.budget),
    breaker: service.circuitBreaker ?? null,
    bulkhead: service.bulkhead ?? null,
    probe: service.health ?? null,
  }
}

/** A call's retry policy: its own, else its service's; none for a non-idempotent method unless the call says it is safe. */
export function callRetry(call: CallConfig, method: string, service: ServiceResilience | undefined): RetryPlan | null {
  if (call.retry === false) return null
  const plan = call.retry === undefined ? (service?.retry ?? null) : retryPlan(call.retry)
  if (plan === null || plan.attempts === 0) return null
  if (!IDEMPOTENT.has(method) && call.idempotent !== true) return null
  return plan
}

/** Longest the backoff before retry number `retry` (1-based) may be, without jitter. */
export function backoffCeiling(plan: RetryPlan, retry: number): number {
  return plan.backoff === 'fixed' ? plan.delay : Math.min(plan.maxDelay, plan.delay * 2 ** (retry - 1))
}

/** Worst case of a call: every try times out and every backoff is as long as it can be. Infinity without a timeout. */
export function worstCase(timeout: number, retry: RetryPlan | null): number {
  if (retry === null) return timeout
  let total = timeout * (retry.attempts + 1)
  for (let r = 1; r <= retry.attempts; r++) total += backoffCeiling(retry, r)
  return total
}

/**
 * Worst case of a call, as `baton plan` shows it: every try of it times out and every backoff is
 * as long as it can be; a forEach runs ⌈items ÷ concurrency⌉ rounds of that, with at most
 * maxItems items (batched, ⌈batches ÷ concurrency⌉ rounds, with ⌈items ÷ size⌉ batches).
 * Infinity when a try has no timeout.
 */
export function callWorstCase(
  timeout: number,
  retry: RetryPlan | null,
  forEach: {
    readonly concurrency: number
    readonly maxItems: number
    readonly batch: { readonly size: number } | null
  } | null,
): { readonly ms: number; readonly text: string } {
  const perCall = worstCase(timeout, retry)
  if (forEach === null) return { ms: perCall, text: formatDuration(perCall) }
  const size = forEach.batch?.size ?? 1
  const ms = perCall * Math.ceil(Math.ceil(forEach.maxItems / size) / forEach.concurrency)
  const per = Number.isFinite(perCall) ? formatDuration(perCall) : 'no timeout'
  const requests = size === 1 ? 'n' : `⌈n ÷ ${size}⌉`
  return {
    ms,
    text: `${per} × ⌈${requests} ÷ ${forEach.concurrency}⌉ (n ≤ ${forEach.maxItems}${Number.isFinite(ms) ? `: ${formatDuration(ms)}` : ''})`,
  }
}

function retryPlan(config: RetryConfig): RetryPlan {
  const on = new Set<string | number>(config.on)
  return {
    attempts: config.attempts,
    backoff: config.backoff,
    delay: config.delay,
    maxDelay: Math.max(config.delay, config.maxDelay),
    on5xx: on.has('5xx'),
    onTimeout: on.has('timeout'),
    onConnect: on.has('connect'),
    onNetwork: on.has('network'),
    statuses: config.on.filter((c): c is number => typeof c === 'number'),
  }
}

/** A share written `5%` (or a number of percent), as a ratio. */
export function percent(value: string | number): number {
  return (typeof value === 'number' ? value : Number(value.slice(0, -1))) / 100
}

/**
 * The template's rate limits on rate-limiter-flexible: fixed windows counted in memory (per
 * process) or in Redis (shared by every instance). Two phases per request: global and per-IP
 * before authentication (so a flood of bad credentials is cut off before any signature is
 * checked), per-user and per-endpoint after it.
 *
 * Redis is a guarded RedisStore (src/store/redis.ts): a store that is down, or skipped after a
 * few slow commands in a row, lets requests through by default (or refuses them: onStoreError).
 * One warning per outage, one line when it is back, and every check it could not make is counted.
 */
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { Logger } from 'pino'
import type { ErrorCode } from '../errors.ts'
import type { Principal } from '../plan/scope.ts'
import type { EndpointPlan, Rate, RateLimitPlan } from '../plan/types.ts'
import type { Clock } from '../policies/clock.ts'
import { RedisStore, UNAVAILABLE } from '../store/redis.ts'

export type LimitName = 'global' | 'per-ip' | 'per-user' | 'per-endpoint'

export interface LimitVerdict {
  /** null: let the request through. */
  readonly reject: {
    readonly code: ErrorCode
    readonly limit: LimitName | 'store'
    readonly retryAfter: number
    readonly message: string
  } | null
  /** RateLimit / RateLimit-Policy headers, for every limit checked so far (empty when none applied). */
  readonly headers: Readonly<Record<string, string>>
  /** What the headers were made of, so that a later phase can add to them. */
  readonly policies: readonly Policy[]
  readonly shown: Counted | null
}

export interface Policy {
  readonly name: LimitName
  readonly rate: Rate
  readonly limiter: RateLimiterAbstract
}

export interface Counted {
  readonly policy: Policy
  readonly remaining: number
  readonly resetMs: number
}

export interface RateLimitOptions {
  readonly logger?: Logger | undefined
  /** Told about every check the store could not make (failed or skipped), and every failed reconnection (for metrics). */
  readonly onStoreError?: () => void
  /** Time for the store's breaker (tests use a fake one). */
  readonly clock?: Clock | undefined
  /** Told about every failed Redis command or connection (RedisStore's onFailure). */
  readonly onStoreFailure?: () => void
  /** Told when the Redis store becomes usable or unusable (RedisStore's onStateChange). */
  readonly onStoreChange?: (up: boolean) => void
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

export class RateLimits {
  readonly #plan: RateLimitPlan
  readonly #store: RedisStore | null
  readonly #global: Policy | null
  readonly #perIp: Policy | null
  readonly #perUser: Policy | null
  /** Per endpoint label: its own per-caller policy (its override, else the gateway's). */
  readonly #perEndpoint = new Map<string, Policy | null>()
  readonly #options: RateLimitOptions

  constructor(plan: RateLimitPlan, endpoints: readonly EndpointPlan[], options: RateLimitOptions = {}) {
    this.#plan = plan
    this.#options = options
    this.#store = plan.store === 'redis' ? this.#connect() : null
    const policy = (name: LimitName, rate: Rate | null, scope: string = name): Policy | null =>
      rate === null ? null : { name, rate, limiter: this.#limiter(scope, rate) }
    this.#global = policy('global', plan.global)
    this.#perIp = policy('per-ip', plan.perIp)
    this.#perUser = policy('per-user', plan.perUser)
    for (const endpoint of endpoints) {
      const rate = endpoint.rateLimit.exempt ? null : (endpoint.rateLimit.perEndpoint ?? plan.perEndpoint)
      this.#perEndpoint.set(endpoint.label, policy('per-endpoint', rate, `per-endpoint:${endpoint.label}`))
    }
  }

  /**
   * A reload's endpoints: limits of endpoints whose rate is unchanged keep their counters; the
   * gateway-wide ones are untouched.
   */
  update(endpoints: readonly EndpointPlan[]): void {
    const before = new Map(this.#perEndpoint)
    this.#perEndpoint.clear()
    for (const endpoint of endpoints) {
      const rate = endpoint.rateLimit.exempt ? null : (endpoint.rateLimit.perEndpoint ?? this.#plan.perEndpoint)
      const old = before.get(endpoint.label)
      const same = old != null && rate !== null && old.rate.limit === rate.limit && old.rate.window === rate.window
      this.#perEndpoint.set(
        endpoint.label,
        same
          ? old
          : rate === null
            ? null
            : { name: 'per-endpoint', rate, limiter: this.#limiter(`per-endpoint:${endpoint.label}`, rate) },
      )
    }
  }

  /** Global and per-IP, before credentials are looked at. */
  before(ip: string): Promise<LimitVerdict> | null {
    if (this.#global === null && this.#perIp === null) return null
    return this.#check(
      [
        [this.#perIp, ip],
        [this.#global, 'all'],
      ],
      null,
    )
  }

  /** Per-user (authenticated callers only) and per-endpoint (per user, else per address); the headers cover `before`'s limits too. */
  after(
    endpoint: EndpointPlan,
    ip: string,
    principal: Principal | null,
    before: LimitVerdict | null,
  ): Promise<LimitVerdict> | null {
    // A JWT subject and an API key's name live in different namespaces: `jwt:alice` is not `apiKey:alice`.
    const user = principal === null || principal.sub === null ? null : `${principal.method}:${principal.sub}`
    const perUser = user === null ? null : this.#perUser
    const perEndpoint = this.#perEndpoint.get(endpoint.label) ?? null
    if (perUser === null && perEndpoint === null) return null
    return this.#check(
      [
        [perUser, user ?? ''],
        [perEndpoint, user ?? `ip:${ip}`],
      ],
      before,
    )
  }

  /** False while the store cannot count (Redis not connected, or skipped by its breaker); memory never fails. */
  get storeUp(): boolean {
    return this.#store === null || this.#store.up
  }

  /**
   * Resolves once the store can count (at once for memory; for Redis when it is connected, or
   * after `wait` ms, after which requests are let through or refused as onStoreError says).
   */
  async ready(wait = 2000): Promise<void> {
    await this.#store?.ready(wait)
  }

  async close(): Promise<void> {
    await this.#store?.close()
  }

  /**
   * Counts the request against each limit in turn and stops at the first it is over: a request
   * refused by one limit does not use up the ones after it (a flood from one address refused
   * per IP does not eat the global budget).
   */
  async #check(
    entries: readonly (readonly [Policy | null, string])[],
    earlier: LimitVerdict | null,
  ): Promise<LimitVerdict> {
    let tightest: Counted | null = earlier?.shown ?? null
    const policies: Policy[] = [...(earlier?.policies ?? [])]
    let storeFailed = false
    for (const [policy, key] of entries) {
      if (policy === null) continue
      const outcome = await this.#consume(policy, key)
      if (outcome === 'store') {
        // Nothing was counted: the limit is not announced either.
        storeFailed = true
        continue
      }
      policies.push(policy)
      if (outcome.remaining < 0) return this.#over(outcome, policies)
      if (tightest === null || outcome.remaining < tightest.remaining) tightest = outcome
    }
    if (storeFailed && this.#plan.onStoreError === 'reject') {
      return {
        reject: {
          code: 'RATE_LIMIT_UNAVAILABLE',
          limit: 'store',
          retryAfter: 1,
          message: 'Rate limits cannot be checked right now',
        },
        headers: NO_HEADERS,
        policies,
        shown: tightest,
      }
    }
    return { reject: null, headers: headersOf(policies, tightest), policies, shown: tightest }
  }

  #over(over: Counted, policies: readonly Policy[]): LimitVerdict {
    const global = over.policy.name === 'global'
    return {
      reject: {
        code: global ? 'OVERLOADED' : 'RATE_LIMITED',
        limit: over.policy.name,
        retryAfter: Math.max(1, Math.ceil(over.resetMs / 1000)),
        message: global
          ? 'The gateway is over its request limit'
          : `Too many requests (${over.policy.name} limit of ${over.policy.rate.limit} per ${formatWindow(over.policy.rate.window)})`,
      },
      headers: headersOf(policies, over),
      policies,
      shown: over,
    }
  }

  async #consume(policy: Policy, key: string): Promise<Counted | 'store'> {
    if (this.#store === null) return await consume(policy, key)
    const counted = await this.#store.run(() => consume(policy, key))
    if (counted !== UNAVAILABLE) return counted
    this.#options.onStoreError?.()
    return 'store'
  }

  #limiter(scope: string, rate: Rate): RateLimiterAbstract {
    const options = {
      points: rate.limit,
      duration: rate.window / 1000,
      keyPrefix: `${this.#plan.redis.prefix}:${scope}`,
    }
    if (this.#store === null) return new RateLimiterMemory(options)
    return new RateLimiterRedis({ ...options, storeClient: this.#store.client, rejectIfRedisNotReady: true })
  }

  #connect(): RedisStore {
    const options = this.#options
    return new RedisStore('rate limit', this.#plan.redis, {
      logger: options.logger,
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      onFailure: (kind) => {
        options.onStoreFailure?.()
        // A failed command is counted by the check that made it; a failed reconnection here.
        if (kind === 'connection') options.onStoreError?.()
      },
      ...(options.onStoreChange === undefined ? {} : { onStateChange: options.onStoreChange }),
      meanwhile:
        this.#plan.onStoreError === 'allow' ? 'requests are let through unlimited' : 'requests are refused with 503',
      whenBack: 'limits apply again',
    })
  }
}

/** Counts one request. Over the limit is an answer too (rate-limiter-flexible rejects with it), not a store failure. */
async function consume(policy: Policy, key: string): Promise<Counted> {
  try {
    const res = await policy.limiter.consume(key)
    return { policy, remaining: res.remainingPoints, resetMs: res.msBeforeNext }
  } catch (err) {
    if (err instanceof RateLimiterRes) return { policy, remaining: -1, resetMs: err.msBeforeNext }
    throw err
  }
}

/** The IETF RateLimit-Policy (every limit that applied) and RateLimit (the one closest to its end) fields. */
function headersOf(policies: readonly Policy[], shown: Counted | null): Readonly<Record<string, string>> {
  if (policies.length === 0) return NO_HEADERS
  const policy = policies.map((p) => `"${p.name}";q=${p.rate.limit};w=${Math.ceil(p.rate.window / 1000)}`).join(', ')
  if (shown === null) return { 'ratelimit-policy': policy }
  return {
    'ratelimit-policy': policy,
    ratelimit: `"${shown.policy.name}";r=${Math.max(0, shown.remaining)};t=${Math.max(1, Math.ceil(shown.resetMs / 1000))}`,
  }
}

function formatWindow(ms: number): string {
  if (ms === 60_000) return 'minute'
  if (ms === 3_600_000) return 'hour'
  if (ms === 1000) return 'second'
  return `${ms / 1000}s`
}

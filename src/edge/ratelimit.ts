/**
 * The template's rate limits on rate-limiter-flexible: fixed windows counted in memory (per
 * process) or in Redis (shared by every instance). Two phases per request: global and per-IP
 * before authentication (so a flood of bad credentials is cut off before any signature is
 * checked), per-user and per-endpoint after it.
 *
 * A store that fails (Redis down or slow) lets requests through by default: one warning per
 * outage, one line when it is back, and the failure is counted.
 */
import { Redis } from 'ioredis'
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import type { Logger } from 'pino'
import type { ErrorCode } from '../errors.ts'
import type { Principal } from '../plan/scope.ts'
import type { EndpointPlan, Rate, RateLimitPlan } from '../plan/types.ts'

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
  /** Told about every store failure (for metrics). */
  readonly onStoreError?: () => void
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({})

export class RateLimits {
  readonly #plan: RateLimitPlan
  readonly #redis: Redis | null
  readonly #global: Policy | null
  readonly #perIp: Policy | null
  readonly #perUser: Policy | null
  /** Per endpoint label: its own per-caller policy (its override, else the gateway's). */
  readonly #perEndpoint = new Map<string, Policy | null>()
  readonly #options: RateLimitOptions
  #down = false

  constructor(plan: RateLimitPlan, endpoints: readonly EndpointPlan[], options: RateLimitOptions = {}) {
    this.#plan = plan
    this.#options = options
    this.#redis = plan.store === 'redis' ? this.#connect() : null
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

  /** False while the store is failing (Redis down or not connected); memory never fails. */
  get storeUp(): boolean {
    return this.#redis === null || (!this.#down && this.#redis.status === 'ready')
  }

  /**
   * Resolves once the store can count (at once for memory; for Redis when it is connected, or
   * after `wait` ms, after which requests are let through or refused as onStoreError says).
   */
  async ready(wait = 2000): Promise<void> {
    const redis = this.#redis
    if (redis === null || redis.status === 'ready') return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        redis.off('ready', done)
        resolve()
      }
      const timer = setTimeout(done, wait)
      redis.once('ready', done)
    })
  }

  async close(): Promise<void> {
    if (this.#redis === null) return
    try {
      await this.#redis.quit()
    } catch {
      this.#redis.disconnect()
    }
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
    try {
      const res = await policy.limiter.consume(key)
      if (this.#down) this.#recovered()
      return { policy, remaining: res.remainingPoints, resetMs: res.msBeforeNext }
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        if (this.#down) this.#recovered()
        return { policy, remaining: -1, resetMs: err.msBeforeNext }
      }
      this.#failed(err)
      return 'store'
    }
  }

  #limiter(scope: string, rate: Rate): RateLimiterAbstract {
    const options = {
      points: rate.limit,
      duration: rate.window / 1000,
      keyPrefix: `${this.#plan.redis.prefix}:${scope}`,
    }
    if (this.#redis === null) return new RateLimiterMemory(options)
    return new RateLimiterRedis({ ...options, storeClient: this.#redis, rejectIfRedisNotReady: true })
  }

  #connect(): Redis {
    const redis = new Redis(this.#plan.redis.url, {
      // Fail at once while disconnected instead of queueing: a request must not wait for Redis to come back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: this.#plan.redis.timeout,
      connectTimeout: Math.max(1000, this.#plan.redis.timeout * 5),
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    })
    // Without a listener, a connection error would be an uncaught 'error' event and end the process.
    redis.on('error', (err: Error) => {
      this.#failed(err)
    })
    return redis
  }

  #failed(err: unknown): void {
    this.#options.onStoreError?.()
    if (this.#down) return
    this.#down = true
    const action =
      this.#plan.onStoreError === 'allow' ? 'requests are let through unlimited' : 'requests are refused with 503'
    this.#options.logger?.warn(
      { event: 'rate_limit_store', err: (err as Error).message },
      `rate limit store unavailable (${(err as Error).message}): ${action} until it is back`,
    )
  }

  #recovered(): void {
    this.#down = false
    this.#options.logger?.warn({ event: 'rate_limit_store' }, 'rate limit store is back: limits apply again')
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

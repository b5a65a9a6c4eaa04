/**
 * A gateway's response caches: one ResponseCache per cached endpoint over the stores they name,
 * and invalidation. Invalidating tags drops them from this process's memory, from Redis, and
 * publishes them on the Redis channel every instance listens to, so that each drops its memory
 * tier too. `baton invalidate` publishes on the same channel.
 */
import type { Logger } from 'pino'
import type { EndpointPlan, GatewayPlan } from '../plan/types.ts'
import type { Clock } from '../policies/clock.ts'
import { RedisStore, type RedisSettings } from '../store/redis.ts'
import type { WaiterObserver } from '../util/flights.ts'
import { type EntryStore, MemoryEntries, RedisEntries, TieredEntries } from './entries.ts'
import { type LookupResult, ResponseCache } from './response.ts'

export interface CachesOptions {
  readonly redis: RedisSettings
  readonly logger?: Logger | null
  readonly serverTiming: boolean
  /** The recorder of an endpoint's lookups (metrics), resolved once per endpoint. */
  readonly lookupsOf?: (endpoint: string) => (result: LookupResult) => void
  /** Told about the requests that wait for a run another request started (metrics: they are in flight). */
  readonly waiters?: WaiterObserver
  /** The gateway's stores (memory, Redis, the event subscription), shared by the caches of every generation. */
  readonly stores: CacheStores
  /** Told when this gateway's Redis cache store is created (for metrics). */
  readonly onStoreCreated?: () => void
  /** Time for the Redis store's breaker (tests use a fake one). */
  readonly clock?: Clock
  /** Told about each failure of the Redis store, and when it becomes usable or not (for metrics). */
  readonly onStoreFailure?: () => void
  readonly onStoreChange?: (up: boolean) => void
}

/** The channel invalidations are published on. */
export function invalidationChannel(redis: RedisSettings): string {
  return `${redis.prefix}:cache:invalidate`
}

/** The stores, shared by the caches of every generation of one gateway (created when first needed). */
export interface CacheStores {
  memory: MemoryEntries | null
  redis: RedisStore | null
  subscribed: boolean
}

export class GatewayCaches {
  readonly #byEndpoint = new Map<string, ResponseCache>()
  readonly #stores: CacheStores
  readonly #memory: MemoryEntries | null
  readonly #redisEntries: RedisEntries | null
  readonly #redis: RedisStore | null
  readonly #channel: string
  readonly #logger: Logger | null

  constructor(plan: GatewayPlan, options: CachesOptions) {
    const cached = plan.endpoints.filter((e) => e.cache !== null)
    const kinds = new Set(cached.map((e) => e.cache?.store))
    this.#logger = options.logger ?? null
    const stores = options.stores
    this.#stores = stores
    if (stores.memory === null && (kinds.has('memory') || kinds.has('tiered')))
      stores.memory = new MemoryEntries(plan.cache.maxSize)
    this.#memory = stores.memory
    if (stores.redis === null && (kinds.has('redis') || kinds.has('tiered'))) {
      options.onStoreCreated?.()
      stores.redis = new RedisStore('cache', options.redis, {
        logger: options.logger ?? undefined,
        meanwhile: 'answers are computed without it',
        whenBack: 'answers are cached again',
        ...(options.clock === undefined ? {} : { clock: options.clock }),
        ...(options.onStoreFailure === undefined ? {} : { onFailure: options.onStoreFailure }),
        ...(options.onStoreChange === undefined ? {} : { onStateChange: options.onStoreChange }),
      })
    }
    this.#redis = stores.redis
    this.#redisEntries = this.#redis === null ? null : new RedisEntries(this.#redis)
    this.#channel = invalidationChannel(options.redis)
    const tiered =
      this.#memory !== null && this.#redisEntries !== null ? new TieredEntries(this.#memory, this.#redisEntries) : null
    for (const endpoint of cached) {
      const kind = endpoint.cache?.store
      const store = (kind === 'memory' ? this.#memory : kind === 'redis' ? this.#redisEntries : tiered) as EntryStore
      const onLookup = options.lookupsOf?.(endpoint.label)
      this.#byEndpoint.set(
        endpoint.label,
        new ResponseCache(endpoint, {
          store,
          tagHeader: plan.cache.tagHeader,
          serverTiming: options.serverTiming,
          ...(onLookup === undefined ? {} : { onLookup }),
          ...(options.waiters === undefined ? {} : { waiters: options.waiters }),
          onError: (err) =>
            this.#logger?.warn(
              { event: 'cache', endpoint: endpoint.label, err: (err as Error).message },
              'response cache: a background refresh or a store write failed',
            ),
        }),
      )
    }
  }

  /** The endpoint's cache, or null when it has none. */
  for(endpoint: EndpointPlan): ResponseCache | null {
    return this.#byEndpoint.get(endpoint.label) ?? null
  }

  /** Some endpoint's store is Redis (or tiered). */
  get usesRedis(): boolean {
    return this.#redis !== null
  }

  get any(): boolean {
    return this.#byEndpoint.size > 0
  }

  /** Listens for invalidations published by other instances and `baton invalidate`. */
  async start(): Promise<void> {
    const memory = this.#memory
    if (this.#redis === null || memory === null || this.#stores.subscribed) return
    this.#stores.subscribed = true
    await this.#redis.ready()
    await this.#redis.subscribe(this.#channel, (message) => {
      const tags = tagsOf(message)
      if (tags === null) return
      const dropped = memory.drop(tags)
      this.#logger?.debug({ event: 'cache_invalidated', tags, dropped }, `cache: an event dropped ${dropped} entries`)
    })
  }

  /** Drops the entries with these tags from this process's memory only; returns how many. */
  dropHere(tags: readonly string[]): number {
    return this.#memory?.drop(tags) ?? 0
  }

  /**
   * Drops the entries with these tags here and in Redis, and tells every instance. Returns the
   * entries dropped (the larger of this memory's and Redis's count) and whether the other
   * instances were told (false: Redis is unavailable, or not used).
   */
  async invalidate(tags: readonly string[]): Promise<{ dropped: number; published: boolean }> {
    const near = this.#memory?.drop(tags) ?? 0
    const far = (await this.#redisEntries?.drop(tags)) ?? 0
    const published = this.#redis === null ? false : await this.#redis.publish(this.#channel, JSON.stringify({ tags }))
    this.#logger?.info(
      { event: 'cache_invalidated', tags, dropped: Math.max(near, far), published },
      `cache: dropped ${Math.max(near, far)} entries for ${tags.join(', ')}`,
    )
    return { dropped: Math.max(near, far), published }
  }
}

/** The gateway's cache stores, none made yet (GatewayCaches makes them when a generation first needs them). */
export function cacheStores(): CacheStores {
  return { memory: null, redis: null, subscribed: false }
}

/** Closes the stores (the gateway is closing). */
export async function closeCacheStores(stores: CacheStores): Promise<void> {
  const redis = stores.redis
  stores.redis = null
  stores.memory = null
  stores.subscribed = false
  await redis?.close()
}

/** An invalidation message: {"tags": [...]}; null when it is not one. */
export function tagsOf(message: string): string[] | null {
  try {
    const parsed = JSON.parse(message) as { tags?: unknown }
    const tags = parsed?.tags
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) return null
    return tags as string[]
  } catch {
    return null
  }
}

/**
 * `baton invalidate`: drops the entries with these tags from Redis and tells every instance to
 * drop them from memory. Throws when no endpoint caches in Redis (instances then listen to
 * nothing) or Redis cannot be reached.
 */
export async function invalidateEverywhere(
  plan: GatewayPlan,
  tags: readonly string[],
): Promise<{ dropped: number; channel: string }> {
  if (!plan.endpoints.some((e) => e.cache !== null && e.cache.store !== 'memory'))
    throw new Error(
      'no endpoint caches in Redis (store: redis or tiered), so instances listen for no events: POST the tags to each instance’s invalidation webhook instead',
    )
  const redis = new RedisStore('cache', plan.redis, {})
  try {
    await redis.ready(Math.max(1000, plan.redis.timeout * 5))
    if (!redis.up) throw new Error(`cannot reach Redis at ${redactUrl(plan.redis.url)}`)
    const channel = invalidationChannel(plan.redis)
    const dropped = await new RedisEntries(redis).drop(tags)
    if (!(await redis.publish(channel, JSON.stringify({ tags }))))
      throw new Error(`Redis at ${redactUrl(plan.redis.url)} did not take the event`)
    return { dropped, channel }
  } finally {
    await redis.close()
  }
}

/** A Redis URL without its password, for messages. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')
}

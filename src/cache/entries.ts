/**
 * Where stored answers live: a memory store (one size-bounded LRU per process, by bytes, with
 * lru-cache), a Redis store (shared by every instance, through the guarded RedisStore: a slow or
 * absent Redis is skipped, never waited for), and the two as tiers (memory in front of Redis).
 * Each entry carries its tags; dropping a tag drops every entry that has it.
 */
import { LRUCache } from 'lru-cache'
import { type RedisStore, UNAVAILABLE } from '../store/redis.ts'

/** A stored answer: its JSON text as written, and what the HTTP caching headers are made of. */
export interface Entry {
  readonly status: number
  readonly text: string
  /** The answer's own headers (baton-degraded), or null. */
  readonly headers: Readonly<Record<string, string>> | null
  /** Weak validator of the text: W/"…". */
  readonly etag: string
  /** Date.now() when it was stored. */
  readonly storedAt: number
  /** ms it is fresh for. */
  readonly ttl: number
  /** ms it is kept for: ttl and the longer of stale-while-revalidate and stale-if-error. */
  readonly keepFor: number
  readonly tags: readonly string[]
}

export interface EntryStore {
  /** undefined: not there (or the store could not be asked). */
  get(key: string): Entry | undefined | Promise<Entry | undefined>
  set(key: string, entry: Entry): void | Promise<void>
  /** Drops the entries with any of these tags; the number it dropped where it can tell. */
  drop(tags: readonly string[]): number | Promise<number>
}

/** Bytes an entry is taken to hold besides its text (its object, headers, tags). */
const OVERHEAD = 256

export class MemoryEntries implements EntryStore {
  readonly #lru: LRUCache<string, Entry>
  /** tag → keys of the entries that carry it. */
  readonly #byTag = new Map<string, Set<string>>()

  constructor(maxSize: number) {
    this.#lru = new LRUCache<string, Entry>({
      maxSize,
      // A string's UTF-16 length is a fair measure of its bytes in V8 (one or two per character).
      sizeCalculation: (entry, key) => entry.text.length + key.length + OVERHEAD,
      // Entries past keepFor are dropped when read; an entry bigger than the whole store is not kept.
      dispose: (entry, key) => this.#untag(key, entry.tags),
    })
  }

  get(key: string): Entry | undefined {
    return this.#lru.get(key)
  }

  set(key: string, entry: Entry): void {
    if (entry.text.length + key.length + OVERHEAD > this.#lru.maxSize) return
    this.#lru.set(key, entry, { ttl: Math.max(1, entry.keepFor - (Date.now() - entry.storedAt)) })
    for (const tag of entry.tags) {
      let keys = this.#byTag.get(tag)
      if (keys === undefined) this.#byTag.set(tag, (keys = new Set()))
      keys.add(key)
    }
  }

  drop(tags: readonly string[]): number {
    let dropped = 0
    for (const tag of tags) {
      const keys = this.#byTag.get(tag)
      if (keys === undefined) continue
      for (const key of [...keys]) if (this.#lru.delete(key)) dropped++
      this.#byTag.delete(tag)
    }
    return dropped
  }

  get size(): number {
    return this.#lru.size
  }

  /** Bytes held, as counted against maxSize. */
  get bytes(): number {
    return this.#lru.calculatedSize
  }

  #untag(key: string, tags: readonly string[]): void {
    for (const tag of tags) {
      const keys = this.#byTag.get(tag)
      if (keys === undefined) continue
      keys.delete(key)
      if (keys.size === 0) this.#byTag.delete(tag)
    }
  }
}

/**
 * Drops the entries of each tag (KEYS: tag sets) and the sets themselves, in one round trip and
 * atomically; returns how many entries it deleted.
 */
const DROP_TAGS = `
local dropped = 0
for _, tag in ipairs(KEYS) do
  local keys = redis.call('SMEMBERS', tag)
  for i = 1, #keys, 500 do
    dropped = dropped + redis.call('DEL', unpack(keys, i, math.min(i + 499, #keys)))
  end
  redis.call('DEL', tag)
end
return dropped
`

/** Entries in Redis, under `<prefix>:cache:e:<key>`; each tag a set of entry keys under `<prefix>:cache:t:<tag>`. */
export class RedisEntries implements EntryStore {
  readonly #redis: RedisStore
  readonly #entries: string
  readonly #tags: string

  constructor(redis: RedisStore) {
    this.#redis = redis
    this.#entries = `${redis.settings.prefix}:cache:e:`
    this.#tags = `${redis.settings.prefix}:cache:t:`
  }

  async get(key: string): Promise<Entry | undefined> {
    const text = await this.#redis.run((r) => r.get(this.#entries + key))
    if (text === UNAVAILABLE || text === null) return undefined
    try {
      return JSON.parse(text) as Entry
    } catch {
      return undefined
    }
  }

  async set(key: string, entry: Entry): Promise<void> {
    const keepFor = Math.max(1, Math.ceil(entry.keepFor - (Date.now() - entry.storedAt)))
    const name = this.#entries + key
    await this.#redis.run((r) => {
      const batch = r.multi().set(name, JSON.stringify(entry), 'PX', keepFor)
      for (const tag of entry.tags) {
        const set = this.#tags + tag
        // The tag's set lives as long as its longest-lived entry.
        batch.sadd(set, name).pexpire(set, keepFor, 'NX').pexpire(set, keepFor, 'GT')
      }
      return batch.exec()
    })
  }

  async drop(tags: readonly string[]): Promise<number> {
    if (tags.length === 0) return 0
    const dropped = await this.#redis.run(
      (r) => r.eval(DROP_TAGS, tags.length, ...tags.map((t) => this.#tags + t)) as Promise<number>,
    )
    return dropped === UNAVAILABLE ? 0 : dropped
  }
}

/** Memory in front of Redis: a Redis hit is kept in memory for what is left of its life. */
export class TieredEntries implements EntryStore {
  readonly #memory: MemoryEntries
  readonly #redis: RedisEntries

  constructor(memory: MemoryEntries, redis: RedisEntries) {
    this.#memory = memory
    this.#redis = redis
  }

  get(key: string): Entry | undefined | Promise<Entry | undefined> {
    const near = this.#memory.get(key)
    if (near !== undefined) return near
    return this.#redis.get(key).then((far) => {
      if (far !== undefined && Date.now() - far.storedAt < far.keepFor) this.#memory.set(key, far)
      return far
    })
  }

  set(key: string, entry: Entry): Promise<void> {
    this.#memory.set(key, entry)
    return this.#redis.set(key, entry)
  }

  async drop(tags: readonly string[]): Promise<number> {
    const near = this.#memory.drop(tags)
    const far = await this.#redis.drop(tags)
    return Math.max(near, far)
  }
}

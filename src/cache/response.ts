/**
 * An endpoint's response cache: the request's key and tags, the lookup, and what is served —
 * a fresh entry, a stale one while one background run refreshes it, a stale one instead of an
 * error, or the answer of a run shared by every request that asked for the same entry while it
 * was being computed (collapsing: no thundering herd when a popular entry expires). It also
 * writes the HTTP caching headers a CDN and a browser read: Cache-Control, ETag (and 304 for a
 * matching If-None-Match), Age, Vary, Cache-Status (RFC 9211) and, when asked, a tag header.
 *
 * It knows nothing of fastify or of how a run is made: the server hands it a function that
 * starts one. One instance per cached endpoint.
 */
import { createHash, randomUUID } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { RequestView } from '../plan/scope.ts'
import type { EndpointCachePlan, EndpointPlan } from '../plan/types.ts'
import { type ClientHandle, Flights, type WaiterObserver } from '../util/flights.ts'
import type { Entry, EntryStore } from './entries.ts'

/** Bodies of entries read from Redis kept as bytes per endpoint, by count and by size. */
const RECENT_BODIES = 64
const RECENT_BYTES = 8 * 1024 * 1024

/** An answer as a run gives it (runtime's GatewayAnswer). */
export interface RunAnswer {
  status: number
  body: unknown
  headers: Record<string, string> | null
}

/** A run as the cache drives it (runtime's Run). */
export interface CacheRun {
  readonly answer: Promise<RunAnswer>
  readonly abandon: () => void
}

/** What the cache tells about each lookup (for metrics). */
export type LookupResult = 'hit' | 'stale' | 'miss' | 'collapsed'

/** What to write: a body (JSON as bytes), or none for a 304. */
export interface Served {
  readonly status: number
  /** JSON, as bytes encoded once per entry (not once per hit); null for a 304. */
  readonly bytes: Buffer | null
  readonly headers: Record<string, string>
  /** The answer of this request's own run (its observers have counted and logged it). */
  readonly ran: boolean
  /** The run's answer could not be serialised (the caller answers 502 RESPONSE_ASSEMBLY_FAILED). */
  readonly unserialisable?: boolean
}

/** A run's answer, serialised, and the entry made of it (null when it is not to be stored). */
interface Computed {
  readonly answer: RunAnswer
  /** The JSON as bytes, shared by every waiter; null when unserialisable. */
  readonly bytes: Buffer | null
  readonly entry: Entry | null
}

/** How the cache starts a run: for this request, under this request id. */
export type StartRun = (request: RequestView, requestId: string) => CacheRun

export interface ResponseCacheOptions {
  readonly store: EntryStore
  /** Header carrying the entry's tags (lower case), or null. */
  readonly tagHeader: string | null
  /** Add `cache;desc=…` to Server-Timing. */
  readonly serverTiming: boolean
  readonly onLookup?: (result: LookupResult) => void
  /** Told about the requests that wait for a run another request started (metrics: they are in flight). */
  readonly waiters?: WaiterObserver
  /** Told when a background refresh fails or a stored entry cannot be written (for the log). */
  readonly onError?: (err: unknown) => void
}

const NAME = 'baton'
/** Keys up to this length have their digest remembered, up to this many at a time. */
const MEMO_KEY_LENGTH = 1024
const MEMO_KEYS = 4096

export class ResponseCache {
  readonly #endpoint: EndpointPlan
  readonly #plan: EndpointCachePlan
  readonly #store: EntryStore
  readonly #options: ResponseCacheOptions
  readonly #flights: Flights<Computed>
  /** An entry's text as bytes, made on its first hit (an entry read from Redis is a new object each time). */
  readonly #bytes = new WeakMap<Entry, Buffer>()
  /**
   * The bytes of recent bodies by ETag (a digest of the text): hits read anew from Redis share one
   * Buffer, and with it the compressed forms made of it (src/server/precompress.ts keys them by Buffer).
   */
  readonly #recent = new LRUCache<string, Buffer>({
    max: RECENT_BODIES,
    maxSize: RECENT_BYTES,
    sizeCalculation: (b) => b.length || 1,
  })
  /** The headers every answer from an entry carries (all but Age and Cache-Status), made once per entry. */
  readonly #fixed = new WeakMap<Entry, Readonly<Record<string, string>>>()
  /** Digests of recent keys: a hit costs a Map lookup, not a SHA-256 (cleared when it holds MEMO_KEYS). */
  readonly #digests = new Map<string, string>()
  /** `endpoint:<label>` — every entry of the endpoint carries it. */
  readonly #endpointTag: string
  readonly #vary: string | null

  constructor(endpoint: EndpointPlan, options: ResponseCacheOptions) {
    this.#endpoint = endpoint
    this.#plan = endpoint.cache as EndpointCachePlan
    this.#store = options.store
    this.#options = options
    this.#flights = new Flights(options.waiters ?? null)
    this.#endpointTag = `endpoint:${endpoint.label}`
    this.#vary = this.#plan.headers.length === 0 ? null : this.#plan.headers.join(', ')
  }

  /**
   * Serves the request from the cache, or from a run (its own, or one already computing the same
   * entry). `res` is told when the client goes (`onGone` is wired by the caller).
   */
  async serve(request: RequestView, requestId: string, start: StartRun, client: ClientHandle): Promise<Served> {
    const key = this.keyOf(request)
    const found = await this.#store.get(key)
    const now = Date.now()
    let stale: Entry | null = null
    if (found !== undefined) {
      const age = now - found.storedAt
      if (age < found.ttl) {
        this.#options.onLookup?.('hit')
        return this.#fromEntry(request, found, now, 'hit')
      }
      if (age < found.ttl + this.#plan.staleWhileRevalidate) {
        this.#options.onLookup?.('stale')
        this.#refresh(key, request, start)
        return this.#fromEntry(request, found, now, 'stale')
      }
      if (age < found.ttl + this.#plan.staleIfError) stale = found
    }
    let flight = this.#flights.get(key)
    const joined = flight !== undefined
    if (flight === undefined) flight = this.#compute(key, request, requestId, start)
    this.#options.onLookup?.(joined ? 'collapsed' : 'miss')
    const computed = await this.#flights.wait(flight, client, joined)
    if (computed === null) return GONE
    const { answer, bytes } = computed
    if (bytes === null) {
      return { status: 502, bytes: null, headers: {}, ran: !joined, unserialisable: true }
    }
    if (stale !== null && answer.status >= 500) {
      // stale-if-error: the run failed; the stored answer is better than its error.
      return this.#fromEntry(request, stale, Date.now(), 'stale-if-error', answer.status)
    }
    const entry = computed.entry
    if (entry === null) {
      const headers: Record<string, string> = { ...answer.headers, 'cache-control': 'no-store' }
      headers['cache-status'] = `${NAME}; fwd=miss; fwd-status=${answer.status}${joined ? '; collapsed' : ''}`
      return { status: answer.status, bytes, headers, ran: !joined }
    }
    const headers = this.#headersOf(entry, Date.now(), null)
    headers['cache-status'] = `${NAME}; fwd=miss; stored${joined ? '; collapsed' : ''}`
    if (this.#notModified(request, entry)) return { status: 304, bytes: null, headers, ran: !joined }
    return { status: entry.status, bytes, headers, ran: !joined }
  }

  /** The entry's key: endpoint, path, the key's query parameters and headers, the caller (scope user), a POST's body. */
  keyOf(request: RequestView): string {
    const plan = this.#plan
    // The fingerprint: after a reload that changes the endpoint, its old entries are not served again.
    let key = `${this.#endpoint.label}\n${this.#endpoint.fingerprint}\n${request.path}`
    if (plan.query !== false) {
      const query = request.query
      const names = plan.query === true ? Object.keys(query).sort() : plan.query
      // Names as JSON too: a client chooses them (`?a%3D%221%22%0Aq%3Ab=2`), and written raw one
      // could spell another request's key (`?a=1&b=2`) and store its own answer there for everyone.
      for (const name of names) {
        const value = query[name]
        if (value !== undefined) key += `\nq:${JSON.stringify(name)}=${JSON.stringify(value)}`
      }
    }
    for (const name of plan.headers) {
      const value = request.headers[name]
      if (value !== undefined) key += `\nh:${name}=${JSON.stringify(Array.isArray(value) ? value.join(', ') : value)}`
    }
    if (plan.scope === 'user') key += `\nu:${JSON.stringify([request.auth?.method ?? '', request.auth?.sub ?? ''])}`
    if (plan.body) key += `\nb:${JSON.stringify(request.body ?? null)}`
    // Stored under a digest: a key of any length (a POST's body) is a short name in memory and in Redis.
    let digest = this.#digests.get(key)
    if (digest === undefined) {
      digest = createHash('sha256').update(key).digest('base64url')
      if (key.length <= MEMO_KEY_LENGTH) {
        if (this.#digests.size >= MEMO_KEYS) this.#digests.clear()
        this.#digests.set(key, digest)
      }
    }
    return digest
  }

  /** The entry's tags: the configured ones, and `path:<path>` and `endpoint:<label>`. */
  tagsOf(request: RequestView): string[] {
    const tags = [`path:${request.path}`, this.#endpointTag]
    const scope = { request }
    for (const tag of this.#plan.tags) {
      try {
        const value = tag(scope)
        if (value !== null && value !== undefined && value !== '') tags.push(String(value))
      } catch {
        // A tag that cannot be made for this request (a missing field): the entry goes without it.
      }
    }
    return tags
  }

  #compute(key: string, request: RequestView, requestId: string, start: StartRun, detached = false) {
    return this.#flights.start(key, start(request, requestId), (answer) => this.#settle(key, request, answer), detached)
  }

  /** Serialises the answer and stores it when it may be stored. */
  #settle(key: string, request: RequestView, answer: RunAnswer): Computed {
    let text: string
    try {
      text = JSON.stringify(answer.body)
    } catch {
      return { answer, bytes: null, entry: null }
    }
    const bytes = Buffer.from(text)
    const ttl = this.#ttlOf(answer)
    if (ttl === 0) return { answer, bytes, entry: null }
    const plan = this.#plan
    const entry: Entry = {
      status: answer.status,
      text,
      headers: answer.headers,
      etag: `W/"${createHash('sha1').update(text).digest('base64url')}"`,
      storedAt: Date.now(),
      ttl,
      keepFor: ttl + Math.max(plan.staleWhileRevalidate, plan.staleIfError),
      tags: this.tagsOf(request),
    }
    try {
      const stored = this.#store.set(key, entry)
      if (stored instanceof Promise) stored.catch((err: unknown) => this.#options.onError?.(err))
    } catch (err) {
      this.#options.onError?.(err)
    }
    this.#bytes.set(entry, bytes)
    return { answer, bytes, entry }
  }

  /** 0: not stored. Errors never are; a partial answer only for partialTtl. */
  #ttlOf(answer: RunAnswer): number {
    if (answer.status !== this.#endpoint.status) return 0
    if (answer.headers !== null && answer.headers['baton-degraded'] !== undefined) return this.#plan.partialTtl
    return this.#plan.ttl
  }

  /**
   * One background run per key, whoever asks: the stale entry is served meanwhile. It runs to the
   * end even if a request that joined it (the entry went past stale meanwhile) leaves.
   */
  #refresh(key: string, request: RequestView, start: StartRun): void {
    if (this.#flights.has(key)) return
    const flight = this.#compute(key, request, randomUUID(), start, true)
    flight.result.catch((err: unknown) => this.#options.onError?.(err))
  }

  #fromEntry(request: RequestView, entry: Entry, now: number, how: string, fwdStatus = 0): Served {
    const headers = this.#headersOf(entry, now, how)
    const left = Math.floor((entry.storedAt + entry.ttl - now) / 1000)
    headers['cache-status'] =
      how === 'hit'
        ? `${NAME}; hit; ttl=${left}`
        : how === 'stale'
          ? `${NAME}; hit; ttl=${left}; detail=stale-while-revalidate`
          : `${NAME}; fwd=stale; fwd-status=${fwdStatus}; ttl=${left}; detail=stale-if-error`
    if (this.#options.serverTiming) headers['server-timing'] = `cache;desc="${how}"`
    if (this.#notModified(request, entry)) return { status: 304, bytes: null, headers, ran: false }
    let bytes = this.#bytes.get(entry)
    if (bytes === undefined) {
      bytes = this.#recent.get(entry.etag)
      if (bytes === undefined) this.#recent.set(entry.etag, (bytes = Buffer.from(entry.text)))
      this.#bytes.set(entry, bytes)
    }
    return { status: entry.status, bytes, headers, ran: false }
  }

  #headersOf(entry: Entry, now: number, how: string | null): Record<string, string> {
    let fixed = this.#fixed.get(entry)
    if (fixed === undefined) this.#fixed.set(entry, (fixed = this.#fixedHeaders(entry)))
    const headers: Record<string, string> = { ...fixed }
    if (how !== null) headers.age = String(Math.max(0, Math.floor((now - entry.storedAt) / 1000)))
    return headers
  }

  #fixedHeaders(entry: Entry): Readonly<Record<string, string>> {
    const plan = this.#plan
    const headers: Record<string, string> = entry.headers === null ? {} : { ...entry.headers }
    const maxAge = Math.floor(entry.ttl / 1000)
    let control = plan.scope === 'user' ? `private, max-age=${maxAge}` : `public, max-age=${maxAge}`
    if (plan.staleWhileRevalidate > 0)
      control += `, stale-while-revalidate=${Math.floor(plan.staleWhileRevalidate / 1000)}`
    if (plan.staleIfError > 0) control += `, stale-if-error=${Math.floor(plan.staleIfError / 1000)}`
    headers['cache-control'] = control
    headers.etag = entry.etag
    if (this.#vary !== null) headers.vary = this.#vary
    if (this.#options.tagHeader !== null) headers[this.#options.tagHeader] = entry.tags.join(',')
    return headers
  }

  /** If-None-Match names the entry (weak comparison, RFC 9110 §13.1.2). */
  #notModified(request: RequestView, entry: Entry): boolean {
    const given = request.headers['if-none-match']
    if (typeof given !== 'string') return false
    if (given.trim() === '*') return true
    const tag = entry.etag.slice(2)
    for (const part of given.split(',')) {
      const candidate = part.trim()
      if (candidate === entry.etag || candidate === tag || candidate.slice(2) === tag) return true
    }
    return false
  }
}

/** What a request whose client has gone gets (nobody reads it). */
const GONE: Served = { status: 499, bytes: null, headers: {}, ran: false }

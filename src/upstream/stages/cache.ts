/**
 * The per-call cache: a call that caches answers an identical try (same method, path, body and
 * headers: see request-key.ts) from memory, as the service answered it, parsed. Either for a
 * fixed `ttl`, whatever the service says, or (`honor`) as the service's own Cache-Control,
 * Expires, ETag and Last-Modified allow (RFC 9111, by http-cache-semantics): only what it lets
 * a cache store, fresh for as long as it says, and once stale revalidated with If-None-Match /
 * If-Modified-Since; a 304 refreshes the entry and the call gets the stored answer.
 *
 * Right after the deadline stage: a hit costs no bulkhead slot, breaker ticket or coalescing, and
 * is outside the observe stage, so it is no client span (no request was made). A miss goes on
 * down, where identical misses in flight still coalesce.
 *
 * Baton is a shared cache (`private` answers are not stored, nor answers to requests carrying
 * credentials unless the service marks them public), except for a try that carries the caller's
 * own identity — a forwarded Authorization or Cookie, or a header the service computes from
 * `auth.…` —: its key is that caller's alone, so it is cached as a private cache would. The
 * service's own credentials (a static token, an API key, OAuth2) are the gateway's identity, the
 * same for every caller: they do not stop an answer from being stored.
 *
 * Stored bodies are frozen: one parsed body may now answer many requests, and nothing in the
 * runtime writes into a call's body (`into` and `partialData` make new objects), so a frozen one
 * costs nothing and a future write into it fails loudly instead of leaking into other answers.
 */
import CachePolicy from 'http-cache-semantics'
import { LRUCache } from 'lru-cache'
import type { CallPlan, ServicePlan } from '../../plan/types.ts'
import type { Clock } from '../../policies/clock.ts'
import { CallError } from '../failure.ts'
import type { CallResponse, Send, Stage, Try } from '../pipeline.ts'
import { requestKey } from '../request-key.ts'

/**
 * How a try of a caching call went: answered from memory (`hit`), a stored answer revalidated with
 * the service (`stale`), nothing usable stored so the service was asked (`miss`), or asked and its
 * answer may not be stored (`bypass`: `no-store`, `private`, no freshness nor validator, too big).
 */
export type CacheLookup = 'hit' | 'miss' | 'stale' | 'bypass'

interface Entry {
  readonly response: CallResponse
  /** clock ms when stored (ttl). */
  readonly storedAt: number
  /** What the service allows (honor); null for a ttl entry. */
  readonly policy: CachePolicy | null
  /** Estimated bytes: key, headers and body. */
  readonly size: number
}

/** Headers that stay those of the stored answer when a 304 updates it (RFC 9111 §3.2). */
const KEPT_ON_304 = new Set(['content-length', 'content-encoding', 'transfer-encoding', 'connection', 'keep-alive'])

/** `onLookup` is told how each try of a caching call went (for metrics). */
export function cacheStage(
  service: ServicePlan,
  clock: Clock,
  onLookup: ((call: CallPlan, result: CacheLookup) => void) | null,
): Stage {
  const maxSize = service.cacheMaxSize
  const entries = new LRUCache<string, Entry>({ maxSize })
  const tell = onLookup ?? ((): void => {})
  // RFC 9111 reasons in wall-clock dates (Date, Expires): the injected clock moves them on too, so tests need not wait.
  const epoch = Date.now() - clock.now()
  class Policy extends CachePolicy {
    now(): number {
      return epoch + clock.now()
    }
  }
  const callerHeaders = [
    ...service.forwardHeaders.filter((name) => name === 'authorization' || name === 'cookie'),
    ...service.authHeaders.map(([name]) => name),
  ]
  const own = service.credentialHeader

  /** Keeps the answer (frozen), unless it alone is bigger than the whole cache. */
  function store(key: string, response: CallResponse, policy: CachePolicy | null): CacheLookup {
    // Identical misses coalesced below share one answer: the first of them stored it.
    if (entries.peek(key)?.response === response) return 'miss'
    const size = key.length + measure(response.headers) + freeze(response.body)
    if (size > maxSize) return 'bypass'
    Object.freeze(response.headers)
    entries.set(key, { response, storedAt: clock.now(), policy, size }, { size })
    return 'miss'
  }

  /** The request as RFC 9111 sees it: without the service's own credentials (see above). */
  function viewOf(attempt: Try): CachePolicy.Request {
    const headers = attempt.headers
    if (own === null || headers[own] === undefined) return { method: attempt.method, url: attempt.path, headers }
    const rest = { ...headers }
    delete rest[own]
    return { method: attempt.method, url: attempt.path, headers: rest }
  }

  async function fixed(next: Send, attempt: Try, key: string): Promise<CallResponse> {
    let res: CallResponse
    try {
      res = await next(attempt)
    } catch (err) {
      tell(attempt.call, 'miss')
      throw err
    }
    tell(attempt.call, store(key, res, null))
    return res
  }

  async function honored(next: Send, attempt: Try, key: string, stale: Entry | undefined): Promise<CallResponse> {
    const call = attempt.call
    const request = viewOf(attempt)
    const revalidating = stale?.policy != null && conditionally(attempt, stale.policy, request)
    let res: CallResponse
    try {
      res = await next(attempt)
    } catch (err) {
      if (revalidating && err instanceof CallError && err.status === 304) {
        tell(call, 'stale')
        return refreshed(key, request, stale as Entry, err)
      }
      tell(call, revalidating ? 'stale' : 'miss')
      throw err
    }
    const policy = new Policy(request, res, { shared: !carriesAny(request, callerHeaders) })
    let result: CacheLookup
    if (policy.storable() && (policy.timeToLive() > 0 || hasValidator(res))) {
      result = store(key, res, policy)
    } else {
      result = 'bypass'
      if (stale !== undefined) entries.delete(key)
    }
    tell(call, revalidating ? 'stale' : result)
    return res
  }

  /** A 304: the stored answer, with the headers the service sent along, fresh again. */
  function refreshed(key: string, request: CachePolicy.Request, stale: Entry, notModified: CallError): CallResponse {
    const headers = (notModified.headers ?? {}) as CachePolicy.Headers
    const { policy } = (stale.policy as CachePolicy).revalidatedPolicy(request, { status: 304, headers })
    const merged: Record<string, string | string[] | undefined> = { ...stale.response.headers }
    for (const name in headers) if (!KEPT_ON_304.has(name)) merged[name] = headers[name]
    const response: CallResponse = {
      status: stale.response.status,
      headers: Object.freeze(merged),
      body: stale.response.body,
    }
    entries.set(key, { ...stale, response, policy }, { size: stale.size })
    return response
  }

  return (next) => (attempt) => {
    const plan = attempt.call.cache
    if (plan === null) return next(attempt)
    if (plan.honor) {
      const key = `honor ${requestKey(attempt)}`
      const entry = entries.get(key)
      if (entry?.policy != null && entry.policy.satisfiesWithoutRevalidation(viewOf(attempt))) {
        tell(attempt.call, 'hit')
        return Promise.resolve(entry.response)
      }
      return honored(next, attempt, key, entry)
    }
    const key = requestKey(attempt)
    const entry = entries.get(key)
    // Calls with different ttls share entries: each reads them with its own.
    if (entry !== undefined && clock.now() - entry.storedAt < plan.ttl) {
      tell(attempt.call, 'hit')
      return Promise.resolve(entry.response)
    }
    return fixed(next, attempt, key)
  }
}

/** Adds If-None-Match / If-Modified-Since to the try, from the stored answer's validators; false when it has none. */
function conditionally(attempt: Try, policy: CachePolicy, request: CachePolicy.Request): boolean {
  const wanted = policy.revalidationHeaders(request)
  const etag = wanted['if-none-match']
  const since = wanted['if-modified-since']
  if (typeof etag !== 'string' && typeof since !== 'string') return false
  // Tries share their request's headers: this one gets a copy.
  const headers = { ...attempt.headers }
  if (typeof etag === 'string') headers['if-none-match'] = etag
  if (typeof since === 'string') headers['if-modified-since'] = since
  attempt.headers = headers
  return true
}

function carriesAny(request: CachePolicy.Request, names: readonly string[]): boolean {
  for (const name of names) if (request.headers[name] !== undefined) return true
  return false
}

function hasValidator(res: CallResponse): boolean {
  return res.headers.etag !== undefined || res.headers['last-modified'] !== undefined
}

function measure(headers: CallResponse['headers']): number {
  let size = 0
  for (const name in headers) size += name.length + String(headers[name]).length + 4
  return size
}

/** Freezes a parsed JSON value throughout and returns its size, about as many bytes as its JSON text. */
function freeze(value: unknown): number {
  if (value === null || typeof value !== 'object') return typeof value === 'string' ? value.length + 2 : 8
  Object.freeze(value)
  let size = 2
  if (Array.isArray(value)) {
    for (const item of value as unknown[]) size += freeze(item) + 1
  } else {
    const object = value as Record<string, unknown>
    for (const name in object) size += name.length + 4 + freeze(object[name])
  }
  return size
}

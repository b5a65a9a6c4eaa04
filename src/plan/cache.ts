/**
 * An endpoint's `cache` block, compiled: the key's parts, the tags (expressions over the request
 * and the caller), the store. Refuses what would serve one caller another caller's answer.
 */
import type { Config, EndpointConfig } from '../config/schema.ts'
import type { ConfigPath } from '../config/source.ts'
import type { Reference } from '../expr/index.ts'
import type { Diagnostics } from './diagnostics.ts'
import { PER_REQUEST } from './headers.ts'
import { compileString, type TemplateScope } from './templates.ts'
import type { CacheStoreKind, EndpointAuthPlan, EndpointCachePlan } from './types.ts'

/** Roots a tag may read: the request and the caller (and the environment). */
const TAG_ROOTS = new Set(['request', 'auth', 'env'])

/** A reference to the request or the caller in one of the endpoint's calls or its answer. */
export interface RequestRead {
  readonly ref: Reference
  readonly refPath: ConfigPath
}

export function compileEndpointCache(
  cache: NonNullable<EndpointConfig['cache']>,
  context: {
    readonly at: readonly (string | number)[]
    readonly method: string
    readonly auth: EndpointAuthPlan | null
    readonly defaultStore: CacheStoreKind
    readonly scope: TemplateScope
    /** What the calls and the answer read of the request and the caller. */
    readonly reads: readonly RequestRead[]
    /** The client headers the endpoint's services forward (`forwardHeaders`). */
    readonly forwarded: readonly string[]
    readonly diagnostics: Diagnostics
  },
): EndpointCachePlan | null {
  const { at, auth, diagnostics } = context
  const where = [...at, 'cache']
  if (auth !== null && cache.scope === undefined) {
    diagnostics.error(
      'BATON_CACHE',
      'this endpoint takes credentials: its cache must say whose answer an entry is',
      [...where],
      {
        key: true,
        hint: 'add scope: user (one entry per caller, keyed by auth.sub) or scope: public (one entry for every caller)',
      },
    )
  }
  const scope = cache.scope ?? 'public'
  if (scope === 'user' && auth === null) {
    diagnostics.error(
      'BATON_CACHE',
      'scope: user on an endpoint without credentials: there is no user to key by',
      [...where, 'scope'],
      { hint: 'use scope: public, or have the endpoint take credentials (remove auth: public)' },
    )
  }
  const tags = cache.tags.flatMap((source, i) => {
    const path = [...where, 'tags', i]
    let readsACall = false
    const tagScope: TemplateScope = {
      ...context.scope,
      onReference: (ref: Reference, refPath, text) => {
        if (!TAG_ROOTS.has(ref.root)) readsACall = true
        context.scope.onReference(ref, refPath, text)
      },
    }
    const compiled = compileString(source, path, tagScope, diagnostics, undefined)
    if (compiled === null) return []
    if (readsACall) {
      diagnostics.error('BATON_CACHE', `tag '${source}' reads a call's answer`, path, {
        hint: 'tags are known before any call runs: write them from request and auth, e.g. product:${request.params.id}',
      })
      return []
    }
    return [compiled.evaluate]
  })
  const query = cache.key.query === true || cache.key.query === false ? cache.key.query : [...cache.key.query].sort()
  const headers = cache.key.headers.map((h) => h.toLowerCase()).sort()
  warnOutsideKey(context.reads, context.forwarded, { scope, query, headers }, where, diagnostics)
  return {
    ttl: cache.ttl,
    staleWhileRevalidate: cache.staleWhileRevalidate,
    staleIfError: cache.staleIfError,
    partialTtl: cache.partialTtl,
    scope,
    query,
    headers,
    body: context.method !== 'GET' && context.method !== 'HEAD',
    tags,
    tagSources: cache.tags,
    store: cache.store ?? context.defaultStore,
  }
}

/**
 * Warns when the answer may depend on something the cache key leaves out: then every caller is
 * served the first caller's answer. The caller (`auth.…`) under `scope: public`, a request header
 * (read in an expression, or forwarded to a service) missing from `key.headers`, a query parameter
 * (or the whole query) that `key.query` leaves out. Warnings, not errors: a value may be read
 * without changing the answer (a header passed on for a log, say), which only the author knows.
 */
function warnOutsideKey(
  reads: readonly RequestRead[],
  forwarded: readonly string[],
  key: { scope: 'public' | 'user'; query: boolean | readonly string[]; headers: readonly string[] },
  where: ConfigPath,
  diagnostics: Diagnostics,
): void {
  const warned = new Set<string>()
  const warn = (what: string, path: ConfigPath, offset: number | undefined, why: string, hint: string): void => {
    if (warned.has(what)) return
    warned.add(what)
    diagnostics.warn(
      'BATON_CACHE_KEY',
      `the answer may depend on ${what}, which the cache key leaves out: ${why}`,
      path,
      offset === undefined ? { key: true, hint } : { offset, hint },
    )
  }
  const inQuery = (name: string | undefined): boolean =>
    key.query === true || (key.query !== false && name !== undefined && key.query.includes(name))
  for (const { ref, refPath } of reads) {
    const [field, name] = ref.path
    if (ref.root === 'auth') {
      if (key.scope === 'public')
        warn(
          field === undefined ? 'auth' : `auth.${field}`,
          refPath,
          ref.offset,
          "scope: public serves one entry to every caller, so each would get the first caller's answer",
          'use scope: user (one entry per caller), or keep the caller out of the calls and the answer',
        )
    } else if (field === 'headers' && (name === undefined || !(key.headers.includes(name) || PER_REQUEST.has(name)))) {
      warn(
        name === undefined ? 'request.headers' : `request.headers['${name}']`,
        refPath,
        ref.offset,
        "every caller would get the first one's variant",
        name === undefined
          ? 'read the headers you need by name and list them in cache.key.headers'
          : `add ${name} to cache.key.headers (then an entry is kept per value, and Vary says so)`,
      )
    } else if (field === 'query' && !inQuery(name)) {
      warn(
        name === undefined ? 'request.query' : `request.query.${name}`,
        refPath,
        ref.offset,
        "every caller would get the first one's answer, whatever their query",
        name === undefined
          ? 'leave cache.key.query out (the whole query is then in the key)'
          : `add ${name} to cache.key.query`,
      )
    }
  }
  for (const name of forwarded) {
    if (PER_REQUEST.has(name)) continue
    if (name === 'authorization' || name === 'cookie') {
      // The caller's own credentials: under scope: user the key holds the caller already.
      if (key.scope === 'public')
        warn(
          `the client's ${name} header (forwardHeaders)`,
          where,
          undefined,
          "scope: public serves one entry to every caller, so each would get the first caller's answer",
          'use scope: user (one entry per caller)',
        )
    } else if (!key.headers.includes(name)) {
      warn(
        `the client's ${name} header (a service forwards it: forwardHeaders)`,
        where,
        undefined,
        "every caller would get the first one's variant",
        `add ${name} to cache.key.headers (then an entry is kept per value, and Vary says so)`,
      )
    }
  }
}

/** The durations of response and call caches, where a bare number is most likely meant as seconds. */
const CACHE_DURATIONS = ['ttl', 'staleWhileRevalidate', 'staleIfError', 'partialTtl'] as const

/**
 * Warns about a cache duration written as a bare number (`ttl: 300`). A bare number is milliseconds
 * in every duration of the config, but a cache's TTL is counted in seconds nearly everywhere else
 * (Cache-Control's max-age, Redis, CDNs, the template's table), so `ttl: 300` is far more often
 * meant as five minutes than as 0.3 s. `300s` or `300ms` says which.
 */
export function warnBareCacheDurations(config: Config, diagnostics: Diagnostics): void {
  const check = (path: ConfigPath): void => {
    const written = diagnostics.written(path)
    if (typeof written !== 'number' || written <= 0) return
    const field = String(path.at(-1))
    diagnostics.warn('BATON_CACHE_UNIT', `${field}: ${written} is ${written} ms: a bare number is milliseconds`, path, {
      hint: `write ${written}s if you meant seconds (as max-age, Redis and CDNs count), or ${written}ms to say milliseconds`,
    })
  }
  for (const [name, service] of Object.entries(config.services)) {
    if (typeof service.cache === 'object') check(['services', name, 'cache', 'ttl'])
  }
  for (const [key, endpoint] of Object.entries(config.endpoints)) {
    if (endpoint.cache !== undefined) for (const field of CACHE_DURATIONS) check(['endpoints', key, 'cache', field])
    for (const [name, call] of Object.entries(endpoint.calls ?? {})) {
      if (typeof call.cache === 'object') check(['endpoints', key, 'calls', name, 'cache', 'ttl'])
    }
  }
}

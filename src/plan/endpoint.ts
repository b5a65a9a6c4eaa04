/** One endpoint: its calls, their dependencies (read off their expressions), and the response builder. */
import type { CallConfig, EndpointConfig, GatewayAuthConfig } from '../config/schema.ts'
import { CALL_REQUEST } from '../config/schema.ts'
import { encodePathValue, type Evaluator, type Reference } from '../expr/index.ts'
import { closest, didYouMean } from '../util/suggest.ts'
import type { Diagnostics } from './diagnostics.ts'
import { compileEndpointAuth } from './edge.ts'
import { findCycle, levels } from './graph.ts'
import { callRetry, callWorstCase, worstCase } from './resilience.ts'
import { formatDuration } from '../config/units.ts'
import { invalidRouteSegment, routeParams, routeToServerPath } from './routes.ts'
import { AUTH_FIELDS, type CallMeta, readsOnlyTheClient, type Scope } from './scope.ts'
import { cachePlan, checkHeaderName } from './services.ts'
import { compileCondition, compileString, compileValue, type TemplateScope } from './templates.ts'
import { compileEndpointCache, type RequestRead } from './cache.ts'
import type { BatchPlan, CacheStoreKind, CallPlan, EndpointPlan, ForEachPlan, ServicePlan } from './types.ts'
import { compileValidation, type SchemaCompiler } from './validation.ts'

/** Names an expression can always read; a call may not take one of them. */
export const RESERVED_ROOTS = ['request', 'env', 'calls', 'auth', 'true', 'false', 'null'] as const
const REQUEST_FIELDS = ['method', 'path', 'params', 'query', 'headers', 'body']
const CALL_META_FIELDS = ['status', 'headers', 'body', 'ok', 'error', 'skipped']

interface EndpointContext {
  readonly key: string
  readonly endpoint: EndpointConfig
  readonly basePath: string
  readonly defaultTimeout: number
  readonly services: ReadonlyMap<string, ServicePlan>
  readonly declaredServices: ReadonlySet<string>
  readonly env: Readonly<Record<string, string>>
  readonly gatewayAuth: GatewayAuthConfig | undefined
  /** Compiles the endpoints' `validate` schemas (one ajv per config). */
  readonly schemas: SchemaCompiler
  /** gateway.cache.store: the store of an endpoint cache that names none. */
  readonly defaultCacheStore: CacheStoreKind
  readonly diagnostics: Diagnostics
}

export function compileEndpoint(ctx: EndpointContext): EndpointPlan | null {
  const { key, endpoint, diagnostics } = ctx
  const at = ['endpoints', key]
  const [method, path] = key.split(' ') as [string, string]
  const bad = invalidRouteSegment(path)
  if (bad !== undefined) {
    diagnostics.error('BATON_INVALID_ROUTE', `invalid path segment '${bad}' in '${key}'`, at, {
      key: true,
      hint: 'path parameters are written {name}, e.g. GET /users/{id}',
    })
  }
  const params = routeParams(path)
  const names = Object.keys(endpoint.calls)
  const index = new Map(names.map((n, i) => [n, i]))
  const dependsOn: Set<number>[] = names.map(() => new Set())
  let readsCallMeta = false
  const errorsBefore = diagnostics.list.length
  const auth = compileEndpointAuth(endpoint.auth, ctx.gatewayAuth, at, diagnostics)
  const validate = compileValidation(endpoint.validate, { at, params, compiler: ctx.schemas, diagnostics })

  for (const name of names) {
    if ((RESERVED_ROOTS as readonly string[]).includes(name)) {
      diagnostics.error('BATON_RESERVED_NAME', `'${name}' is reserved and cannot name a call`, [...at, 'calls', name], {
        key: true,
        hint: `expressions use ${RESERVED_ROOTS.slice(0, 4).join(', ')} as roots; rename the call`,
      })
    } else if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      diagnostics.error('BATON_INVALID_NAME', `call name '${name}' is not an identifier`, [...at, 'calls', name], {
        key: true,
        hint: 'call names are read in expressions (${name.field}); use letters, digits and _, e.g. camelCase',
      })
    }
  }

  // What the calls and the answer read of the request and the caller: a response cache must key by it (plan/cache.ts).
  const reads: RequestRead[] = []
  /** Checks one reference and, when `from` is a call, records the dependency it implies. */
  const onReference =
    (from: number | null) =>
    (ref: Reference, refPath: readonly (string | number)[]): void => {
      const place = { offset: ref.offset }
      if (ref.root === 'request' || ref.root === 'auth') reads.push({ ref, refPath })
      if (ref.root === 'request') {
        const field = ref.path[0]
        if (field !== undefined && !REQUEST_FIELDS.includes(field)) {
          diagnostics.error('BATON_UNKNOWN_FIELD', `request has no field '${field}'`, refPath, {
            ...place,
            hint: didYouMean(field, REQUEST_FIELDS),
          })
        } else if (field === 'params' && ref.path[1] !== undefined && !params.includes(ref.path[1])) {
          const p = ref.path[1]
          diagnostics.error('BATON_UNKNOWN_PARAM', `path parameter '${p}' is not declared in '${key}'`, refPath, {
            ...place,
            hint:
              params.length > 0
                ? (didYouMean(p, params) ?? `declared: ${params.join(', ')}`)
                : `declare it in the path, e.g. '${method} ${path}/{${p}}'`,
          })
        } else if (field === 'headers' && ref.path[1] !== undefined && ref.path[1] !== ref.path[1].toLowerCase()) {
          diagnostics.error('BATON_HEADER_CASE', `request header names are lower case: '${ref.path[1]}'`, refPath, {
            ...place,
            hint: `write request.headers['${ref.path[1].toLowerCase()}']`,
          })
        }
        return
      }
      if (ref.root === 'auth') {
        const field = ref.path[0]
        if (field !== undefined && !AUTH_FIELDS.includes(field)) {
          diagnostics.error('BATON_UNKNOWN_FIELD', `auth has no field '${field}'`, refPath, {
            ...place,
            hint:
              didYouMean(field, AUTH_FIELDS) ??
              `auth has ${AUTH_FIELDS.join(', ')}; token claims are under auth.claims`,
          })
        }
        return
      }
      let target: string | undefined
      if (ref.root === 'calls') {
        readsCallMeta = true
        target = ref.path[0]
        if (target === undefined) return
        if (!index.has(target)) {
          diagnostics.error('BATON_UNKNOWN_CALL', `no call named '${target}' in '${key}'`, refPath, {
            ...place,
            hint: didYouMean(target, names),
          })
          return
        }
        const field = ref.path[1]
        if (field !== undefined && !CALL_META_FIELDS.includes(field)) {
          diagnostics.error('BATON_UNKNOWN_FIELD', `calls.${target} has no field '${field}'`, refPath, {
            ...place,
            hint: didYouMean(field, CALL_META_FIELDS),
          })
        }
      } else if (index.has(ref.root)) {
        target = ref.root
      }
      if (target !== undefined && from !== null) dependsOn[from]?.add(index.get(target) as number)
    }

  const env = ctx.env
  const callsView = (scope: Scope): Record<string, unknown> => {
    const view: Record<string, unknown> = {}
    for (let i = 0; i < names.length; i++) {
      const meta: CallMeta | undefined = scope.meta?.[i]
      view[names[i] as string] = meta === undefined ? null : { ...meta, body: scope.values[i] }
    }
    return view
  }
  const rootsFor = (from: number | null, itemName: string | null): TemplateScope => {
    const known = [...RESERVED_ROOTS.slice(0, 4), ...names, ...(itemName === null ? [] : [itemName])]
    return {
      knownRoots: known,
      resolveRoot: (name) => {
        if (name === itemName) return (s) => (s as Scope).item
        if (name === 'request') return (s) => (s as Scope).request
        if (name === 'env') return () => env
        if (name === 'calls') return (s) => callsView(s as Scope)
        if (name === 'auth') return (s) => (s as Scope).request.auth
        const i = index.get(name)
        if (i !== undefined) return (s) => (s as Scope).values[i]
        return undefined
      },
      onReference: onReference(from),
    }
  }

  const partial: Omit<CallPlan, 'dependents' | 'level' | 'dependsOn' | 'bodySlot'>[] = []
  for (const [i, name] of names.entries()) {
    const call = endpoint.calls[name] as CallConfig
    const compiled = compileCall(i, name, call, [...at, 'calls', name], ctx, rootsFor)
    if (compiled !== null) partial.push(compiled)
  }

  const response =
    endpoint.response === undefined
      ? defaultResponse(names)
      : compileValue(endpoint.response, [...at, 'response'], rootsFor(null, null), diagnostics).evaluate

  const cache =
    endpoint.cache === undefined
      ? null
      : compileEndpointCache(endpoint.cache, {
          at,
          method,
          auth,
          defaultStore: ctx.defaultCacheStore,
          scope: rootsFor(null, null),
          // A copy: the tags, compiled next, read the request too, and a tag may.
          reads: [...reads],
          forwarded: [...new Set(partial.flatMap((call) => call.service.forwardHeaders))],
          diagnostics,
        })

  const deps = dependsOn.map((s) => [...s].sort((a, b) => a - b))
  const cycle = findCycle(deps)
  if (cycle !== null) {
    const first = names[cycle[0] as number] as string
    diagnostics.error(
      'BATON_CYCLE',
      `calls read each other in a cycle: ${cycle.map((c) => names[c]).join(' → ')} (→ means "reads")`,
      [...at, 'calls', first],
      {
        key: true,
        hint: 'no call can start first; break the cycle so that one of these calls does not read the next',
      },
    )
  }
  if (diagnostics.list.length > errorsBefore && diagnostics.failed) return null

  const level = levels(deps)
  const dependents = names.map((_, i) => deps.flatMap((d, j) => (d.includes(i) ? [j] : [])))
  const slots = bodySlots(partial, endpoint.calls)
  const calls: CallPlan[] = partial.map((p) => ({
    ...p,
    dependsOn: deps[p.index] as number[],
    dependents: dependents[p.index] as number[],
    level: level[p.index] as number,
    bodySlot: slots.of.get(p.index) ?? -1,
  }))
  const coalesce = coalescing(endpoint.coalesce, method, cache !== null, calls, [...at, 'coalesce'], diagnostics)
  const timeout = endpoint.timeout ?? ctx.defaultTimeout
  const route = ctx.basePath + routeToServerPath(path === '/' && ctx.basePath !== '' ? '' : path)
  return {
    key,
    // Set once the whole plan is compiled (compile.ts).
    fingerprint: '',
    label: `${method} ${route === '' ? '/' : route}`,
    method,
    route,
    alerts: endpoint.alerts ?? null,
    params,
    purpose: endpoint.purpose,
    timeout,
    callWindow: timeout - Math.min(50, timeout * 0.05),
    auth,
    rateLimit:
      endpoint.rateLimit === false
        ? { exempt: true, perEndpoint: null }
        : { exempt: false, perEndpoint: endpoint.rateLimit?.perEndpoint ?? null },
    status: endpoint.status,
    validate,
    calls,
    roots: calls.filter((c) => c.dependsOn.length === 0).map((c) => c.index),
    dependencyCounts: calls.map((c) => c.dependsOn.length),
    sharedBodies: slots.count,
    response,
    readsCallMeta,
    cache,
    coalesce,
  }
}

/** Whether identical requests in flight share one run: by default when nothing can tell them apart but what the key holds. */
function coalescing(
  declared: boolean | undefined,
  method: string,
  cached: boolean,
  calls: readonly CallPlan[],
  at: readonly (string | number)[],
  diagnostics: Diagnostics,
): boolean {
  if (declared === false) return false
  const loner = calls.find((c) => !c.coalesce)
  const why =
    method !== 'GET'
      ? `a ${method} endpoint may change what services hold: each request runs on its own`
      : cached
        ? 'its response cache collapses identical requests already'
        : loner !== undefined
          ? `its call ${loner.name} does not coalesce`
          : null
  if (why !== null && declared === true) {
    diagnostics.error('BATON_COALESCE', `coalesce: true, but ${why}`, [...at], {
      hint:
        loner !== undefined && method === 'GET' && !cached
          ? `remove coalesce here, or let ${loner.name} coalesce (its service's or its own coalesce: true)`
          : 'remove coalesce here',
    })
  }
  return why === null && calls.length > 0
}

function compileCall(
  i: number,
  name: string,
  call: CallConfig,
  at: (string | number)[],
  ctx: EndpointContext,
  rootsFor: (from: number | null, itemName: string | null) => TemplateScope,
): Omit<CallPlan, 'dependents' | 'level' | 'dependsOn' | 'bodySlot'> | null {
  const { diagnostics } = ctx
  const [, method, serviceName, rawPath] = CALL_REQUEST.exec(call.request) as unknown as [
    string,
    string,
    string,
    string,
  ]
  const service = ctx.services.get(serviceName)
  // A declared service that failed to compile has its own error already.
  if (service === undefined && !ctx.declaredServices.has(serviceName)) {
    const suggestion = closest(serviceName, ctx.services.keys())
    diagnostics.error('BATON_UNKNOWN_SERVICE', `no service named '${serviceName}'`, [...at, 'request'], {
      offset: call.request.indexOf(serviceName),
      hint:
        suggestion === undefined
          ? `declare it under services:, or use one of: ${[...ctx.services.keys()].join(', ')}`
          : `did you mean '${suggestion}'?`,
    })
  }

  let forEach: ForEachPlan | null = null
  const itemName = call.forEach === undefined ? null : (call.as ?? 'item')
  if (
    itemName !== null &&
    (itemName === name ||
      (RESERVED_ROOTS as readonly string[]).includes(itemName) ||
      Object.hasOwn(ctx.endpoint.calls, itemName))
  ) {
    diagnostics.error(
      'BATON_RESERVED_NAME',
      `the forEach item cannot be named '${itemName}': that name is taken`,
      [...at, call.as === undefined ? 'forEach' : 'as'],
      { hint: 'pick another name with as: …' },
    )
  }
  if (call.forEach === undefined) {
    for (const key of ['as', 'into', 'itemFallback', 'batch'] as const) {
      if (call[key] !== undefined)
        diagnostics.error('BATON_FOREACH_ONLY', `'${key}' only applies to a forEach call`, [...at, key], {
          key: true,
          hint: 'add forEach: ${someCall.list}, or remove it',
        })
    }
  }
  const callScope = rootsFor(i, null)
  const itemScope = rootsFor(i, itemName)
  if (call.forEach !== undefined && itemName !== null) {
    const roots = new Set<string>()
    const items = compileValue(
      call.forEach,
      [...at, 'forEach'],
      {
        ...callScope,
        onReference: (ref, refPath, source) => {
          roots.add(ref.root)
          callScope.onReference(ref, refPath, source)
        },
      },
      diagnostics,
    )
    forEach = {
      items: items.evaluate,
      source: typeof call.forEach === 'string' ? call.forEach : JSON.stringify(call.forEach),
      fromRequest: readsOnlyTheClient(roots),
      as: itemName,
      concurrency: call.concurrency,
      maxItems: call.maxItems,
      itemFallback:
        call.itemFallback === undefined
          ? null
          : compileValue(call.itemFallback, [...at, 'itemFallback'], itemScope, diagnostics).evaluate,
      into: call.into ?? null,
      batch: call.batch === undefined ? null : compileBatchKey(call.batch, itemName, [...at, 'batch'], itemScope, ctx),
    }
  }

  // A batched forEach makes one request per batch of keys: its request reads `ids`, never the item.
  const batch =
    call.batch !== undefined && itemName !== null
      ? batchRequestScope(name, call, itemName, rawPath, at, callScope, ctx)
      : null
  const requestScope = batch?.scope ?? itemScope
  const pathTemplate = compileString(rawPath, [...at, 'request'], requestScope, diagnostics, encodePathValue)
  const query =
    call.query === undefined
      ? null
      : Object.entries(call.query).map(
          ([k, v]) => [k, compileValue(v, [...at, 'query', k], requestScope, diagnostics).evaluate] as const,
        )
  const headers =
    call.headers === undefined
      ? null
      : Object.entries(call.headers).flatMap(([h, v]) => {
          if (!checkHeaderName(h, [...at, 'headers', h], diagnostics)) return []
          if (service !== undefined && service.credentialHeader === h.toLowerCase()) {
            diagnostics.error(
              'BATON_AUTH_CONFLICT',
              `${service.name} gets its own credentials in ${service.credentialHeader}; this call cannot set it`,
              [...at, 'headers', h],
              {
                key: true,
                hint: `remove ${h} here, or drop the service's auth to pass the client's own`,
              },
            )
            return []
          }
          const compiled = compileString(String(v), [...at, 'headers', h], requestScope, diagnostics, undefined)
          return compiled === null ? [] : [[h.toLowerCase(), compiled.evaluate] as const]
        })
  const body =
    call.body === undefined ? null : compileValue(call.body, [...at, 'body'], requestScope, diagnostics).evaluate
  batch?.checkIdsRead()
  const fallback =
    call.fallback === undefined || call.fallback === null
      ? null
      : compileValue(call.fallback, [...at, 'fallback'], callScope, diagnostics).evaluate
  const when = call.when === undefined ? null : compileCondition(call.when, [...at, 'when'], callScope, diagnostics)

  const timeout = call.timeout ?? service?.timeout ?? Infinity
  const deadline = ctx.endpoint.timeout ?? ctx.defaultTimeout
  const retry = callRetry(call, method, service?.resilience)
  const required = call.required && call.fallback === undefined
  const worst = callWorstCase(timeout, retry, forEach)
  if (!required && worst.ms > deadline && (forEach !== null || !Number.isFinite(timeout))) {
    // With a finite timeout and no forEach, the warnings below say it already.
    diagnostics.warn(
      'BATON_OPTIONAL_OVER_DEADLINE',
      Number.isFinite(worst.ms)
        ? `${name} can run ${formatDuration(worst.ms)} (${worst.text.replace(/ \(n ≤ (\d+): .*\)$/, ', n ≤ $1')}), past the endpoint's ${formatDuration(deadline)} deadline: when the deadline comes it takes its fallback`
        : `${name} has no timeout: it can run past the endpoint's ${formatDuration(deadline)} deadline, and then it takes its fallback`,
      at,
      {
        key: true,
        hint: 'give the call (or its service) a timeout, lower concurrency × maxItems, or raise the deadline',
      },
    )
  } else if (Number.isFinite(timeout) && timeout > deadline) {
    diagnostics.warn(
      'BATON_TIMEOUT_OVER_DEADLINE',
      `timeout ${timeout}ms is longer than the endpoint's ${deadline}ms deadline`,
      [...at, call.timeout === undefined ? 'request' : 'timeout'],
      { hint: 'the deadline wins: the call gets at most the time left' },
    )
  } else if (retry !== null && worstCase(timeout, retry) > deadline) {
    diagnostics.warn(
      'BATON_RETRY_OVER_DEADLINE',
      `worst case ${Number.isFinite(timeout) ? `${worstCase(timeout, retry)}ms` : 'unbounded'} (${retry.attempts + 1} tries of ${Number.isFinite(timeout) ? `${timeout}ms` : 'no timeout'} plus backoff) does not fit the endpoint's ${deadline}ms deadline`,
      [...at, call.retry === undefined ? 'request' : 'retry'],
      {
        hint: 'retries that cannot finish before the deadline are not started; lower the timeout or the attempts, or raise the deadline',
      },
    )
  }
  if (call.cache !== undefined && call.cache !== false && method !== 'GET' && method !== 'HEAD') {
    diagnostics.error(
      'BATON_CACHE_METHOD',
      `${name} is a ${method} call: only GET and HEAD answers are cached`,
      [...at, 'cache'],
      {
        key: true,
        hint: `remove cache here; a ${method} may change what the service holds, so its answer is not kept`,
      },
    )
  }
  if (service === undefined || pathTemplate === null) return null

  const prefix = service.pathPrefix
  const evalPath: Evaluator = prefix === '' ? pathTemplate.evaluate : (s) => prefix + String(pathTemplate.evaluate(s))
  return {
    index: i,
    name,
    service,
    method,
    path: evalPath,
    query: query === null || query.length === 0 ? null : query,
    headers: headers === null || headers.length === 0 ? null : headers,
    body,
    required,
    timeout,
    retry,
    // A service's `coalesce` speaks for its GET and HEAD calls; any other method coalesces only when the call says so.
    coalesce: call.coalesce ?? ((method === 'GET' || method === 'HEAD') && service.coalesce !== false),
    // Like coalesce, a service's `cache` speaks for its GET and HEAD calls only.
    cache:
      call.cache === undefined ? (method === 'GET' || method === 'HEAD' ? service.cache : null) : cachePlan(call.cache),
    fallback,
    when,
    forEach,
    display: { request: describeRequest(name, service, call, forEach), fallback: describeFallback(call) },
  }
}

/** The name a batched call's request reads the batch's keys by. */
const IDS = 'ids'
/** `${ids}` alone: the whole list, which a path would get as JSON text. */
const WHOLE_IDS = /\$\{\s*ids\s*\}/

/** A batch's `itemKey`: an expression that must read the item (a constant would put every item under one key). */
function compileBatchKey(
  batch: NonNullable<CallConfig['batch']>,
  itemName: string,
  at: (string | number)[],
  itemScope: TemplateScope,
  ctx: EndpointContext,
): BatchPlan {
  let readsItem = false
  const itemKey = compileValue(
    batch.itemKey,
    [...at, 'itemKey'],
    {
      ...itemScope,
      onReference: (ref, refPath, source) => {
        if (ref.root === itemName) readsItem = true
        itemScope.onReference(ref, refPath, source)
      },
    },
    ctx.diagnostics,
  )
  if (!readsItem) {
    ctx.diagnostics.error(
      'BATON_BATCH',
      `itemKey '${batch.itemKey}' does not read the item '${itemName}'`,
      [...at, 'itemKey'],
      { hint: `write the item's key as an expression, e.g. itemKey: \${${itemName}.userId}` },
    )
  }
  return { itemKey: itemKey.evaluate, source: batch.itemKey, key: batch.key, size: batch.size }
}

/**
 * The scope a batched call's request, query, headers and body are compiled in: `ids` is the
 * batch's keys (held in the scope's item slot while the request is built); the item is refused,
 * since one request serves many items. `checkIdsRead` reports a request that never sends the keys.
 */
function batchRequestScope(
  name: string,
  call: CallConfig,
  itemName: string,
  rawPath: string,
  at: (string | number)[],
  callScope: TemplateScope,
  ctx: EndpointContext,
): { scope: TemplateScope; checkIdsRead: () => void } {
  const { diagnostics } = ctx
  if (itemName === IDS || Object.hasOwn(ctx.endpoint.calls, IDS)) {
    diagnostics.error(
      'BATON_RESERVED_NAME',
      `a batched call reads its keys as '${IDS}': ${itemName === IDS ? 'its item' : 'another call of the endpoint'} cannot take that name`,
      [...at, itemName === IDS ? 'as' : 'batch'],
      { key: true, hint: itemName === IDS ? 'pick another name with as: …' : `rename the call '${IDS}'` },
    )
  }
  const whole = WHOLE_IDS.exec(rawPath)
  if (whole !== null) {
    diagnostics.error(
      'BATON_BATCH',
      `\${${IDS}} is a list: written whole into the path it would be sent as JSON`,
      [...at, 'request'],
      {
        offset: call.request.length - rawPath.length + whole.index,
        hint: `send it as a query parameter, query: { id: "\${${IDS}}" } (?id=1&id=2), or joined, \${${IDS}.join(',')} (1,2)`,
      },
    )
  }
  let idsRead = false
  const scope: TemplateScope = {
    knownRoots: [...(callScope.knownRoots ?? []), IDS],
    resolveRoot: (root) => {
      if (root === IDS) return (s) => (s as Scope).item
      // Read, it is reported below; resolving it keeps the expression's other mistakes visible.
      if (root === itemName) return () => undefined
      return callScope.resolveRoot(root)
    },
    onReference: (ref, refPath, source) => {
      if (ref.root === IDS) {
        idsRead = true
        return
      }
      if (ref.root === itemName) {
        const inPath = refPath[refPath.length - 1] === 'request'
        diagnostics.error(
          'BATON_BATCH',
          `the request of batched call '${name}' reads the item '${itemName}'`,
          refPath,
          {
            offset: ref.offset + (inPath ? call.request.length - rawPath.length : 0),
            hint: `one request serves a batch of items: send their keys, \${${IDS}}; the item is read by batch.itemKey`,
          },
        )
        return
      }
      callScope.onReference(ref, refPath, source)
    },
  }
  const checkIdsRead = (): void => {
    if (idsRead) return
    diagnostics.error(
      'BATON_BATCH',
      `the request of batched call '${name}' never sends the batch's keys, \${${IDS}}`,
      [...at, 'request'],
      { hint: `e.g. query: { id: "\${${IDS}}" }, which sends ?id=1&id=2` },
    )
  }
  return { scope, checkIdsRead }
}

/** `cart: GET /carts/${request.body.cartId}`, with its query, forEach and condition: the Service Call column of `baton plan`. */
function describeRequest(name: string, service: ServicePlan, call: CallConfig, forEach: ForEachPlan | null): string {
  const words = call.request.trim().split(/\s+/)
  const who = name === service.name ? name : `${name} (${service.name})`
  const query = Object.entries(call.query ?? {})
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join('&')
  let text = `${who}: ${words[0] ?? ''} ${words.slice(2).join(' ')}${query === '' ? '' : `?${query}`}`
  const list = typeof call.forEach === 'string' ? call.forEach : 'item'
  if (forEach?.batch != null)
    text += ` for each ${list} (batches of ${forEach.batch.size} by ${forEach.batch.key}, ≤${forEach.concurrency} at once)`
  else if (forEach !== null) text += ` for each ${list} (≤${forEach.concurrency} at once, identical calls once)`
  if (call.when !== undefined) text += ` when ${String(call.when)}`
  return text
}

/** The fallback as written (shortened), for the Fallback column of `baton plan`. */
function describeFallback(call: CallConfig): string {
  if (call.fallback === undefined || call.fallback === null) return 'null'
  const text = JSON.stringify(call.fallback)
  return text.length > 40 ? `${text.slice(0, 37)}…` : text
}

/** Gives calls with identically written bodies one slot, so the body is serialised once per request. */
function bodySlots(
  calls: readonly Pick<CallPlan, 'index' | 'name' | 'forEach'>[],
  configs: Readonly<Record<string, CallConfig>>,
): {
  of: Map<number, number>
  count: number
} {
  const groups = new Map<string, number[]>()
  for (const call of calls) {
    const body = configs[call.name]?.body
    if (body === undefined || call.forEach !== null) continue
    const key = JSON.stringify(body)
    groups.set(key, [...(groups.get(key) ?? []), call.index])
  }
  const of = new Map<number, number>()
  let count = 0
  for (const members of groups.values()) {
    if (members.length < 2) continue
    for (const index of members) of.set(index, count)
    count++
  }
  return { of, count }
}

function defaultResponse(names: readonly string[]): Evaluator {
  return (s) => {
    const out: Record<string, unknown> = {}
    for (let i = 0; i < names.length; i++) out[names[i] as string] = (s as Scope).values[i] ?? null
    return out
  }
}

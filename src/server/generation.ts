/**
 * A generation: everything a plan serves with — its service clients, admission, caches, and the
 * router of its endpoints — built once per config version. The server holds the current one; a
 * request is matched against the generation current when it arrives and runs wholly on it, even
 * if a reload installs the next one meanwhile. A generation that is no longer current is retired:
 * once its last request has ended, it closes what the next one did not take over.
 *
 * What carries over to the next generation, by name, when its settings are unchanged (the plan's
 * fingerprints): service clients (connection pools, breakers, retry budgets, stats), the rate
 * limits (their counters), the authenticator (its verified-token cache and JWKS). Metrics keep
 * their series; cache entries of changed endpoints are not served again (the key holds the
 * endpoint's fingerprint).
 */
import Router, { type HTTPMethod } from 'find-my-way'
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import type { Logger } from 'pino'
import { type CacheStores, GatewayCaches } from '../cache/caches.ts'
import type { ResponseCache, StartRun } from '../cache/response.ts'
import { admissionFor, type EdgeObserver, type Rejection } from '../edge/admission.ts'
import { Authenticator } from '../edge/auth.ts'
import { RateLimits } from '../edge/ratelimit.ts'
import { ErrorCodes, validationEnvelope } from '../errors.ts'
import type { GatewayMetrics } from '../observability/metrics.ts'
import { serverTimingObserver } from '../observability/server-timing.ts'
import type { GatewayTracing } from '../observability/tracing.ts'
import type { RequestView } from '../plan/scope.ts'
import type { EndpointPlan, GatewayPlan, ServicePlan } from '../plan/types.ts'
import type { RequestParts } from '../plan/validation.ts'
import type { Clock } from '../policies/clock.ts'
import { type BoundEndpoint, execute, type Run } from '../runtime/execute.ts'
import { type GatewayAnswer, resolveObservers, type RunObserver, type RunView } from '../runtime/observer.ts'
import { createServiceClient, type PoolRegistry, type ServiceClient, type ServiceStage } from '../upstream/client.ts'
import { EndpointCoalescing } from './coalesce.ts'
import { LOGGED, RECORDED, requestIdOf, send, sendError, sendText } from './answers.ts'
import type { Drain } from './drain.ts'
import { guardFor } from './guard.ts'
import { type AllowedMethods, allowedMethods, type ServedRoute } from './methods.ts'
import type { Precompressed } from './precompress.ts'

/** What every generation of one gateway shares: the server's own parts, and the options it was made with. */
export interface GenerationContext {
  readonly logger: Logger | null
  readonly metrics: GatewayMetrics | null
  readonly tracing: GatewayTracing | null
  readonly pools: PoolRegistry
  readonly drain: Drain
  readonly edgeObservers: readonly EdgeObserver[]
  /** The access log's run observer, or null. */
  readonly log: RunObserver | null
  readonly serverTiming: boolean
  readonly origins: ReadonlyMap<string, string> | undefined
  readonly stages: readonly ServiceStage[] | undefined
  readonly observers: readonly RunObserver[]
  readonly clock: Clock | undefined
  readonly rateLimits: boolean
  /** The cache stores (memory, Redis, the event subscription): the gateway's, used by every generation that caches. */
  readonly cacheStores: CacheStores
  /** The server's routes that are not endpoints (health, metrics, the webhook), for 405's Allow. */
  readonly fixedRoutes: () => readonly ServedRoute[]
  /** Compressed forms of shared and cached answers, made once per body; null with compression off. */
  readonly precompressed: Precompressed | null
}

/** An endpoint as the server dispatches to it. */
export interface EndpointRoute {
  readonly plan: EndpointPlan
  readonly guard: onRequestAsyncHookHandler | null
  readonly handler: (req: FastifyRequest, reply: FastifyReply, params: Record<string, unknown>) => Promise<FastifyReply>
}

export interface Match {
  readonly route: EndpointRoute
  readonly params: Record<string, unknown>
}

/** The parameter value find-my-way gives when a segment is longer than maxParamLength. */
export const MAX_PARAM_LENGTH = 100

export class Generation {
  readonly number: number
  readonly plan: GatewayPlan
  readonly clients: ReadonlyMap<string, ServiceClient>
  readonly limits: RateLimits | null
  readonly authenticator: Authenticator | null
  readonly caches: GatewayCaches | null
  /** Built on first use: the server's own routes are all registered by then. */
  #allowed: AllowedMethods | null = null
  readonly #served: ServedRoute[] = []
  readonly #router: Router.Instance<Router.HTTPVersion.V1>
  readonly #context: GenerationContext
  /** Told about each run's answer while a canary compares this generation with another (its guard). */
  onFinished: ((run: RunView, answer: GatewayAnswer) => void) | null = null
  #inFlight = 0
  #released: (() => void) | null = null
  /** What this generation closes when it goes: what it made or took over, less what it handed on. */
  readonly #owns = new Set<object>()
  /** succeed: the previous generation's parts become this one's (a reload); share: they stay its (a canary). */
  readonly #mode: 'succeed' | 'share'

  constructor(
    number: number,
    plan: GatewayPlan,
    context: GenerationContext,
    previous: Generation | null,
    mode: 'succeed' | 'share' = 'succeed',
  ) {
    this.#mode = mode
    this.number = number
    this.plan = plan
    this.#context = context
    const { metrics, logger } = context
    this.clients = this.#clients(plan, previous)
    this.authenticator = this.#take(
      previous,
      previous?.authenticator ?? null,
      previous !== null && sameAuth(previous.plan, plan),
    )
    if (this.authenticator === null && plan.edge.auth !== null) this.authenticator = new Authenticator(plan.edge.auth)

    const limitsOn = plan.edge.rateLimit !== null && context.rateLimits
    const kept = this.#take(
      previous,
      previous?.limits ?? null,
      previous !== null && limitsOn && sameLimits(previous.plan, plan),
    )
    if (kept !== null) kept.update(plan.endpoints)
    if (kept === null && limitsOn && plan.edge.rateLimit?.store === 'redis') metrics?.storeCreated('rate_limit')
    this.limits =
      kept ??
      (limitsOn && plan.edge.rateLimit !== null
        ? this.#made(
            new RateLimits(plan.edge.rateLimit, plan.endpoints, {
              logger: logger ?? undefined,
              clock: context.clock,
              onStoreError: () => metrics?.rateLimitStoreFailed(),
              onStoreFailure: () => metrics?.storeFailed('rate_limit'),
              onStoreChange: (up) => metrics?.storeChanged('rate_limit', up),
            }),
          )
        : null)

    const cached = plan.endpoints.some((e) => e.cache !== null)
    this.caches = !cached
      ? null
      : new GatewayCaches(plan, {
          redis: plan.redis,
          logger,
          serverTiming: context.serverTiming,
          stores: context.cacheStores,
          ...(context.clock === undefined ? {} : { clock: context.clock }),
          onStoreFailure: () => metrics?.storeFailed('cache'),
          onStoreChange: (up) => metrics?.storeChanged('cache', up),
          onStoreCreated: () => metrics?.storeCreated('cache'),
          ...(metrics === null
            ? {}
            : { lookupsOf: (label: string) => metrics.cacheLookupsOf(label), waiters: metrics.waiting }),
        })

    // As the server's router: ignoreTrailingSlash, and fastify's defaults for the rest.
    this.#router = Router({ ignoreTrailingSlash: true, caseSensitive: true, maxParamLength: MAX_PARAM_LENGTH })
    const served = this.#served
    for (const endpoint of plan.endpoints) {
      const route = this.#route(endpoint)
      const path = endpoint.route === '' ? '/' : endpoint.route
      this.#router.on(endpoint.method as HTTPMethod, path, () => {}, route)
      // A GET endpoint answers HEAD too.
      if (endpoint.method === 'GET') this.#router.on('HEAD', path, () => {}, route)
      served.push({ method: endpoint.method, path })
    }
  }

  /** The methods a path is served with (this generation's endpoints and the server's own routes), for 405. */
  allowed(url: string): readonly string[] {
    this.#allowed ??= allowedMethods([...this.#context.fixedRoutes(), ...this.#served])
    return this.#allowed(url)
  }

  /** The endpoint this request is for, with its path parameters; null when none matches. */
  match(method: string, url: string): Match | null {
    const found = this.#router.find(method as HTTPMethod, url)
    if (found === null) return null
    return { route: found.store as EndpointRoute, params: found.params as Record<string, unknown> }
  }

  /** Gets ready to serve: stores connected and listening for events (before the port opens, or before it is current). */
  async prepare(): Promise<void> {
    await this.limits?.ready()
    await this.caches?.start()
  }

  /** A request starts on this generation. */
  enter(): void {
    this.#inFlight++
  }

  /** A request of this generation has ended. */
  leave(): void {
    if (--this.#inFlight === 0 && this.#released !== null) this.#released()
  }

  get inFlight(): number {
    return this.#inFlight
  }

  /**
   * No longer current: resolves once its last request has ended, and closes what `next` did not
   * take over (its own pools, stores).
   */
  async retire(): Promise<void> {
    if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#released = resolve))
    await this.#close()
  }

  /** Closes everything (the gateway is closing). */
  async close(): Promise<void> {
    await this.#close()
  }

  async #close(): Promise<void> {
    const mine = <T extends object>(part: T | null): T | null => (part !== null && this.#owns.has(part) ? part : null)
    await Promise.all([...this.clients.values()].map(async (c) => await mine(c)?.close()))
    await mine(this.limits)?.close()
  }

  /** Promoted from a canary: the parts it shares with `stable` become its own (they are not closed with `stable`). */
  adopt(stable: Generation): void {
    const shared = [...this.clients.values(), this.limits]
    for (const part of shared) if (part !== null && stable.#owns.delete(part)) this.#owns.add(part)
  }

  /** `previous`'s part when `same` (taken over, or shared: see #mode), else null. */
  #take<T extends object>(previous: Generation | null, part: T | null, same: boolean): T | null {
    if (previous === null || part === null || !same) return null
    if (this.#mode === 'succeed' && previous.#owns.delete(part)) this.#owns.add(part)
    return part
  }

  /** A part this generation made: it closes it, unless a later generation takes it over. */
  #made<T extends object>(part: T): T {
    this.#owns.add(part)
    return part
  }

  #clients(plan: GatewayPlan, previous: Generation | null): Map<string, ServiceClient> {
    const { metrics, logger, tracing } = this.#context
    const clients = new Map<string, ServiceClient>()
    const observeTries =
      tracing !== null || this.#context.observers.some((o) => o.tryStarted !== undefined || o.tryEnded !== undefined)
    for (const service of plan.services) {
      const coalesce = plan.endpoints.some((e) => e.calls.some((c) => c.coalesce && c.service.name === service.name))
      const cache = plan.endpoints.some((e) => e.calls.some((c) => c.cache !== null && c.service.name === service.name))
      const old = previous?.clients.get(service.name)
      const kept = this.#take(previous, old ?? null, old !== undefined && sameClient(old, service, coalesce, cache))
      if (kept !== null) {
        clients.set(service.name, kept)
        continue
      }
      const origin = this.#context.origins?.get(service.name)
      const stages = this.#context.stages
      const clock = this.#context.clock
      clients.set(
        service.name,
        this.#made(
          createServiceClient(service, {
            pools: this.#context.pools,
            ...(origin === undefined ? {} : { origin }),
            ...(stages === undefined ? {} : { stages }),
            ...(clock === undefined ? {} : { clock }),
            // Tracing is the observer that watches tries: without it, the observe stage is not in the chain.
            observeTries,
            coalesce,
            onCoalesced: (name) => metrics?.coalesced(name),
            cache,
            onCacheLookup: (name, call, result) => metrics?.cacheLookup(name, call, result),
            onBreakerChange: (name, from, to) => {
              metrics?.breakerChanged(name, from, to)
              logger?.warn({ event: 'breaker', service: name, from, to }, `circuit breaker of ${name}: ${from} → ${to}`)
            },
          }),
        ),
      )
    }
    return clients
  }

  #route(endpoint: EndpointPlan): EndpointRoute {
    const { metrics, tracing, log, edgeObservers } = this.#context
    const endpointClients = endpoint.calls.map((c) => this.clients.get(c.service.name) as ServiceClient)
    // In this order: tracing first, so that the others see the run's trace id.
    const observers: RunObserver[] = []
    // While a canary runs, each run says which version served it (logs, traces).
    const version = this.plan.canary !== null || this.#mode === 'share' ? this.plan.release : null
    if (tracing !== null) observers.push(tracing.observerFor(endpoint, endpointClients, version) as RunObserver)
    if (metrics !== null) observers.push(metrics.observerFor(endpoint))
    if (log !== null) observers.push(log)
    if (this.#context.serverTiming) observers.push(serverTimingObserver)
    observers.push(...this.#context.observers)
    // A canary's stable version and its candidate: the guard sees their answers.
    if (this.plan.canary !== null || this.#mode === 'share')
      observers.push({ runFinished: (_state, run, answer) => this.onFinished?.(run, answer) })
    const bound: BoundEndpoint = {
      plan: endpoint,
      clients: endpointClients,
      retryAfterSeconds: this.plan.retryAfterSeconds,
      version,
      observers: resolveObservers(observers),
    }
    return {
      plan: endpoint,
      guard: guardFor(endpoint, admissionFor(endpoint, this.authenticator, this.limits), edgeObservers),
      handler: handlerFor(
        bound,
        edgeObservers,
        this.#context.drain,
        this.#context.precompressed,
        this.caches?.for(endpoint) ?? null,
        endpoint.coalesce ? new EndpointCoalescing<Run>(metrics?.sharedRunsOf(endpoint.label) ?? null) : null,
      ),
    }
  }
}

/** The same client serves the new plan: same service settings, and the same stages in its chain. */
function sameClient(client: ServiceClient, service: ServicePlan, coalesce: boolean, cache: boolean): boolean {
  return client.service.fingerprint === service.fingerprint && client.coalesces === coalesce && client.caches === cache
}

function sameAuth(a: GatewayPlan, b: GatewayPlan): boolean {
  return JSON.stringify(a.edge.auth) === JSON.stringify(b.edge.auth)
}

function sameLimits(a: GatewayPlan, b: GatewayPlan): boolean {
  return JSON.stringify(a.edge.rateLimit) === JSON.stringify(b.edge.rateLimit)
}

/** A request that does not match its endpoint's `validate` schemas, as the edge observers (metrics, the log) count it. */
const INVALID: Rejection = {
  status: ErrorCodes.VALIDATION_FAILED.status,
  code: 'VALIDATION_FAILED',
  message: ErrorCodes.VALIDATION_FAILED.message,
  reason: 'validation_failed',
  headers: {},
}

function handlerFor(
  endpoint: BoundEndpoint,
  edgeObservers: readonly EdgeObserver[],
  drain: Drain,
  precompressed: Precompressed | null,
  cache: ResponseCache | null,
  coalescing: EndpointCoalescing<Run> | null,
): EndpointRoute['handler'] {
  const method = endpoint.plan.method
  const validate = endpoint.plan.validate
  return async (req, reply, matched) => {
    const requestId = requestIdOf(req)
    // The drain has timed out: the gateway is about to close this connection.
    if (drain.cutting) return sendError(reply, 'SHUTTING_DOWN', requestId)
    const url = req.url
    const q = url.indexOf('?')
    let params = matched
    let query = req.query as Record<string, unknown>
    const body = req.body ?? null
    // After admission (the onRequest guard) and the body parser; before any call.
    if (validate !== null) {
      const parts: RequestParts = { params, query, headers: req.headers, body }
      const issues = validate(parts)
      if (issues !== null) {
        for (const observer of edgeObservers) observer.rejected(endpoint.plan, INVALID, { ip: req.ip, requestId })
        // Its `rejected` line is its log line; the onSend hook counts it.
        req.recorded = LOGGED
        req.answerCode = 'VALIDATION_FAILED'
        return send(reply, { status: INVALID.status, body: validationEnvelope(issues), headers: null }, requestId)
      }
      params = parts.params
      query = parts.query
    }
    const request: RequestView = {
      method,
      path: q === -1 ? url : url.slice(0, q),
      params,
      query,
      headers: req.headers,
      body,
      auth: req.principal,
      url,
      client: req,
    }
    if (cache !== null) {
      const res = reply.raw
      // The run computing this entry, when this request is the one that starts it (or a background refresh).
      const start: StartRun = (view, id) => {
        const run = execute(endpoint, view, id)
        drain.track(res, run)
        return run
      }
      const served = await cache.serve(request, requestId, start, { onGone: (gone) => res.on('close', gone) })
      // This request's own run has counted and logged its answer; the others (hits, waiters) are counted by onSend.
      if (served.ran) req.recorded = RECORDED
      if (served.unserialisable === true) return sendError(reply, 'RESPONSE_ASSEMBLY_FAILED', requestId)
      return sendText(reply, served.status, served.bytes, served.headers, requestId, precompressed)
    }
    if (coalescing !== null) {
      const res = reply.raw
      const shared = await coalescing.serve(
        coalescing.keyOf(req.raw, request.auth),
        requestId,
        () => execute(endpoint, request, requestId),
        { onGone: (gone) => res.on('close', gone) },
        // Should the drain time out while it runs, the shared run answers 503 SHUTTING_DOWN to every request waiting for it.
        (run) => drain.track(res, run),
      )
      if (shared === null) return reply
      // This request's own run has counted and logged its answer; the others are counted by onSend.
      const { answer } = shared
      if (shared.ran) req.recorded = RECORDED
      else req.sharedRun = answer
      if (answer.bytes === null) return sendError(reply, 'RESPONSE_ASSEMBLY_FAILED', requestId)
      return sendText(reply, answer.status, answer.bytes, answer.headers, requestId, precompressed)
    }
    const run = execute(endpoint, request, requestId)
    // A client that hangs up takes its downstream calls with it: nothing keeps running for nobody.
    // 'close' also follows every normal answer; by then the run is done and abandon() does nothing.
    reply.raw.on('close', run.abandon)
    // Should the drain time out while this runs, it answers 503 SHUTTING_DOWN.
    drain.track(reply.raw, run)
    const answer = await run.answer
    // The run's observers have counted and logged it (a bug before this point is the error handler's 500, recorded as such).
    req.recorded = RECORDED
    return send(reply, answer, requestId)
  }
}

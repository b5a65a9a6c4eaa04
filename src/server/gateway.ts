/**
 * The HTTP face of a plan: one fastify route per endpoint, each bound at start-up to the
 * service clients its calls use. Every answer, including fastify's own errors, is JSON in
 * the error envelope with a stable code.
 */
import fastifyCompress from '@fastify/compress'
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type onSendHookHandler,
  type RouteOptions,
} from 'fastify'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { GatewayCaches } from '../cache/caches.ts'
import type { ResponseCache, StartRun } from '../cache/response.ts'
import { admissionFor, type EdgeObserver, type Rejection } from '../edge/admission.ts'
import { ErrorCodes, validationEnvelope } from '../errors.ts'
import { Authenticator } from '../edge/auth.ts'
import { RateLimits } from '../edge/ratelimit.ts'
import { accessLogObserver, answerLog, rejectionLog } from '../observability/access-log.ts'
import { GatewayMetrics } from '../observability/metrics.ts'
import type { Answered, AnswerObserver } from '../observability/outcome.ts'
import { serverTimingObserver } from '../observability/server-timing.ts'
import { GatewayTracing } from '../observability/tracing.ts'
import type { Principal, RequestView } from '../plan/scope.ts'
import type { GatewayPlan } from '../plan/types.ts'
import type { RequestParts } from '../plan/validation.ts'
import type { Clock } from '../policies/clock.ts'
import { type BoundEndpoint, execute } from '../runtime/execute.ts'
import { resolveObservers, type RunObserver } from '../runtime/observer.ts'
import { createServiceClient, PoolRegistry, type ServiceClient, type ServiceStage } from '../upstream/client.ts'
import {
  clientError,
  errorCodeOf,
  LOGGED,
  RECORDED,
  requestIdOf,
  send,
  sendError,
  sendText,
  type SocketAnswer,
} from './answers.ts'
import { invalidationRoute } from './invalidate.ts'
import { isPreflight, registerCors } from './cors.ts'
import { guardFor } from './guard.ts'
import { type AllowedMethods, allowedMethods, type ServedRoute } from './methods.ts'
import { Drain, type DrainReport } from './drain.ts'
import { type ProbeResults, registerHealth, startProbes } from './health.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the endpoint's guard once the caller is authenticated; null on public endpoints. */
    principal: Principal | null
  }
  interface FastifyContextConfig {
    /** How metrics and logs name the route: an endpoint's label, or `GET /health` for the gateway's own paths. */
    label?: string
  }
}

export interface GatewayOptions {
  /** Service name → origin to use instead of the configured URL (baton dev's mocks, tests). */
  origins?: ReadonlyMap<string, string>
  /**
   * Stages of your own in each service's pipeline (README "Extending the pipeline"): each is
   * called once per service and returns a stage, or null to leave that service alone. They run
   * inside the built-in policies (a failure they throw counts against the service) and before
   * the service's credentials and the HTTP request.
   */
  stages?: readonly ServiceStage[]
  /** Observers of every run, after the built-in ones (metrics, tracing, the access log, Server-Timing). */
  observers?: readonly RunObserver[]
  logger?: Logger
  /** Time for breakers and retry budgets (tests use a fake one). */
  clock?: Clock
  /** Overrides gateway.serverTiming (baton dev turns it on). */
  serverTiming?: boolean
  /** Overrides gateway.accessLog. */
  accessLog?: boolean
  /** false: apply no rate limits, whatever the plan says (baton dev without --rate-limits). */
  rateLimits?: boolean
  /**
   * Where the metrics path gets its text, given this gateway's registry once: `baton serve
   * --workers` answers with the sum over every worker. Default: this gateway's own registry.
   */
  metricsSource?: (registry: Registry) => () => Promise<string>
}

export interface CloseOptions {
  /**
   * Destroy every connection now instead of letting the requests in flight finish (they are
   * cut). Also works while a drain is under way: a second signal to `baton serve`.
   */
  force?: boolean
}

export type { DrainReport } from './drain.ts'

export interface Gateway {
  readonly plan: GatewayPlan
  readonly server: FastifyInstance
  /** Resolves with the bound address; port 0 picks a free port. */
  listen(options?: {
    host?: string
    port?: number
  }): Promise<{ host: string; port: number; url: string; metricsUrl: string | null }>
  /** Requests in flight now. */
  readonly inFlight: number
  /**
   * Drains, then closes: the listener stops (new connections are refused), idle connections are
   * closed, readiness answers 503, and the requests in flight finish, up to gateway.drainTimeout;
   * then the service pools, the rate-limit store and the tracing exporter are closed. Calling it
   * again returns the same promise (with `force`, it cuts the drain short).
   */
  close(options?: CloseOptions): Promise<DrainReport>
}

export function createGateway(plan: GatewayPlan, options: GatewayOptions = {}): Gateway {
  const clients = new Map<string, ServiceClient>()
  const pools = new PoolRegistry()
  const logger = options.logger ?? null
  const accessLog = options.accessLog ?? plan.accessLog
  const tracing = plan.tracing === null ? null : new GatewayTracing(plan.tracing, logger)
  // Created once the clients exist (it reads their breakers and stats); breaker changes before that cannot happen.
  let metrics: GatewayMetrics | null = null
  for (const service of plan.services) {
    const origin = options.origins?.get(service.name)
    clients.set(
      service.name,
      createServiceClient(service, {
        pools,
        ...(origin === undefined ? {} : { origin }),
        ...(options.stages === undefined ? {} : { stages: options.stages }),
        ...(options.clock === undefined ? {} : { clock: options.clock }),
        // Tracing is the observer that watches tries: without it, the observe stage is not in the chain.
        observeTries:
          tracing !== null ||
          (options.observers ?? []).some((o) => o.tryStarted !== undefined || o.tryEnded !== undefined),
        coalesce: plan.endpoints.some((e) => e.calls.some((c) => c.coalesce && c.service.name === service.name)),
        onCoalesced: (name) => metrics?.coalesced(name),
        cache: plan.endpoints.some((e) => e.calls.some((c) => c.cache !== null && c.service.name === service.name)),
        onCacheLookup: (name, call, result) => metrics?.cacheLookup(name, call, result),
        onBreakerChange: (name, from, to) => {
          metrics?.breakerChanged(name, from, to)
          logger?.warn({ event: 'breaker', service: name, from, to }, `circuit breaker of ${name}: ${from} → ${to}`)
        },
      }),
    )
  }
  const probes: ProbeResults = new Map()
  let stopProbes: (() => void) | null = null
  metrics = plan.metrics === null ? null : new GatewayMetrics(clients, plan.metrics.buckets)
  const admin =
    plan.metrics?.port === undefined
      ? null
      : Fastify({ logger: false, forceCloseConnections: true, requestIdHeader: false, genReqId: () => '' })

  const edge = plan.edge
  const authenticator = edge.auth === null ? null : new Authenticator(edge.auth)
  const limitsOn = edge.rateLimit !== null && options.rateLimits !== false
  if (limitsOn && edge.rateLimit.store === 'redis') metrics?.storeCreated('rate_limit')
  const limits = !limitsOn
    ? null
    : new RateLimits(edge.rateLimit, plan.endpoints, {
        logger: options.logger,
        clock: options.clock,
        onStoreError: () => metrics?.rateLimitStoreFailed(),
        onStoreFailure: () => metrics?.storeFailed('rate_limit'),
        onStoreChange: (up) => metrics?.storeChanged('rate_limit', up),
      })
  const { headers: headersTimeout, body: requestTimeout } = edge.clientTimeouts
  // Told about every answer written outside a run (a run's observers see the others).
  const answerObservers: AnswerObserver[] = []
  if (metrics !== null) answerObservers.push(metrics)
  const answersLog = logger === null ? null : answerLog(logger, accessLog)
  if (answersLog !== null) answerObservers.push(answersLog)
  const tell = (answer: Answered): void => {
    for (const observer of answerObservers) {
      try {
        observer.answered(answer)
      } catch {
        // An observer's bug must not cost the client its answer.
      }
    }
  }
  const finish: onSendHookHandler = (req, reply, payload, done) => {
    if (!reply.hasHeader('x-request-id')) reply.header('x-request-id', requestIdOf(req))
    if (req.recorded !== RECORDED) {
      // A connection already destroyed (its client gone, or cut by the drain) receives nothing: no answer to count.
      if (answerObservers.length > 0 && !req.raw.destroyed && req.raw.socket?.destroyed !== true)
        tell(answerOf(req, reply))
      req.recorded = RECORDED
    }
    done(null, payload)
  }
  const server = Fastify({
    logger: false,
    bodyLimit: plan.bodyLimit,
    // Slow clients: the head must arrive within `headers`, the whole request within `body` (Node checks every interval).
    http: {
      maxHeaderSize: edge.maxHeaderSize,
      headersTimeout: requestTimeout === 0 ? headersTimeout : Math.min(headersTimeout, requestTimeout),
      requestTimeout,
      connectionsCheckingInterval: Math.max(
        50,
        Math.min(1000, Math.floor(Math.min(headersTimeout || 4000, requestTimeout || 4000) / 4)),
      ),
    },
    requestTimeout,
    clientErrorHandler: (err, socket) => {
      const answer = clientError(err, socket)
      if (answer !== null) tell(socketAnswer(answer))
    },
    // A path that does not decode, or a parameter longer than the router takes: in the envelope, counted and logged.
    frameworkErrors: (err, req, reply) => {
      sendError(
        reply,
        'BAD_REQUEST',
        requestIdOf(req),
        err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path segment is longer than 100 characters' : undefined,
      )
      // This reply has no route, so no hooks: it is recorded here.
      tell(answerOf(req, reply))
    },
    trustProxy: edge.trustedProxies === null ? false : [...edge.trustedProxies],
    // Request ids are ours to validate (see requestIdOf), not fastify's.
    requestIdHeader: false,
    genReqId: () => '',
    // Shutting down (src/server/drain.ts): requests on connections already open are still served
    // (with Connection: close); idle connections are closed at once, the others when their answer is out.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: true },
  })

  // Bodies are JSON or nothing: without this, fastify's default text/plain parser would accept a string body.
  server.removeContentTypeParser('text/plain')
  // The SDK loads when the server gets ready (listen, or inject in tests), before the first request.
  if (tracing !== null) server.addHook('onReady', () => tracing.start())

  const drain = new Drain(server.server, logger)

  server.decorateRequest('principal', null)
  server.decorateRequest('answerCode', null)
  server.decorateRequest('recorded', 0)
  // Every answer carries x-request-id and is counted and logged: a run's by its observers, every other one here.
  server.addHook('onSend', finish)
  if (edge.cors !== null) registerCors(server, edge.cors)
  if (plan.compression !== null) {
    // Before the routes: the plugin gives each route registered after it its onSend hook, which runs after ours.
    void server.register(fastifyCompress, {
      threshold: plan.compression.threshold,
      encodings: [...plan.compression.encodings] as ('zstd' | 'br' | 'gzip' | 'deflate')[],
      // Answers only: request bodies stay JSON as sent (a compressed one is not JSON, 400 INVALID_JSON or 415).
      globalDecompression: false,
    })
  }

  // Every route this server serves (endpoints, health, metrics; HEAD with GET), as fastify registers them: once it
  // is ready, a router of their paths tells a path nobody serves (404) from a method the path does not take (405).
  const served: ServedRoute[] = []
  server.addHook('onRoute', (route) => {
    // '*' (CORS's preflight route) matches every path; OPTIONS is answered as a preflight or not at all.
    if (route.url === '*') return
    for (const method of [route.method].flat()) served.push({ method, path: route.url ?? route.path })
  })
  let allowed: AllowedMethods = () => []
  server.addHook('onReady', (done) => {
    allowed = allowedMethods(served)
    done()
  })
  server.setNotFoundHandler((req, reply) => {
    const requestId = requestIdOf(req)
    // An OPTIONS that is not a CORS preflight stays a 404, with CORS or without.
    const methods = req.method === 'OPTIONS' ? [] : allowed(req.url)
    if (methods.length === 0 || methods.includes(req.method)) return sendError(reply, 'NOT_FOUND', requestId)
    reply.header('allow', methods.join(', '))
    return sendError(reply, 'METHOD_NOT_ALLOWED', requestId)
  })
  server.setErrorHandler((err: FastifyError, req, reply) => {
    const code = errorCodeOf(err)
    // The path only: a query string may carry an API key.
    if (code === 'INTERNAL_ERROR') options.logger?.error({ err, path: req.url.split('?')[0] }, 'unexpected error')
    return sendError(reply, code, requestIdOf(req))
  })

  // Routes of the main server, added together below (once the plugins before them have loaded).
  const routes: RouteOptions[] = []
  if (metrics !== null && plan.metrics !== null) {
    const registry = metrics.registry
    const text = options.metricsSource?.(registry) ?? (() => registry.metrics())
    if (admin !== null) {
      admin.decorateRequest('answerCode', null)
      admin.decorateRequest('recorded', 0)
      admin.addHook('onSend', finish)
    }
    const label = `GET ${plan.metrics.path}`
    const route: RouteOptions = {
      method: 'GET',
      url: plan.metrics.path,
      config: { label },
      handler: async (_req, reply) => reply.header('content-type', registry.contentType).send(await text()),
    }
    if (admin === null) routes.push(route)
    else admin.route(route)
    // The gateway's own answers have their series from the start, as endpoints do: zeros, not gaps.
    metrics.expectAnswers(label, 200)
    if (plan.health !== null) {
      metrics.expectAnswers(`GET ${plan.health.path}`, 200)
      metrics.expectAnswers(`GET ${plan.health.readyPath}`, 200)
    }
    metrics.expectAnswers(UNMATCHED, 404)
  }
  const edgeObservers: EdgeObserver[] = []
  if (metrics !== null) edgeObservers.push(metrics)
  if (logger !== null && accessLog) edgeObservers.push(rejectionLog(logger))
  const log = logger === null ? null : accessLogObserver(logger, accessLog)
  const timing = options.serverTiming ?? plan.serverTiming
  const caches = plan.endpoints.some((e) => e.cache !== null)
    ? new GatewayCaches(plan, {
        redis: plan.redis,
        logger,
        serverTiming: timing,
        ...(options.clock === undefined ? {} : { clock: options.clock }),
        onStoreFailure: () => metrics?.storeFailed('cache'),
        onStoreChange: (up) => metrics?.storeChanged('cache', up),
        ...(metrics === null
          ? {}
          : { lookupsOf: (label: string) => (metrics as GatewayMetrics).cacheLookupsOf(label) }),
      })
    : null
  if (caches?.usesRedis === true) metrics?.storeCreated('cache')
  if (caches !== null) {
    // The webhook: always on the admin port (it is private), on the main port only behind its token.
    const { path, token } = plan.cache.invalidation
    if (admin !== null) admin.route(invalidationRoute(path, null, caches))
    if (token !== null) routes.push(invalidationRoute(path, token, caches))
  }

  for (const endpoint of plan.endpoints) {
    const endpointClients = endpoint.calls.map((c) => clients.get(c.service.name) as ServiceClient)
    // In this order: tracing first, so that the others see the run's trace id.
    const observers: RunObserver[] = []
    if (tracing !== null) observers.push(tracing.observerFor(endpoint, endpointClients) as RunObserver)
    if (metrics !== null) observers.push(metrics.observerFor(endpoint))
    if (log !== null) observers.push(log)
    if (timing) observers.push(serverTimingObserver)
    observers.push(...(options.observers ?? []))
    const bound: BoundEndpoint = {
      plan: endpoint,
      clients: endpointClients,
      retryAfterSeconds: plan.retryAfterSeconds,
      observers: resolveObservers(observers),
    }
    const guard = guardFor(endpoint, admissionFor(endpoint, authenticator, limits), edgeObservers)
    routes.push({
      method: endpoint.method as 'GET',
      url: endpoint.route === '' ? '/' : endpoint.route,
      config: { label: endpoint.label },
      ...(guard === null ? {} : { onRequest: guard }),
      handler: handlerFor(bound, edgeObservers, drain, caches?.for(endpoint) ?? null),
    })
  }
  // In a plugin of their own, so that they are added after compression has loaded: a plugin sees only the routes
  // added after it (onRoute). Hooks, handlers and decorations of the server reach them all the same.
  void server.register(async (app) => {
    registerHealth(app, plan, clients, probes, limits, drain)
    for (const route of routes) app.route(route)
  })

  let closing: Promise<DrainReport> | null = null
  return {
    plan,
    server,
    get inFlight() {
      return drain.inFlight
    },
    async listen({ host = plan.host, port = plan.port } = {}) {
      // The first requests must be counted: a shared store is connected before the port opens.
      await limits?.ready()
      await caches?.start()
      await server.listen({ host, port })
      if (admin !== null && plan.metrics?.port !== undefined) await admin.listen({ host, port: plan.metrics.port })
      stopProbes ??= startProbes(clients, probes, options.logger)
      const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host
      const bound = boundPort(server, port)
      const url = `http://${shown}:${bound}`
      const metricsUrl =
        plan.metrics === null
          ? null
          : `${admin === null ? url : `http://${shown}:${boundPort(admin, 0)}`}${plan.metrics.path}`
      return { host, port: bound, url, metricsUrl }
    },
    close({ force = false }: CloseOptions = {}) {
      // Once: a second close (a test's own, then its cleanup) waits for the first; a forced one cuts its drain short.
      if (closing !== null) {
        if (force) drain.force()
        return closing
      }
      stopProbes?.()
      const drained = drain.close(() => server.close(), plan.drainTimeout, force)
      closing = (async () => {
        const report = await drained
        await admin?.close()
        await Promise.all([...clients.values()].map((c) => c.close()))
        await limits?.close()
        await caches?.close()
        // Last: the requests that were still being answered have ended their spans.
        await tracing?.close()
        return report
      })()
      return closing
    },
  }
}

function boundPort(server: FastifyInstance, fallback: number): number {
  const address = server.server.address()
  return typeof address === 'object' && address !== null ? address.port : fallback
}

/** A request that does not match its endpoint's `validate` schemas, as the edge observers (metrics, the log) count it. */
const INVALID: Rejection = {
  status: ErrorCodes.VALIDATION_FAILED.status,
  code: 'VALIDATION_FAILED',
  message: ErrorCodes.VALIDATION_FAILED.message,
  reason: 'validation_failed',
  headers: {},
}

/** How metrics and logs name a request's route when no endpoint's run did: never its raw path. */
const UNMATCHED = 'unmatched'

/** An answer written outside a run, as the answer observers are told it. */
function answerOf(req: FastifyRequest, reply: FastifyReply): Answered {
  const route = req.routeOptions
  const label = route.config.label ?? (route.url === '*' && isPreflight(req) ? 'preflight' : UNMATCHED)
  const unmatched = label === UNMATCHED
  return {
    endpoint: label,
    status: reply.statusCode,
    requestId: requestIdOf(req),
    durationMs: reply.elapsedTime,
    code: req.answerCode,
    method: unmatched ? req.method : null,
    // The path only: a query string may carry an API key. Cut short: it is the client's text.
    path: unmatched ? (req.url.split('?')[0] as string).slice(0, 256) : null,
    logged: req.recorded === LOGGED,
  }
}

/** An error answered on the socket before a request existed (clientError). */
function socketAnswer(answer: SocketAnswer): Answered {
  return {
    endpoint: UNMATCHED,
    status: answer.status,
    requestId: answer.requestId,
    durationMs: null,
    code: answer.code,
    method: null,
    path: null,
    logged: false,
  }
}

function handlerFor(
  endpoint: BoundEndpoint,
  edgeObservers: readonly EdgeObserver[],
  drain: Drain,
  cache: ResponseCache | null,
): (req: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply> {
  const method = endpoint.plan.method
  const validate = endpoint.plan.validate
  return async (req, reply) => {
    const requestId = requestIdOf(req)
    // The drain has timed out: the gateway is about to close this connection.
    if (drain.cutting) return sendError(reply, 'SHUTTING_DOWN', requestId)
    const url = req.url
    const q = url.indexOf('?')
    let params = req.params as Record<string, unknown>
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
      return sendText(reply, served.status, served.text, served.headers, requestId)
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

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
import { admissionFor, type EdgeObserver } from '../edge/admission.ts'
import { Authenticator } from '../edge/auth.ts'
import { RateLimits } from '../edge/ratelimit.ts'
import { accessLogObserver, answerLog, rejectionLog } from '../observability/access-log.ts'
import { GatewayMetrics } from '../observability/metrics.ts'
import type { Answered, AnswerObserver } from '../observability/outcome.ts'
import { serverTimingObserver } from '../observability/server-timing.ts'
import { GatewayTracing } from '../observability/tracing.ts'
import type { Principal, RequestView } from '../plan/scope.ts'
import type { GatewayPlan } from '../plan/types.ts'
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
  type SocketAnswer,
} from './answers.ts'
import { isPreflight, registerCors } from './cors.ts'
import { guardFor } from './guard.ts'
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
}

export interface Gateway {
  readonly plan: GatewayPlan
  readonly server: FastifyInstance
  /** Resolves with the bound address; port 0 picks a free port. */
  listen(options?: {
    host?: string
    port?: number
  }): Promise<{ host: string; port: number; url: string; metricsUrl: string | null }>
  close(): Promise<void>
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
  const limits =
    edge.rateLimit === null
      ? null
      : new RateLimits(edge.rateLimit, plan.endpoints, {
          logger: options.logger,
          onStoreError: () => metrics?.rateLimitStoreFailed(),
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
      if (answerObservers.length > 0) tell(answerOf(req, reply))
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
    return503OnClosing: true,
    forceCloseConnections: true,
    routerOptions: { ignoreTrailingSlash: true },
  })

  // Bodies are JSON or nothing: without this, fastify's default text/plain parser would accept a string body.
  server.removeContentTypeParser('text/plain')
  // The SDK loads when the server gets ready (listen, or inject in tests), before the first request.
  if (tracing !== null) server.addHook('onReady', () => tracing.start())

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

  server.setNotFoundHandler((req, reply) => sendError(reply, 'NOT_FOUND', requestIdOf(req)))
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
      handler: async (_req, reply) => reply.header('content-type', registry.contentType).send(await registry.metrics()),
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
      handler: handlerFor(bound),
    })
  }
  // In a plugin of their own, so that they are added after compression has loaded: a plugin sees only the routes
  // added after it (onRoute). Hooks, handlers and decorations of the server reach them all the same.
  void server.register(async (app) => {
    registerHealth(app, plan, clients, probes, limits)
    for (const route of routes) app.route(route)
  })

  let closing: Promise<void> | null = null
  return {
    plan,
    server,
    async listen({ host = plan.host, port = plan.port } = {}) {
      // The first requests must be counted: a shared store is connected before the port opens.
      await limits?.ready()
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
    close() {
      // Once: a second close (a test's own, then its cleanup) waits for the first.
      closing ??= (async () => {
        stopProbes?.()
        await server.close()
        await admin?.close()
        await Promise.all([...clients.values()].map((c) => c.close()))
        await limits?.close()
        // Last: the requests that were still being answered have ended their spans.
        await tracing?.close()
      })()
      return closing
    },
  }
}

function boundPort(server: FastifyInstance, fallback: number): number {
  const address = server.server.address()
  return typeof address === 'object' && address !== null ? address.port : fallback
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

function handlerFor(endpoint: BoundEndpoint): (req: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply> {
  const method = endpoint.plan.method
  return async (req, reply) => {
    const requestId = requestIdOf(req)
    const url = req.url
    const q = url.indexOf('?')
    const request: RequestView = {
      method,
      path: q === -1 ? url : url.slice(0, q),
      params: req.params as Record<string, string>,
      query: req.query as Record<string, unknown>,
      headers: req.headers,
      body: req.body ?? null,
      auth: req.principal,
    }
    const run = execute(endpoint, request, requestId)
    // A client that hangs up takes its downstream calls with it: nothing keeps running for nobody.
    // 'close' also follows every normal answer; by then the run is done and abandon() does nothing.
    reply.raw.on('close', run.abandon)
    const answer = await run.answer
    // The run's observers have counted and logged it (a bug before this point is the error handler's 500, recorded as such).
    req.recorded = RECORDED
    return send(reply, answer, requestId)
  }
}

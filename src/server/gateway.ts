/**
 * The HTTP face of a plan: the fastify server (its limits, CORS, compression, health, metrics,
 * the admin endpoints, the drain) and the generation of the plan it serves. The endpoints are
 * dispatched by the current generation's router, so a reload can add, change and remove them
 * while requests already running finish on the generation they started on. Every answer,
 * including fastify's own errors, is JSON in the error envelope with a stable code.
 */
import type { ServerResponse } from 'node:http'
import fastifyCompress from '@fastify/compress'
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type HTTPMethods,
  type onSendHookHandler,
  type RouteOptions,
} from 'fastify'
import type { Logger } from 'pino'
import { type Diagnostic, formatDiagnostic } from '../errors.ts'
import type { EdgeObserver } from '../edge/admission.ts'
import type { Registry } from 'prom-client'
import { accessLogObserver, answerLog, rejectionLog } from '../observability/access-log.ts'
import { GatewayMetrics } from '../observability/metrics.ts'
import type { Answered, AnswerObserver } from '../observability/outcome.ts'
import { GatewayTracing } from '../observability/tracing.ts'
import type { Principal } from '../plan/scope.ts'
import type { GatewayPlan } from '../plan/types.ts'
import type { Clock } from '../policies/clock.ts'
import type { RunObserver } from '../runtime/observer.ts'
import { PoolRegistry, type ServiceStage } from '../upstream/client.ts'
import { clientError, errorCodeOf, LOGGED, RECORDED, requestIdOf, sendError, type SocketAnswer } from './answers.ts'
import { isPreflight, registerCors } from './cors.ts'
import { Drain, type DrainReport, sinceArrival } from './drain.ts'
import { Generation, type GenerationContext, type Match, MAX_PARAM_LENGTH } from './generation.ts'
import { type ProbeResults, registerHealth, startProbes } from './health.ts'
import { type AdminAction, canaryRoute, invalidationRoute, reloadRoute } from './admin.ts'
import { Canary } from './canary.ts'
import { cacheStores, closeCacheStores } from '../cache/caches.ts'
import { systemClock } from '../policies/clock.ts'
import type { ServedRoute } from './methods.ts'
import { Precompressed, SYNC_LIMIT } from './precompress.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the endpoint's guard once the caller is authenticated; null on public endpoints. */
    principal: Principal | null
    /** The endpoint (of the generation current when the request arrived) and its path parameters; null for other routes. */
    matched: Match | null
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
  /** Gives the plan of a reload (`baton serve` reads and compiles the config file again); also enables POST /admin/reload. */
  reloader?: () => Promise<GatewayPlan | Release>
  /** The canary's candidate plan, when the plan names one (`canary.config`, compiled by whoever reads files). */
  candidate?: GatewayPlan
  /**
   * Where the metrics path gets its text, given this gateway's registry once: `baton serve
   * --workers` answers with the sum over every worker. Default: this gateway's own registry.
   */
  metricsSource?: (registry: Registry) => () => Promise<string>
  /**
   * Told after an admin endpoint has acted here (an invalidation, a reload, a canary ended):
   * `baton serve --workers` passes it on to the other workers, which apply it with
   * `dropCached`, `reload` and `endCanary`.
   */
  onAdmin?: (action: AdminAction) => void
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
  /** The plan being served (the latest reload's). */
  readonly plan: GatewayPlan
  /** 1 at start, one more for each reload. */
  readonly generation: number
  /**
   * Serves `plan` (or, without one, the plan `options.reloader` gives) from now on: requests
   * already running finish on the previous generation, which is then closed; service clients,
   * rate limits and the authenticator are kept where their settings are unchanged. Rejects (and
   * the previous plan keeps serving) when the reloader throws, e.g. a ConfigError.
   */
  reload(next?: GatewayPlan | Release): Promise<ReloadReport>
  /** The canary being run, or null. */
  readonly canary: Canary | null
  /** Ends the canary: `promote` serves the candidate to everyone, `abort` the stable version; false when none runs. */
  endCanary(how: 'promote' | 'abort'): boolean
  /** Drops the answers with these tags from this process's memory cache only (another worker invalidated them everywhere else); returns how many. */
  dropCached(tags: readonly string[]): number
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
  const first = plan
  const logger = options.logger ?? null
  const accessLog = options.accessLog ?? first.accessLog
  const tracing = first.tracing === null ? null : new GatewayTracing(first.tracing, logger)
  // The generation being served; set below, once the server's own parts exist.
  let current!: Generation
  const metrics = first.metrics === null ? null : new GatewayMetrics(() => current.clients, first.metrics.buckets)
  const probes: ProbeResults = new Map()
  let stopProbes: (() => void) | null = null
  const admin =
    first.metrics?.port === undefined
      ? null
      : Fastify({ logger: false, forceCloseConnections: true, requestIdHeader: false, genReqId: () => '' })

  const edge = first.edge
  const { headers: headersTimeout, body: requestTimeout } = edge.clientTimeouts
  // Told about every answer written outside a run (a run's observers see the others).
  const answerObservers: AnswerObserver[] = []
  // Tracing first, so that the others (the log) see the answer's trace id, as with a run's observers.
  if (tracing !== null) answerObservers.push(tracing)
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
    bodyLimit: first.bodyLimit,
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
    // A path that does not decode: in the envelope, counted and logged.
    frameworkErrors: (err, req, reply) => {
      sendError(reply, 'BAD_REQUEST', requestIdOf(req), err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? TOO_LONG : undefined)
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
  server.decorateRequest('sharedRun', null)
  server.decorateRequest('matched', null)
  // Every answer carries x-request-id and is counted and logged: a run's by its observers, every other one here.
  server.addHook('onSend', finish)
  if (edge.cors !== null) registerCors(server, edge.cors)
  if (first.compression !== null) {
    // Before the routes: the plugin gives each route registered after it its onSend hook, which runs after ours.
    void server.register(fastifyCompress, {
      threshold: first.compression.threshold,
      encodings: [...first.compression.encodings] as ('zstd' | 'br' | 'gzip' | 'deflate')[],
      // Answers only: request bodies stay JSON as sent (a compressed one is not JSON, 400 INVALID_JSON or 415).
      globalDecompression: false,
      // On the spot up to the size shared answers are (precompress.ts: the threadpool costs more CPU than it saves).
      syncThreshold: SYNC_LIMIT,
    })
  }

  // The server's own routes (health, metrics, the admin endpoints; HEAD with GET), as fastify registers them: with
  // each generation's endpoints they tell a path nobody serves (404) from a method the path does not take (405).
  const served: ServedRoute[] = []
  server.addHook('onRoute', (route) => {
    // '*' (the endpoints' dispatcher, CORS's preflight route) matches every path.
    if (route.url === '*') return
    for (const method of [route.method].flat()) served.push({ method, path: route.url ?? route.path })
  })
  const notFound = (req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const requestId = requestIdOf(req)
    const path = req.url.split('?')[0] as string
    if (path.split('/').some((segment) => segment.length > MAX_PARAM_LENGTH))
      return sendError(reply, 'BAD_REQUEST', requestId, TOO_LONG)
    // An OPTIONS that is not a CORS preflight stays a 404, with CORS or without.
    const methods = req.method === 'OPTIONS' ? [] : current.allowed(req.url)
    if (methods.length === 0 || methods.includes(req.method)) return sendError(reply, 'NOT_FOUND', requestId)
    reply.header('allow', methods.join(', '))
    return sendError(reply, 'METHOD_NOT_ALLOWED', requestId)
  }
  server.setNotFoundHandler(notFound)
  server.setErrorHandler((err: FastifyError, req, reply) => {
    const code = errorCodeOf(err)
    // The path only: a query string may carry an API key.
    if (code === 'INTERNAL_ERROR' && options.logger !== undefined) {
      // Named as every other line names its request: the endpoint's label (method and path only when unmatched).
      const { requestId, endpoint, method, path } = answerOf(req, reply)
      const asked = method === null ? {} : { method, path }
      options.logger.error({ event: 'unexpected_error', requestId, endpoint, ...asked, err }, 'unexpected error')
    }
    return sendError(reply, code, requestIdOf(req))
  })

  // Routes of the main server, added together below (once the plugins before them have loaded).
  const routes: RouteOptions[] = []
  if (metrics !== null && first.metrics !== null) {
    const registry = metrics.registry
    const text = options.metricsSource?.(registry) ?? (() => registry.metrics())
    if (admin !== null) {
      admin.decorateRequest('answerCode', null)
      admin.decorateRequest('recorded', 0)
      admin.decorateRequest('matched', null)
      admin.addHook('onSend', finish)
    }
    const label = `GET ${first.metrics.path}`
    const route: RouteOptions = {
      method: 'GET',
      url: first.metrics.path,
      config: { label },
      handler: async (_req, reply) => reply.header('content-type', registry.contentType).send(await text()),
    }
    if (admin === null) routes.push(route)
    else admin.route(route)
    // The gateway's own answers have their series from the start, as endpoints do: zeros, not gaps.
    metrics.expectAnswers(label, 200)
    if (first.health !== null) {
      metrics.expectAnswers(`GET ${first.health.path}`, 200)
      metrics.expectAnswers(`GET ${first.health.readyPath}`, 200)
    }
    metrics.expectAnswers(UNMATCHED, 404)
  }
  const edgeObservers: EdgeObserver[] = []
  if (metrics !== null) edgeObservers.push(metrics)
  if (logger !== null && accessLog) edgeObservers.push(rejectionLog(logger))

  const context: GenerationContext = {
    logger,
    metrics,
    tracing,
    pools: new PoolRegistry(),
    drain,
    edgeObservers,
    log: logger === null ? null : accessLogObserver(logger, accessLog),
    serverTiming: options.serverTiming ?? first.serverTiming,
    origins: options.origins,
    stages: options.stages,
    observers: options.observers ?? [],
    clock: options.clock,
    rateLimits: options.rateLimits !== false,
    fixedRoutes: () => served,
    cacheStores: cacheStores(),
    // As the compression plugin registered above: settled by the first config (a reload keeps them).
    precompressed: first.compression === null ? null : new Precompressed(first.compression),
  }
  let number = 1
  current = new Generation(number, first, context, null)
  let canary: Canary | null = null

  /** Runs `candidate` beside `stable` as the latter's canary says (or none). */
  const startCanary = (stable: Generation, candidate: GatewayPlan | null | undefined): Canary | null => {
    if (stable.plan.canary === null || candidate == null) return null
    const generation = new Generation(stable.number, candidate, context, stable, 'share')
    const started = new Canary(stable.plan.canary, generation, options.clock ?? systemClock, logger, {
      onWeight: (weight) => metrics?.canaryWeight(weight),
      onRollback: () => metrics?.canaryRolledBack(),
      onRequest: (version, failed) => metrics?.canaryRequest(version, failed),
    })
    stable.onFinished = (run, answer) => started.record('stable', run, answer)
    generation.onFinished = (run, answer) => started.record('candidate', run, answer)
    logger?.info(
      {
        event: 'canary',
        stable: stable.plan.release,
        candidate: candidate.release,
        weight: started.weight,
        sticky: stable.plan.canary.sticky !== null,
      },
      `canary: ${candidate.release} serves ${(started.weight * 100).toFixed(1)}% beside ${stable.plan.release}`,
    )
    return started
  }
  const endCanary = (how: 'promote' | 'abort'): boolean => {
    const ending = canary
    if (ending === null) return false
    canary = null
    ending.end()
    current.onFinished = null
    const previous = current
    const figures = ending.figures()
    if (how === 'promote') {
      // The candidate becomes the one version, and what it shared with the stable one becomes its own.
      ending.candidate.adopt(previous)
      current = ending.candidate
      current.onFinished = null
    }
    logger?.warn(
      {
        event: how === 'promote' ? 'canary_promoted' : 'canary_aborted',
        release: ending.candidate.plan.release,
        ...figures,
      },
      how === 'promote'
        ? `canary ${ending.candidate.plan.release} promoted: it serves every request until the next reload (make it the config to keep it)`
        : `canary ${ending.candidate.plan.release} aborted: ${previous.plan.release} serves every request`,
    )
    const retired = how === 'promote' ? previous : ending.candidate
    void retired.retire().then(
      () => undefined,
      (err: unknown) => logger?.error({ event: 'retire_failed', err }, 'closing a generation failed'),
    )
    return true
  }
  canary = startCanary(current, options.candidate)

  // The admin endpoints: always on the admin port (it is private), on the main port only behind a token.
  const invalidationToken = first.cache.invalidation.token ?? first.adminToken
  const told = options.onAdmin ?? null
  const invalidate = invalidationRoute(first.cache.invalidation.path, async (tags) => {
    const caches = current.caches
    const result = caches === null ? { dropped: 0, published: false } : await caches.invalidate(tags)
    told?.({ type: 'invalidate', tags })
    return result
  })
  if (admin !== null) admin.route(invalidate(null))
  if (invalidationToken !== null) routes.push(invalidate(invalidationToken))
  const reloads = reloadRoute('/admin/reload', async () => {
    const report = await reload()
    told?.({ type: 'reload' })
    return report
  })
  if (options.reloader !== undefined) {
    if (admin !== null) admin.route(reloads(null))
    if (first.adminToken !== null) routes.push(reloads(first.adminToken))
  }
  for (const how of ['promote', 'abort'] as const) {
    const route = canaryRoute(`/admin/canary/${how}`, () => {
      const ended = endCanary(how)
      if (ended) told?.({ type: 'canary', how })
      return ended
    })
    if (admin !== null) admin.route(route(null))
    if (first.adminToken !== null) routes.push(route(first.adminToken))
  }

  // The endpoints: one route for every path, dispatched by the current generation's router (so that a reload can add
  // and remove endpoints). CORS answers OPTIONS preflights on its own '*' route.
  const ended = function (this: ServerResponse & { generation?: Generation }): void {
    this.generation?.leave()
  }
  routes.push({
    method: edge.cors === null ? [...DISPATCHED, 'OPTIONS'] : DISPATCHED,
    url: '*',
    onRequest: async (req, reply) => {
      const generation = canary === null ? current : await canary.choose(req, current)
      // While a canary runs, every answer says which version made it.
      if (canary !== null) reply.header('baton-version', generation.plan.release)
      const match = generation.match(req.method, req.url)
      if (match === null) return notFound(req, reply)
      req.matched = match
      // The request runs wholly on this generation; it is released when the last of its requests has ended.
      generation.enter()
      const res = reply.raw as ServerResponse & { generation?: Generation }
      res.generation = generation
      res.once('close', ended)
      const guard = match.route.guard
      if (guard !== null) return await guard.call(server, req, reply)
      return undefined
    },
    handler: async (req, reply) => {
      const match = req.matched as Match
      return await match.route.handler(req, reply, match.params)
    },
  })

  // In a plugin of their own, so that they are added after compression has loaded: a plugin sees only the routes
  // added after it (onRoute). Hooks, handlers and decorations of the server reach them all the same.
  void server.register(async (app) => {
    registerHealth(app, first, () => current, probes, drain)
    for (const route of routes) app.route(route)
  })

  /** Reloads run one at a time, in the order asked. */
  let reloading: Promise<unknown> = Promise.resolve()
  const reload = async (next?: GatewayPlan | Release): Promise<ReloadReport> => {
    const run = reloading.then(async () => {
      let release: Release
      try {
        const given = next ?? (await (options.reloader as () => Promise<GatewayPlan | Release>)())
        release = 'plan' in given ? given : { plan: given }
      } catch (err) {
        metrics?.reloaded(false, number)
        throw err
      }
      const previous = current
      const previousCanary = canary
      const generation = new Generation(number + 1, release.plan, context, previous)
      await generation.prepare()
      number++
      current = generation
      // A reload starts the canary again from its config (a rollback or a promotion lasts until the next reload).
      previousCanary?.end()
      canary = startCanary(generation, release.candidate)
      await canary?.candidate.prepare()
      if (previousCanary !== null) previous.onFinished = null
      metrics?.reloaded(true, number)
      if (stopProbes !== null) {
        stopProbes()
        stopProbes = startProbes(current.clients, probes, options.logger)
      }
      const report = reloadReport(previous, generation)
      logger?.info(
        { event: 'reloaded', ...report },
        `reloaded: generation ${report.generation}${describeChanges(report)}`,
      )
      logWarnings(logger, release.warnings)
      for (const key of report.restartNeeded)
        logger?.warn(
          { event: 'reload_restart_needed', key },
          `gateway.${key} changed: it takes effect on the next start, not on a reload`,
        )
      // In the background: the old generation (and its canary, which shares its parts) serves its requests to the
      // end, then closes what was not kept.
      const retiring = async (): Promise<void> => {
        await previousCanary?.candidate.retire()
        await previous.retire()
      }
      retiring().catch((err: unknown) => {
        logger?.error({ event: 'retire_failed', err }, 'closing the previous generation failed')
      })
      return report
    })
    reloading = run.catch(() => undefined)
    return await run
  }

  let closing: Promise<DrainReport> | null = null
  return {
    get plan() {
      return current.plan
    },
    get generation() {
      return number
    },
    server,
    get inFlight() {
      return drain.inFlight
    },
    reload,
    get canary() {
      return canary
    },
    endCanary,
    dropCached(tags) {
      return current.caches?.dropHere(tags) ?? 0
    },
    async listen({ host = first.host, port = first.port } = {}) {
      // The first requests must be counted: a shared store is connected before the port opens.
      await current.prepare()
      await canary?.candidate.prepare()
      await server.listen({ host, port })
      if (admin !== null && first.metrics?.port !== undefined) await admin.listen({ host, port: first.metrics.port })
      stopProbes ??= startProbes(current.clients, probes, options.logger)
      const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host
      const bound = boundPort(server, port)
      const url = `http://${shown}:${bound}`
      const metricsUrl =
        first.metrics === null
          ? null
          : `${admin === null ? url : `http://${shown}:${boundPort(admin, 0)}`}${first.metrics.path}`
      return { host, port: bound, url, metricsUrl }
    },
    close({ force = false }: CloseOptions = {}) {
      // Once: a second close (a test's own, then its cleanup) waits for the first; a forced one cuts its drain short.
      if (closing !== null) {
        if (force) drain.force()
        return closing
      }
      stopProbes?.()
      const drained = drain.close(() => server.close(), current.plan.drainTimeout, force)
      closing = (async () => {
        const report = await drained
        await admin?.close()
        // A reload under way finishes first; then every generation still open closes.
        await reloading
        await canary?.candidate.close()
        await current.close()
        await closeCacheStores(context.cacheStores)
        // Last: the requests that were still being answered have ended their spans.
        await tracing?.close()
        return report
      })()
      return closing
    },
  }
}

/** Methods the endpoints' route takes (OPTIONS too, when CORS does not answer it). */
const DISPATCHED: HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']

const TOO_LONG = 'A path segment is longer than 100 characters'

/** What a reload serves: the config, and its canary's candidate when it names one. */
export interface Release {
  readonly plan: GatewayPlan
  readonly candidate?: GatewayPlan | null
  /** What `baton check` would warn about in the config (and the candidate's): logged once it serves. */
  readonly warnings?: readonly Diagnostic[]
}

/** A config's warnings as log lines: one `config_warning` each, with its code and place. */
export function logWarnings(logger: Logger | null | undefined, warnings: readonly Diagnostic[] | undefined): void {
  for (const d of warnings ?? [])
    logger?.warn(
      { event: 'config_warning', code: d.code, at: `${d.file ?? ''}:${d.line ?? 0}:${d.col ?? 0}` },
      formatDiagnostic(d),
    )
}

/** What a reload did. */
export interface ReloadReport {
  /** The generation now served. */
  readonly generation: number
  /** Endpoint labels. */
  readonly added: readonly string[]
  readonly removed: readonly string[]
  readonly changed: readonly string[]
  /** Services whose client (pool, breaker, stats) was kept, and those started afresh. */
  readonly servicesKept: readonly string[]
  readonly servicesNew: readonly string[]
  /** gateway keys that changed but take effect only on a restart (port, host, compression…). */
  readonly restartNeeded: readonly string[]
}

function reloadReport(previous: Generation, next: Generation): ReloadReport {
  const before = new Map(previous.plan.endpoints.map((e) => [e.label, e.fingerprint]))
  const after = new Map(next.plan.endpoints.map((e) => [e.label, e.fingerprint]))
  const services = [...next.clients.entries()]
  return {
    generation: next.number,
    added: [...after.keys()].filter((label) => !before.has(label)),
    removed: [...before.keys()].filter((label) => !after.has(label)),
    changed: [...after].filter(([label, print]) => before.has(label) && before.get(label) !== print).map(([l]) => l),
    servicesKept: services.filter(([name, c]) => previous.clients.get(name) === c).map(([name]) => name),
    servicesNew: services.filter(([name, c]) => previous.clients.get(name) !== c).map(([name]) => name),
    restartNeeded: RESTART_KEYS.filter(
      ([, of]) => JSON.stringify(of(previous.plan)) !== JSON.stringify(of(next.plan)),
    ).map(([key]) => key),
  }
}

/** What the server is made with: a reload cannot change it (a line says so). */
const RESTART_KEYS: readonly (readonly [string, (plan: GatewayPlan) => unknown])[] = [
  ['host', (p) => p.host],
  ['port', (p) => p.port],
  ['bodyLimit', (p) => p.bodyLimit],
  ['maxHeaderSize', (p) => p.edge.maxHeaderSize],
  ['clientTimeouts', (p) => p.edge.clientTimeouts],
  ['trustedProxies', (p) => p.edge.trustedProxies],
  ['cors', (p) => p.edge.cors],
  ['compression', (p) => p.compression],
  ['metrics', (p) => p.metrics],
  ['health', (p) => p.health && [p.health.path, p.health.readyPath]],
  ['tracing', (p) => p.tracing],
  ['logLevel', (p) => p.logLevel],
  ['logFormat', (p) => [p.logFormat, p.logTime]],
  ['accessLog', (p) => p.accessLog],
  ['redis', (p) => p.redis],
  ['cache', (p) => [p.cache.maxSize, p.cache.invalidation]],
  ['admin', (p) => p.adminToken],
]

function describeChanges(report: ReloadReport): string {
  const parts = [
    report.added.length === 0 ? null : `added ${report.added.join(', ')}`,
    report.removed.length === 0 ? null : `removed ${report.removed.join(', ')}`,
    report.changed.length === 0 ? null : `changed ${report.changed.join(', ')}`,
  ].filter((p) => p !== null)
  return parts.length === 0 ? ' (no endpoint changed)' : ` (${parts.join('; ')})`
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
  const label =
    req.matched?.route.plan.label ??
    route.config.label ??
    (route.url === '*' && isPreflight(req) ? 'preflight' : UNMATCHED)
  const unmatched = label === UNMATCHED
  return {
    endpoint: label,
    status: reply.statusCode,
    requestId: requestIdOf(req),
    durationMs: sinceArrival(req.raw) ?? reply.elapsedTime,
    code: req.answerCode,
    method: unmatched ? req.method : null,
    // The path only: a query string may carry an API key. Cut short: it is the client's text.
    path: unmatched ? (req.url.split('?')[0] as string).slice(0, 256) : null,
    logged: req.recorded === LOGGED,
    sharedRun: req.sharedRun?.requestId ?? null,
    sharedSpan: req.sharedRun?.span ?? null,
    headers: req.headers,
    matched: req.matched != null,
    degraded: reply.hasHeader('baton-degraded'),
    traceId: null,
    spanId: null,
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
    sharedRun: null,
    sharedSpan: null,
    headers: null,
    matched: false,
    degraded: false,
    traceId: null,
    spanId: null,
  }
}

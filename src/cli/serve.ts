/**
 * `baton serve` and `baton dev`: compile, (start mocks,) listen, and on SIGTERM/SIGINT drain:
 * readiness says 503, the listener closes, the requests in flight finish (up to
 * gateway.drainTimeout), then everything is closed. A second signal cuts the drain short.
 */
import { constants } from 'node:os'
import { pino, type Logger } from 'pino'
import type { Registry } from 'prom-client'
import { createGateway, logWarnings, type Release } from '../server/gateway.ts'
import type { AdminAction } from '../server/admin.ts'
import { DEV_SUBJECT } from './devtoken.ts'
import { formatRate } from './plan.ts'
import { formatDuration } from '../config/units.ts'
import { startMocks } from '../server/mocks.ts'
import type { GatewayPlan } from '../plan/types.ts'
import { ConfigError, type Diagnostic, formatDiagnostic } from '../errors.ts'
import { relative } from 'node:path'
import { FileWatcher } from './watch.ts'
import { logOptions, prettyStream, type LogSchema } from '../observability/log.ts'

/** Exit codes of `baton serve` and `baton dev` (README "The command line"). */
export const EXIT = {
  /** Stopped by a signal, every request drained. */
  OK: 0,
  /** Could not start, or the drain timed out and requests were cut, or closing failed. */
  FAILED: 1,
  /** A usage error: a bad option, a --down/--slow naming a service that cannot take it. */
  USAGE: 2,
} as const

export interface ServeOptions {
  host?: string
  port?: number
  /** baton dev: start the services' mocks and point the gateway at them. */
  mocks?: { down: Set<string>; slow: Map<string, number> }
  pretty?: boolean
  /** Overrides gateway.logLevel. */
  logLevel?: string
  /** false: no line per request (--no-access-log). */
  accessLog?: boolean
  /** baton dev: a token for the protected endpoints, printed with a curl line. */
  devToken?: string
  /** false: apply no rate limits (baton dev without --rate-limits). */
  rateLimits?: boolean
  /**
   * Reads and compiles the config file again, for a reload (SIGHUP, POST /admin/reload, or a
   * change of the config or of a file it names); throws a ConfigError when it has errors.
   */
  reload?: () => Promise<Release>
  /** The canary's candidate plan, when the config names one. */
  candidate?: GatewayPlan | null
  /** false: do not watch the files (--no-watch). */
  watch?: boolean
  /** baton serve --workers: this process is one of the workers (src/cli/cluster.ts). */
  worker?: WorkerLink
  /** The config's warnings, logged at start (by the primary under --workers); baton dev prints them itself. */
  warnings?: readonly Diagnostic[]
}

/** What a worker of `baton serve --workers` does through its primary instead of on its own. */
export interface WorkerLink {
  /** cluster's worker id (1, 2, …; a restarted worker gets a new one): on each of its log lines. */
  readonly id: number
  /** Tells the primary this worker listens; the primary logs "listening" once for all of them. */
  listening(address: { host: string; port: number; url: string }): void
  /** The signals the primary passes on: a worker does not act on those sent to it directly. */
  onSignal(signal: NodeJS.Signals, handler: (signal: NodeJS.Signals) => void): void
  /** The metrics path's text: the sum over every worker. */
  metricsSource(registry: Registry): () => Promise<string>
  /** Passes what an admin endpoint did here on to the other workers. */
  tellOthers(action: AdminAction): void
  /** What an admin endpoint did on another worker, for this one to do too. */
  onOthers(handler: (action: AdminAction) => void): void
}

/** How `baton serve`/`dev` log: the plan's schema (README "Logs and Server-Timing"), pretty for a person under `baton dev`. */
export function createLogger(
  plan: GatewayPlan,
  options: { pretty?: boolean; level?: string | undefined; worker?: number } = {},
): Logger {
  const pretty = options.pretty === true && options.worker === undefined
  const schema: LogSchema = {
    format: plan.logFormat,
    time: plan.logTime,
    level: options.level ?? plan.logLevel,
    service: plan.name,
    ...(options.worker === undefined ? {} : { worker: options.worker }),
  }
  if (pretty) return pino(logOptions(schema), prettyStream())
  // Workers share stdout: each write is whole lines and at most PIPE_BUF bytes, so that a pipe never interleaves them.
  // Asynchronous writes keep a line per request off the request path; stop() flushes them.
  // minLength 1 writes as soon as 0 would, but makes flush(cb) wait until what is buffered is written (with 0 it
  // calls back at once): the forced stop exits in that callback, and lost its last lines when stdout was busy.
  const destination = pino.destination({
    fd: 1,
    sync: false,
    minLength: 1,
    ...(options.worker === undefined ? {} : { maxWrite: 4096 }),
  })
  return pino(logOptions(schema), destination)
}

/** Runs until SIGINT/SIGTERM; resolves with the exit code. */
export async function serve(plan: GatewayPlan, options: ServeOptions): Promise<number> {
  const logger = createLogger(plan, {
    pretty: options.pretty === true,
    level: options.logLevel,
    ...(options.worker === undefined ? {} : { worker: options.worker.id }),
  })
  if (options.worker === undefined) logWarnings(logger, options.warnings)
  const mocks = options.mocks === undefined ? null : await startMocks(plan, options.mocks)
  const reloader =
    options.reload === undefined
      ? undefined
      : async (): Promise<Release> => {
          const next = await (options.reload as () => Promise<Release>)()
          // baton dev: the mocks answer with the new routes (same ports), before the new plan serves.
          await mocks?.update(next.plan)
          return next
        }
  const gateway = createGateway(plan, {
    logger,
    ...(options.accessLog === false ? { accessLog: false } : {}),
    ...(options.rateLimits === false ? { rateLimits: false } : {}),
    ...(mocks === null ? {} : { origins: mocks.origins, serverTiming: true }),
    ...(reloader === undefined ? {} : { reloader }),
    ...(options.candidate == null ? {} : { candidate: options.candidate }),
    ...(options.worker === undefined
      ? {}
      : { metricsSource: options.worker.metricsSource, onAdmin: options.worker.tellOthers }),
  })
  const listenOptions: { host?: string; port?: number } = {}
  if (options.host !== undefined) listenOptions.host = options.host
  if (options.port !== undefined) listenOptions.port = options.port
  let address
  try {
    address = await gateway.listen(listenOptions)
  } catch (err) {
    logger.error({ event: 'listen_failed', err: (err as Error).message }, `cannot listen: ${(err as Error).message}`)
    await gateway.close()
    await mocks?.close()
    return 1
  }
  if (mocks !== null) {
    for (const [name, origin] of mocks.origins) {
      const state =
        options.mocks?.down.has(name) === true
          ? ' (down)'
          : options.mocks?.slow.has(name) === true
            ? ` (+${options.mocks.slow.get(name)}ms)`
            : ''
      logger.info({ event: 'mock', service: name, origin }, `mock ${name} on ${origin}${state}`)
    }
    // Said out loud: a dev run that quietly calls a real service is a surprise.
    for (const service of plan.services) {
      if (mocks.origins.has(service.name)) continue
      const url = service.origin + service.pathPrefix
      logger.info({ event: 'no_mock', service: service.name, url }, `${service.name} has no mock: calls go to ${url}`)
    }
    const rl = plan.edge.rateLimit
    if (rl !== null) {
      const rates = [
        ['per-user', rl.perUser],
        ['per-IP', rl.perIp],
        ['per-endpoint', rl.perEndpoint],
        ['global', rl.global],
      ] as const
      const listed = rates.flatMap(([name, rate]) => (rate === null ? [] : [`${name} ${formatRate(rate)}`]))
      const own = plan.endpoints.filter((e) => e.rateLimit.perEndpoint !== null).length
      const all = [...listed, ...(own === 0 ? [] : [`${own} endpoint${own === 1 ? '' : 's'} with a limit of its own`])]
      if (options.rateLimits === false)
        logger.info(
          { event: 'rate_limits', applied: false },
          `rate limits off (${all.join(', ')} in the config); --rate-limits applies them`,
        )
      else logger.info({ event: 'rate_limits', applied: true }, `rate limits on: ${all.join(', ')}`)
    }
  }
  const reload = async (why: string): Promise<void> => {
    try {
      await gateway.reload()
      watcher?.watch(gateway.plan.files)
    } catch (err) {
      const diagnostics = err instanceof ConfigError ? err.diagnostics : null
      const errors = diagnostics?.filter((d) => d.severity === 'error') ?? []
      logger.error(
        {
          event: 'reload_failed',
          reason: why,
          generation: gateway.generation,
          ...(diagnostics === null ? { err: (err as Error).message } : { diagnostics: errors.map(formatDiagnostic) }),
        },
        diagnostics === null
          ? `reload (${why}) failed: ${(err as Error).message}; generation ${gateway.generation} keeps serving`
          : `reload (${why}) refused, ${errors.length} error${errors.length === 1 ? '' : 's'}; generation ${gateway.generation} keeps serving:\n${errors.map(formatDiagnostic).join('\n')}`,
      )
    }
  }
  const watcher =
    options.reload === undefined || options.watch === false
      ? null
      : new FileWatcher((file) => void reload(`${shortName(file)} changed`))
  watcher?.watch(plan.files)
  // --workers: an admin endpoint acted on another worker; this one does the same.
  options.worker?.onOthers((action) => {
    if (action.type === 'reload') return void reload('POST /admin/reload on another worker')
    if (action.type === 'canary') return void gateway.endCanary(action.how)
    const dropped = gateway.dropCached(action.tags)
    logger.info(
      { event: 'cache_invalidated', tags: action.tags, dropped },
      `cache: another worker's invalidation dropped ${dropped} entries here`,
    )
  })
  const onHangup = (): void => void reload('SIGHUP')
  // A worker of `--workers` acts on the signals its primary passes on, not on those sent to it directly.
  const on = options.worker?.onSignal ?? ((signal, handler) => process.on(signal, handler))
  if (options.reload !== undefined) on('SIGHUP', onHangup)

  return await new Promise<number>((resolve) => {
    let first: NodeJS.Signals | null = null
    let forced = false
    const stop = (signal: NodeJS.Signals): void => {
      if (forced) return
      if (first !== null) {
        forced = true
        // A second signal: whoever sent it does not want to wait. Cut what is left and go.
        logger.warn({ event: 'forced', signal }, `a second signal (${signal}): cutting the requests still in flight`)
        void gateway.close({ force: true })
        const code = 128 + (constants.signals[signal] as number)
        logger.info(
          { event: 'stopped', signal: first, forced: true, exitCode: code },
          `stopped (forced by a second ${signal})`,
        )
        // The one place that exits on its own: the pools, Redis and the exporter are not waited for. The log is:
        // its lines are written asynchronously, and exiting at once could lose the last ones (a busy pipe).
        const exit = (): never => process.exit(code)
        setTimeout(exit, 1000).unref()
        logger.flush(exit)
        return
      }
      first = signal
      watcher?.close()
      process.off('SIGHUP', onHangup)
      const inFlight = gateway.inFlight
      const started = performance.now()
      // The listener closes now, before the line says so; the mocks close last (the requests in flight still call them).
      const closing = gateway.close()
      logger.info(
        { event: 'stopping', signal, inFlight, drainTimeout: plan.drainTimeout },
        `stopping (${signal}): draining ${inFlight} request${inFlight === 1 ? '' : 's'} in flight, at most ${formatDuration(plan.drainTimeout)}; ${signal} again to cut them`,
      )
      closing
        .then(async (report) => {
          await mocks?.close()
          return report
        })
        .then(
          (report) => {
            // Forced: the second signal's exit is on its way, with its own last line.
            if (forced) return
            const code = report.timedOut ? EXIT.FAILED : EXIT.OK
            logger.info(
              {
                event: 'stopped',
                signal,
                drained: report.drained,
                cut: report.cut,
                durationMs: Math.round(performance.now() - started),
                exitCode: code,
              },
              `stopped: ${report.drained} request${report.drained === 1 ? '' : 's'} drained${report.cut === 0 ? '' : `, ${report.cut} cut`}`,
            )
            logger.flush()
            resolve(code)
          },
          (err: unknown) => {
            if (forced) return
            logger.error({ event: 'stopped', signal, err, exitCode: EXIT.FAILED }, 'error while stopping')
            logger.flush()
            resolve(EXIT.FAILED)
          },
        )
    }
    on('SIGINT', stop)
    on('SIGTERM', stop)
    // Only now does the gateway say it listens: tooling that waits for this line and then sends
    // SIGTERM must find the handler in place (before it, the signal's default action kills the
    // process: exit by signal, nothing drained).
    if (options.worker === undefined) logListening(logger, plan, address)
    else options.worker.listening(address)
    if (options.devToken !== undefined) {
      logger.info(
        { event: 'dev_token' },
        `export TOKEN=${options.devToken}   # a dev token: sub ${DEV_SUBJECT}, valid 1h`,
      )
      const e = plan.endpoints.find((x) => x.auth !== null)
      if (e !== undefined)
        logger.info(
          { event: 'dev_token' },
          `  curl -H "authorization: Bearer $TOKEN"${e.method === 'GET' ? '' : ` -X ${e.method} -H 'content-type: application/json' -d '{…}'`} ${address.url}${e.route}`,
        )
    }
  })
}

/** A file as a person would name it: relative to the current folder when it is under it. */
function shortName(file: string): string {
  const near = relative(process.cwd(), file)
  return near === '' || near.startsWith('..') ? file : near
}

/** The first lines of `baton serve`: where it listens (tooling waits for this line), and each endpoint's URL. */
export function logListening(
  logger: Logger,
  plan: GatewayPlan,
  address: { host: string; port: number; url: string },
  fields: Record<string, unknown> = {},
): void {
  logger.info(
    { event: 'listening', port: address.port, host: address.host, url: address.url, ...fields },
    `${plan.name} listening on ${address.url}${plan.basePath}`,
  )
  for (const e of plan.endpoints)
    logger.info(
      { event: 'endpoint', endpoint: e.label },
      `  ${e.method} ${address.url}${e.route}${e.auth === null ? '' : ' (needs credentials)'}`,
    )
}

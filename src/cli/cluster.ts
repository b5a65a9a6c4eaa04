/**
 * `baton serve --workers N`: N processes (node:cluster) serve one port, so that a gateway uses
 * every core. The primary serves nothing itself; it
 * - forks the workers, and restarts one that dies unexpectedly: at once if it had run for a
 *   while, after a backoff if it died soon after it started; a crash loop (CRASH_LOOP quick
 *   deaths in a row) stops the others and ends with exit 1;
 * - logs "listening" once, when every worker listens (tooling waits for that line);
 * - passes on every signal it gets (SIGTERM, SIGINT, SIGHUP) to every worker, which acts on it
 *   as one process would (src/cli/serve.ts: drain, a second signal cuts); it exits when they all
 *   have, with the worst exit code;
 * - answers the workers' requests for the metrics of all of them: whichever worker a scrape lands
 *   on, it asks the primary, which sums every worker's registry (prom-client's AggregatorRegistry);
 * - passes what an admin endpoint did on one worker (an invalidation, a reload, a canary ended)
 *   on to the others, so that whichever worker a POST lands on, the whole instance acts on it.
 * A worker is `baton serve` in one process, linked to its primary by a WorkerLink.
 */
import cluster, { type Worker } from 'node:cluster'
import { constants } from 'node:os'
import { AggregatorRegistry, type Registry } from 'prom-client'
import type { GatewayPlan } from '../plan/types.ts'
import type { AdminAction } from '../server/admin.ts'
import { logWarnings } from '../server/gateway.ts'
import { createLogger, logListening, serve, type ServeOptions, type WorkerLink } from './serve.ts'

/** The signals the primary passes on. */
const SIGNALS: readonly NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP']

/** A worker that dies within this many ms of being forked died "at start". */
export const STARTUP_MS = 10_000
/** Deaths at start in a row (any worker's; a later death resets the count) after which the primary gives up. */
export const CRASH_LOOP = 5
/** The wait before restarting a worker that died at start: 100 ms, doubling with each death in a row, at most 5 s. */
const BACKOFF_MS = 100
const BACKOFF_MAX_MS = 5_000

type Message =
  | { type: 'baton:listening'; address: { host: string; port: number; url: string } }
  | { type: 'baton:signal'; signal: NodeJS.Signals }
  | { type: 'baton:metrics'; id: number; text?: string; error?: string }
  | { type: 'baton:admin'; action: AdminAction }

function isMessage(value: unknown): value is Message {
  return typeof value === 'object' && value !== null && String((value as { type?: unknown }).type).startsWith('baton:')
}

/** Runs `baton serve` with `workers` processes: the primary here, or the worker this process is. */
export async function serveWorkers(plan: GatewayPlan, options: ServeOptions, workers: number): Promise<number> {
  return cluster.isPrimary ? await primary(plan, options, workers) : await worker(plan, options)
}

async function worker(plan: GatewayPlan, options: ServeOptions): Promise<number> {
  const self = cluster.worker as Worker
  const handlers = new Map<NodeJS.Signals, ((signal: NodeJS.Signals) => void)[]>()
  // A signal sent to the whole process group (Ctrl-C, systemd's control-group kill) reaches every worker directly
  // too: acting on it and on the primary's copy would make it two signals, and the second one cuts. So a worker
  // hears signals from its primary only; the direct ones must not kill it (SIGHUP's default would).
  const ignore = (): void => {}
  for (const signal of SIGNALS) process.on(signal, ignore)
  const metrics = new Map<number, PromiseWithResolvers<string>>()
  const admins: ((action: AdminAction) => void)[] = []
  let next = 0
  const logger = createLogger(plan, { level: options.logLevel, worker: self.id })
  process.on('message', (message: unknown) => {
    if (!isMessage(message)) return
    if (message.type === 'baton:signal') {
      const listeners = handlers.get(message.signal) ?? []
      for (const handler of listeners) handler(message.signal)
      if (listeners.length > 0) return
      // Code that listens on the process itself hears the primary's copy as if it were the signal.
      if (process.listeners(message.signal).some((l) => l !== ignore)) process.emit(message.signal, message.signal)
      else if (message.signal === 'SIGHUP')
        logger.warn({ event: 'signal_ignored', signal: 'SIGHUP' }, 'SIGHUP before the worker serves: nothing to reload')
      // Stopped before it was serving: nothing to drain.
      else process.exit(128 + (constants.signals[message.signal] as number))
    } else if (message.type === 'baton:admin') {
      for (const handler of admins) handler(message.action)
    } else if (message.type === 'baton:metrics') {
      const waiting = metrics.get(message.id)
      metrics.delete(message.id)
      if (message.text !== undefined) waiting?.resolve(message.text)
      else waiting?.reject(new Error(`metrics of the workers: ${message.error ?? 'no answer'}`))
    }
  })
  const link: WorkerLink = {
    id: self.id,
    listening: (address) => send({ type: 'baton:listening', address }),
    onSignal(signal, handler) {
      handlers.set(signal, [...(handlers.get(signal) ?? []), handler])
    },
    tellOthers: (action) => send({ type: 'baton:admin', action }),
    onOthers(handler) {
      admins.push(handler)
    },
    metricsSource(registry: Registry) {
      // prom-client's worker side: answers the primary's AggregatorRegistry with this registry's series.
      AggregatorRegistry.setRegistries(registry)
      new AggregatorRegistry()
      return () => {
        const id = next++
        const waiting = Promise.withResolvers<string>()
        metrics.set(id, waiting)
        send({ type: 'baton:metrics', id })
        return waiting.promise
      }
    },
  }
  const code = await serve(plan, { ...options, worker: link })
  process.exitCode = code
  // Its servers are closed: leaving the cluster ends the process (with that code) once the log is written.
  self.disconnect()
  return code
}

function send(message: Message): void {
  process.send?.(message)
}

async function primary(plan: GatewayPlan, options: ServeOptions, count: number): Promise<number> {
  const logger = createLogger(plan, { level: options.logLevel })
  logWarnings(logger, options.warnings)
  const aggregator = plan.metrics === null ? null : new AggregatorRegistry()
  /** When each live worker was forked, and whether it listens. */
  const live = new Map<Worker, { forkedAt: number; listening: boolean }>()
  const restarts = new Set<NodeJS.Timeout>()
  let announced = false
  let crashes = 0
  let stopping: NodeJS.Signals | 'crash loop' | null = null
  let worst = 0
  const done = Promise.withResolvers<number>()

  const fork = (): void => {
    live.set(cluster.fork(), { forkedAt: performance.now(), listening: false })
  }
  const stop = (why: NodeJS.Signals | 'crash loop'): void => {
    stopping = why
    // No more restarts: a worker waiting for its backoff is not started.
    for (const timer of restarts) clearTimeout(timer)
    restarts.clear()
  }
  const pass = (signal: NodeJS.Signals): void => {
    for (const w of live.keys()) {
      if (w.isConnected()) w.send({ type: 'baton:signal', signal } satisfies Message)
      else w.process.kill(signal)
    }
  }

  cluster.on('message', (w: Worker, message: unknown) => {
    if (!isMessage(message)) return
    if (message.type === 'baton:listening') {
      const state = live.get(w)
      if (state === undefined) return
      state.listening = true
      if (announced) {
        logger.info({ event: 'worker_listening', worker: w.id, pid: w.process.pid }, `worker ${w.id} listening`)
      } else if (live.size === count && [...live.values()].every((s) => s.listening)) {
        announced = true
        const pids = [...live.keys()].map((x) => x.process.pid)
        logListening(logger, plan, message.address, { workers: count, pids })
        const limits = plan.edge.rateLimit
        if (limits !== null && limits.store === 'memory' && options.rateLimits !== false)
          logger.warn(
            { event: 'rate_limits_per_worker', workers: count },
            `rate limits in memory are counted by each of the ${count} workers on its own: a client may get up to ${count}× a limit; gateway.rateLimit.store: redis counts them across workers and instances`,
          )
      }
    } else if (message.type === 'baton:admin') {
      for (const other of live.keys()) if (other !== w && other.isConnected()) other.send(message)
    } else if (message.type === 'baton:metrics') {
      const reply = (answer: Message): void => {
        if (w.isConnected()) w.send(answer)
      }
      if (aggregator === null) return reply({ type: 'baton:metrics', id: message.id, error: 'metrics are off' })
      aggregator.clusterMetrics().then(
        (text) => reply({ type: 'baton:metrics', id: message.id, text }),
        (err: unknown) => reply({ type: 'baton:metrics', id: message.id, error: (err as Error).message }),
      )
    }
  })

  cluster.on('exit', (w: Worker, code: number | null, signal: NodeJS.Signals | null) => {
    const state = live.get(w)
    live.delete(w)
    const exitCode = code ?? 128 + ((signal === null ? 0 : constants.signals[signal]) ?? 0)
    if (stopping !== null) {
      worst = Math.max(worst, exitCode)
      // A crash loop is exit 1: the workers it stopped exit 143 because it stopped them, which says nothing more.
      if (live.size === 0) done.resolve(stopping === 'crash loop' ? 1 : worst)
      return
    }
    const quick = state === undefined || performance.now() - state.forkedAt < STARTUP_MS
    crashes = quick ? crashes + 1 : 0
    const how = signal === null ? `exit code ${code}` : signal
    if (crashes >= CRASH_LOOP) {
      logger.error(
        { event: 'crash_loop', worker: w.id, pid: w.process.pid, code, signal, deaths: crashes },
        `worker ${w.id} died (${how}), the ${crashes}th worker in a row to die within ${STARTUP_MS / 1000}s of starting: giving up`,
      )
      stop('crash loop')
      if (live.size === 0) return done.resolve(1)
      return pass('SIGTERM')
    }
    const delay = quick ? Math.min(BACKOFF_MS * 2 ** (crashes - 1), BACKOFF_MAX_MS) : 0
    logger.warn(
      { event: 'worker_died', worker: w.id, pid: w.process.pid, code, signal, restartInMs: delay },
      `worker ${w.id} (pid ${w.process.pid}) died (${how}); restarting it${delay === 0 ? '' : ` in ${delay}ms`}`,
    )
    const timer = setTimeout(() => {
      restarts.delete(timer)
      fork()
    }, delay)
    restarts.add(timer)
  })

  for (const signal of SIGNALS)
    process.on(signal, () => {
      if (signal === 'SIGHUP') return pass(signal)
      if (stopping === null) {
        stop(signal)
        logger.info(
          { event: 'stopping', signal, workers: live.size },
          `stopping (${signal}): passed on to ${live.size} worker${live.size === 1 ? '' : 's'}; ${signal} again to cut their requests`,
        )
        if (live.size === 0) done.resolve(worst)
      } else {
        logger.warn({ event: 'forced', signal }, `a second signal (${signal}): passed on, the workers cut what is left`)
      }
      pass(signal)
    })

  for (let i = 0; i < count; i++) fork()
  const code = await done.promise
  logger.info({ event: 'stopped', exitCode: code }, `stopped: every worker has exited (exit code ${code})`)
  logger.flush()
  return code
}

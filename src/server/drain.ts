/**
 * Shutting down without losing a request. When the gateway closes, it takes the connections the
 * kernel has already queued for it, then its listener stops (new connections are refused) and idle
 * keep-alive connections are closed; every request in flight, and every request that still arrives
 * on a connection already open, is served, its answer saying `Connection: close`; the gateway
 * closes when the last connection has. If that takes longer than the drain timeout, the requests
 * the gateway is still running are answered 503 SHUTTING_DOWN (their calls aborted), and the
 * connections still open a moment later are destroyed. A forced close destroys them at once.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { formatDuration } from '../config/units.ts'

/** The part of a run the drain needs: a way to end it with 503 SHUTTING_DOWN (false: it had already ended). */
export interface Cuttable {
  readonly cut: () => boolean
}

export interface DrainReport {
  /** Requests that finished while the gateway drained (in flight when it began, or arrived on an open connection). */
  readonly drained: number
  /** Requests still in flight when the drain timed out or was forced. */
  readonly cut: number
  /** Of those, the ones the gateway was running: answered 503 SHUTTING_DOWN (unless forced). */
  readonly answered: number
  /** Connections destroyed. */
  readonly destroyed: number
  /** The drain timeout passed before every connection had closed. */
  readonly timedOut: boolean
  /** Cut short by close({ force: true }). */
  readonly forced: boolean
  /** ms from the start of the drain to the last connection closed. */
  readonly durationMs: number
}

/**
 * The requests in flight are kept on their connections, not in a Map of the gateway's: a
 * long-lived Map that every request enters and leaves kept each request's objects reachable for
 * V8's young-generation collector long after it had ended (measured: ~8 MB promoted to the old
 * generation per scavenge at 20k requests/s, 8 ms pauses, p99 3× a Map-free server's).
 */
const RESPONSES = Symbol('baton.drain.responses')
const RUN = Symbol('baton.drain.run')
const OPENED = Symbol('baton.drain.opened')
type Connection = Socket & { [RESPONSES]?: Tracked[] | undefined; [OPENED]?: number }
/** A response in flight: the run answering it (null until the handler starts one; undefined once it has ended). */
type Tracked = ServerResponse & { [RUN]?: Cuttable | null | undefined; [RESPONSES]?: Tracked[] | undefined }

const ARRIVED = Symbol('baton.arrived')
type Arrived = IncomingMessage & { [ARRIVED]?: number }

/** ms since the request arrived (stamped by the drain's request listener, which sees every request first); null if never stamped. */
export function sinceArrival(req: IncomingMessage): number | null {
  const at = (req as Arrived)[ARRIVED]
  return at === undefined ? null : performance.now() - at
}

/** After the runs still going are answered 503, the time their answers get to leave before every connection left is destroyed. */
const CUT_GRACE = 250
/**
 * How long a connection that has sent nothing keeps its chance to send a request once the drain
 * has begun (counted from when it opened): one opened just before may have its request on the way.
 */
const UNUSED_GRACE = 1000

/** At most this many turns of the event loop to take the listener's backlog (Node's default backlog is 511). */
const BACKLOG_TURNS = 512

const SERVING = 0
const DRAINING = 1
const CUTTING = 2

export class Drain {
  readonly #server: Server
  readonly #logger: Logger | null
  /** Every connection; each holds its requests in flight (RESPONSES), with the run answering each once the handler has started one. */
  readonly #sockets = new Set<Connection>()
  /** Shared with the listeners below: the state, the requests in flight, and those that finished while draining. */
  readonly #s = { state: SERVING, drained: 0, inFlight: 0, accepted: 0 }
  #cut = 0
  #answered = 0
  #destroyed = 0
  #forced = false
  #timedOut = false
  #wake: (() => void) | null = null

  constructor(server: Server, logger: Logger | null) {
    this.#server = server
    this.#logger = logger
    const sockets = this.#sockets
    // One function each, not a closure per connection or request: `this` is the emitter.
    const socketClosed = function (this: Socket): void {
      sockets.delete(this)
    }
    const s = this.#s
    const ended = function (this: Tracked): void {
      if (this[RUN] === undefined) return
      this[RUN] = undefined
      s.inFlight--
      const list = this[RESPONSES] as Tracked[]
      this[RESPONSES] = undefined
      const at = list.indexOf(this)
      if (at !== -1) {
        list[at] = list[list.length - 1] as Tracked
        list.pop()
      }
      if (s.state === SERVING) return
      // Once the drain is cut short, what ends was counted as cut.
      if (s.state === DRAINING && this.writableFinished) s.drained++
      // A connection whose answer was already on its way with keep-alive is idle now: close it.
      server.closeIdleConnections()
    }
    server.on('connection', (socket: Socket) => {
      s.accepted++
      sockets.add(socket)
      ;(socket as Connection)[OPENED] = performance.now()
      socket.on('close', socketClosed)
    })
    // Before fastify's own listener, so that an answer written at once carries the header too.
    server.prependListener('request', (req: Arrived, res: Tracked) => {
      // Answers written outside a run (hits, shared runs, errors) are timed from here: fastify times them only with its logger on.
      req[ARRIVED] = performance.now()
      s.inFlight++
      // One, or more when the client pipelines its requests.
      const list = ((req.socket as Connection)[RESPONSES] ??= [])
      list.push(res)
      res[RESPONSES] = list
      res[RUN] = null
      res.on('close', ended)
      if (s.state !== SERVING) res.setHeader('connection', 'close')
    })
  }

  /** Requests in flight now. */
  get inFlight(): number {
    return this.#s.inFlight
  }

  /** The responses in flight now. */
  #responses(): Tracked[] {
    const all: Tracked[] = []
    for (const socket of this.#sockets) {
      const list = socket[RESPONSES]
      if (list !== undefined) all.push(...list)
    }
    return all
  }

  /** The gateway is closing: readiness answers 503. */
  get draining(): boolean {
    return this.#s.state !== SERVING
  }

  /** The drain timed out or was forced: a request that starts now is answered 503 SHUTTING_DOWN. */
  get cutting(): boolean {
    return this.#s.state === CUTTING
  }

  /** Called by an endpoint's handler: the run answering this request, to end it if the drain times out. */
  track(res: ServerResponse, run: Cuttable): void {
    const tracked = res as Tracked
    if (tracked[RUN] !== undefined) tracked[RUN] = run
  }

  /**
   * Stops the listener and drains, at most `timeout` ms; `closeServer` closes the rest of the
   * server (fastify's hooks). Resolves once every connection has closed.
   */
  async close(closeServer: () => Promise<void>, timeout: number, force: boolean): Promise<DrainReport> {
    const started = performance.now()
    this.#s.state = DRAINING
    for (const res of this.#responses()) if (!res.headersSent) res.setHeader('connection', 'close')
    // Connections the kernel has accepted but the gateway not yet (the backlog of a busy or paused
    // process) are clients that sent their request before the drain began: closing the listener
    // would reset them. Node takes about one per turn of the event loop (its poll for I/O): turn
    // until a turn takes none. The first immediate ends this turn; each one after spans a poll.
    if (!force) {
      await nextTurn()
      for (let turn = 0; turn < BACKLOG_TURNS; turn++) {
        const before = this.#s.accepted
        await nextTurn()
        if (this.#s.accepted === before) break
      }
    }
    // Node's close stops the listener now, closes the idle connections, and calls back once the last connection has closed.
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    this.#closeUnusedSoon()
    const woken = new Promise<void>((resolve) => (this.#wake = resolve))
    if (force) this.force()
    // Fastify's close runs its hooks, then waits for the same connections: it is awaited last.
    const serverClosed = closeServer()
    if (this.#s.inFlight > 0 || this.#sockets.size > 0) {
      const timer = new AbortController()
      const late = sleep(timeout, true, { signal: timer.signal }).catch(() => false)
      const outcome = await Promise.race([
        closed.then(() => 'closed' as const),
        woken.then(() => 'forced' as const),
        late,
      ])
      timer.abort()
      if (outcome === true) await this.#timeout(timeout, closed)
    }
    await closed
    await serverClosed
    return {
      drained: this.#s.drained,
      cut: this.#cut,
      answered: this.#answered,
      destroyed: this.#destroyed,
      timedOut: this.#timedOut,
      forced: this.#forced,
      durationMs: Math.round(performance.now() - started),
    }
  }

  /** Destroys every connection now; the requests in flight are cut. Logged at warn with how many. */
  force(): void {
    if (this.#forced) return
    this.#forced = true
    if (this.#s.state === SERVING) this.#s.state = DRAINING
    const requests = this.#s.inFlight
    if (this.#s.state === DRAINING) {
      this.#s.state = CUTTING
      this.#cut = requests
      // The runs end as 503 SHUTTING_DOWN nobody reads: their calls are aborted, and the log says why they ended.
      for (const res of this.#responses()) res[RUN]?.cut()
    }
    const connections = this.#destroyAll()
    this.#logger?.warn(
      { event: 'drain_forced', requests, connections, drained: this.#s.drained },
      `forced close: ${plural(requests, 'request')} in flight cut, ${plural(connections, 'connection')} destroyed`,
    )
    this.#wake?.()
  }

  async #timeout(timeout: number, closed: Promise<void>): Promise<void> {
    this.#timedOut = true
    this.#s.state = CUTTING
    this.#cut = this.#s.inFlight
    // A run shared by identical requests (endpoint coalescing) answers each of them.
    const cut = new Set<Cuttable>()
    for (const res of this.#responses()) {
      const run = res[RUN]
      if (run == null) continue
      if (cut.has(run) || run.cut()) {
        cut.add(run)
        this.#answered++
      }
    }
    // Their 503s leave with Connection: close; what is still open after a moment is destroyed.
    const grace = new AbortController()
    await Promise.race([closed, sleep(CUT_GRACE, undefined, { signal: grace.signal }).catch(() => undefined)])
    grace.abort()
    const connections = this.#forced ? 0 : this.#destroyAll()
    this.#logger?.warn(
      {
        event: 'drain_timeout',
        drainTimeout: timeout,
        requests: this.#cut,
        answered: this.#answered,
        connections,
        drained: this.#s.drained,
      },
      `drain timeout (${formatDuration(timeout)}): ${plural(this.#cut, 'request')} still in flight, ${this.#answered} answered 503 SHUTTING_DOWN; ${plural(connections, 'connection')} destroyed`,
    )
  }

  /**
   * Connections that have not sent a byte (a browser's preconnect, a pool's spare) are idle too,
   * though Node counts them as active from the moment they open, so that its request timeout
   * covers them: left open, they would hold the drain until the client gave up on them. Each is
   * closed once it has been open UNUSED_GRACE (as Go's Shutdown treats a new connection as idle
   * after a while), so that a request already on its way is still served. One that has sent part
   * of a request is not touched: its request is served.
   */
  #closeUnused(): void {
    const now = performance.now()
    let next = Infinity
    for (const socket of this.#sockets) {
      if (socket[RESPONSES] !== undefined || socket.bytesRead !== 0 || socket.destroyed) continue
      const left = (socket[OPENED] ?? 0) + UNUSED_GRACE - now
      if (left <= 0) socket.destroy()
      else next = Math.min(next, left)
    }
    if (next !== Infinity) setTimeout(() => this.#closeUnusedSoon(), Math.ceil(next)).unref()
  }

  /** After the event loop's next poll for I/O: bytes that have already arrived are read first, not thrown away. */
  #closeUnusedSoon(): void {
    setImmediate(() => this.#closeUnused()).unref()
  }

  #destroyAll(): number {
    let n = 0
    for (const socket of this.#sockets) {
      // A socket already closing (its answer said Connection: close) is not cut.
      if (socket.destroyed) continue
      socket.destroy()
      n++
    }
    this.#destroyed += n
    return n
  }
}

/** Resolves in the event loop's next check phase (after a poll for I/O, unless called before this turn's). */
async function nextTurn(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve))
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

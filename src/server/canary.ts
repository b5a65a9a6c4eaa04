/**
 * A canary release: a candidate generation beside the stable one, each request routed to one of
 * them — forced by a header (`always` / `never`), else by a sticky key's hash (the same caller
 * always sees the same version), else by chance, in proportion to the weight. Both versions are
 * watched over a sliding window (error rate of answers and of required calls, p99 latency); when
 * the candidate is worse than the stable version by more than the guard's margins, its weight
 * goes to 0 by itself: logged at warn with the figures, and counted.
 */
import { createHash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { StickyScope } from '../plan/canary.ts'
import type { RequestView } from '../plan/scope.ts'
import type { CanaryPlan, EndpointAuthPlan } from '../plan/types.ts'
import type { Clock } from '../policies/clock.ts'
import type { GatewayAnswer, RunView } from '../runtime/observer.ts'
import type { Generation } from './generation.ts'

export type Version = 'stable' | 'candidate'

/** Counts of one slice of the window. */
interface Slice {
  start: number
  requests: number
  errors: number
  latencies: number[]
}

/** Latencies kept per slice, at most (a sample is enough for a p99). */
const SAMPLES = 2000
const SLICES = 10
/** ms a candidate's p99 may exceed the stable one's whatever the margin says (a p99 of 2 ms against 1 ms is not a regression). */
const P99_SLACK = 10
/** Answers each version needs in the window before their p99s are compared. */
const P99_SAMPLES = 200

/** One version's figures over the window. */
export interface Figures {
  readonly requests: number
  /** 0..1 */
  readonly errorRate: number
  /** ms; NaN without requests. */
  readonly p99: number
}

class Window {
  readonly #slices: Slice[] = []
  readonly #span: number
  readonly #clock: Clock

  constructor(window: number, clock: Clock) {
    this.#span = window / SLICES
    this.#clock = clock
  }

  record(ms: number, failed: boolean): void {
    const now = this.#clock.now()
    let slice = this.#slices.at(-1)
    if (slice === undefined || now - slice.start >= this.#span) {
      slice = { start: now, requests: 0, errors: 0, latencies: [] }
      this.#slices.push(slice)
      if (this.#slices.length > SLICES) this.#slices.shift()
    }
    slice.requests++
    if (failed) slice.errors++
    if (slice.latencies.length < SAMPLES) slice.latencies.push(ms)
  }

  figures(): Figures {
    const since = this.#clock.now() - this.#span * SLICES
    let requests = 0
    let errors = 0
    const latencies: number[] = []
    for (const slice of this.#slices) {
      if (slice.start < since) continue
      requests += slice.requests
      errors += slice.errors
      latencies.push(...slice.latencies)
    }
    latencies.sort((a, b) => a - b)
    const p99 = latencies.length === 0 ? NaN : (latencies[Math.ceil(latencies.length * 0.99) - 1] as number)
    return { requests, errorRate: requests === 0 ? 0 : errors / requests, p99 }
  }

  clear(): void {
    this.#slices.length = 0
  }
}

export interface CanaryEvents {
  /** The weight changed (a rollback, a promotion, an abort). */
  readonly onWeight?: (weight: number) => void
  readonly onRollback?: () => void
  readonly onRequest?: (version: Version, failed: boolean) => void
}

/** Every credential kind, no scope or role: enough to know who is calling, for a sticky key. */
const ANYONE: EndpointAuthPlan = { methods: ['jwt', 'apiKey'], scopes: [], roles: [] }

export class Canary {
  readonly plan: CanaryPlan
  readonly candidate: Generation
  #weight: number
  #rolledBack = false
  readonly #windows: Record<Version, Window>
  readonly #logger: Logger | null
  readonly #events: CanaryEvents
  #lastCheck = -Infinity
  readonly #clock: Clock

  constructor(plan: CanaryPlan, candidate: Generation, clock: Clock, logger: Logger | null, events: CanaryEvents = {}) {
    this.plan = plan
    this.candidate = candidate
    this.#weight = plan.weight
    this.#clock = clock
    this.#logger = logger
    this.#events = events
    this.#windows = { stable: new Window(plan.guard.window, clock), candidate: new Window(plan.guard.window, clock) }
    events.onWeight?.(this.#weight)
  }

  get weight(): number {
    return this.#weight
  }

  get rolledBack(): boolean {
    return this.#rolledBack
  }

  /** The generation this request runs on. */
  async choose(req: FastifyRequest, stable: Generation): Promise<Generation> {
    const forced = req.headers[this.plan.header]
    if (forced === 'always') return this.candidate
    if (forced === 'never') return stable
    if (this.#weight === 0) return stable
    if (this.#weight === 1) return this.candidate
    const key = this.plan.sticky === null ? null : await this.#stickyKey(req, stable)
    const draw = key === null ? Math.random() : bucketOf(key)
    return draw < this.#weight ? this.candidate : stable
  }

  /** A version's run has its answer: into the guard's window. */
  record(version: Version, run: RunView, answer: GatewayAnswer): void {
    const failed =
      answer.status >= 500 ||
      (run.errors !== null && run.endpoint.calls.some((c, i) => c.required && run.errors?.[i] !== undefined))
    this.#windows[version].record(performance.now() - run.startedAt, failed)
    this.#events.onRequest?.(version, failed)
    this.#check()
  }

  /** Promoted or aborted: the stable version's runs no longer feed the guard. */
  end(): void {
    this.#weight = 0
    this.#events.onWeight?.(0)
  }

  /** Both versions' figures over the window. */
  figures(): Record<Version, Figures> {
    return { stable: this.#windows.stable.figures(), candidate: this.#windows.candidate.figures() }
  }

  /** Compares the versions (at most once a second); rolls the candidate back when it is worse than allowed. */
  #check(): void {
    if (this.#weight === 0) return
    const now = this.#clock.now()
    if (now - this.#lastCheck < 1000) return
    this.#lastCheck = now
    const { stable, candidate } = this.figures()
    const { minRequests, errorRate, p99 } = this.plan.guard
    if (stable.requests < minRequests || candidate.requests < minRequests) return
    const reasons: string[] = []
    if (candidate.errorRate - stable.errorRate > errorRate)
      reasons.push(
        `error rate ${pct(candidate.errorRate)} against ${pct(stable.errorRate)} (margin ${pct(errorRate)} points)`,
      )
    // A p99 of a few answers is their slowest one (a GC pause): compared once each version has P99_SAMPLES; and below a
    // few milliseconds it is noise: the candidate must also be slower by P99_SLACK.
    if (
      stable.requests >= P99_SAMPLES &&
      candidate.requests >= P99_SAMPLES &&
      candidate.p99 > stable.p99 * (1 + p99) &&
      candidate.p99 - stable.p99 > P99_SLACK
    )
      reasons.push(`p99 ${candidate.p99.toFixed(1)}ms against ${stable.p99.toFixed(1)}ms (margin ${pct(p99)})`)
    if (reasons.length === 0) return
    this.#weight = 0
    this.#rolledBack = true
    this.#events.onWeight?.(0)
    this.#events.onRollback?.()
    this.#logger?.warn(
      {
        event: 'canary_rolled_back',
        release: this.candidate.plan.release,
        stable: stable,
        candidate: candidate,
        reasons,
      },
      `canary ${this.candidate.plan.release} rolled back (weight 0): ${reasons.join('; ')}; over ${candidate.requests} requests against ${stable.requests}`,
    )
  }

  /** The sticky key's value for this request; null when it has none (then: by chance). */
  async #stickyKey(req: FastifyRequest, stable: Generation): Promise<string | null> {
    const sticky = this.plan.sticky as NonNullable<CanaryPlan['sticky']>
    // Who is calling, as the stable version would see it: routing is no security decision (the chosen version checks again).
    const verdict =
      stable.authenticator === null
        ? null
        : await stable.authenticator.check(
            { headers: req.headers, query: req.query as Record<string, unknown> },
            ANYONE,
          )
    const url = req.url
    const q = url.indexOf('?')
    const request: RequestView = {
      method: req.method,
      path: q === -1 ? url : url.slice(0, q),
      params: {},
      query: req.query as Record<string, unknown>,
      headers: req.headers,
      body: null,
      auth: verdict?.ok === true ? verdict.principal : null,
      url,
      client: req,
    }
    try {
      const value = sticky({ request } satisfies StickyScope)
      return value === null || value === undefined || value === '' ? null : String(value)
    } catch {
      return null
    }
  }
}

/** A key's place in [0, 1): the same key, the same place, in every process. */
export function bucketOf(key: string): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) / 0x1_0000_0000
}

function pct(share: number): string {
  return `${(share * 100).toFixed(1)}%`
}

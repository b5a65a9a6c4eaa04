/** What `GET /health/ready` reports per service: recent error rate, latency, calls in flight, last failure. */
import { type Clock, systemClock } from './clock.ts'

const SAMPLES = 256

export interface ServiceSnapshot {
  calls: number
  errorRate: number
  p50: number | null
  p95: number | null
  inFlight: number
  lastFailure: { at: string; kind: string } | null
}

export class ServiceStats {
  inFlight = 0
  readonly #durations = new Float64Array(SAMPLES)
  readonly #failed = new Uint8Array(SAMPLES)
  #count = 0
  #lastFailure: { at: string; kind: string } | null = null

  /** Records one finished attempt (a call, a retry, or an active health probe). */
  record(durationMs: number, failureKind: string | null): void {
    const at = this.#count % SAMPLES
    this.#durations[at] = durationMs
    this.#failed[at] = failureKind === null ? 0 : 1
    this.#count++
    if (failureKind !== null) this.#lastFailure = { at: new Date().toISOString(), kind: failureKind }
  }

  snapshot(): ServiceSnapshot {
    const n = Math.min(this.#count, SAMPLES)
    const durations = Array.from(this.#durations.subarray(0, n)).sort((a, b) => a - b)
    let failed = 0
    for (let i = 0; i < n; i++) failed += this.#failed[i] as number
    const pick = (q: number): number | null =>
      n === 0 ? null : Math.round((durations[Math.min(n - 1, Math.floor(q * n))] as number) * 10) / 10
    return {
      calls: n,
      errorRate: n === 0 ? 0 : Math.round((failed / n) * 1000) / 1000,
      p50: pick(0.5),
      p95: pick(0.95),
      inFlight: this.inFlight,
      lastFailure: this.#lastFailure,
    }
  }
}

/**
 * Retries at most `ratio` of the service's recent requests (a 10-second window in 1-second
 * buckets), but always allows `minRetries` per window, so a quiet service can still retry.
 * When a service is down for everyone this stops a retry storm from multiplying its load.
 */
export class RetryBudget {
  readonly ratio: number
  readonly minRetries: number
  readonly #clock: Clock
  readonly #requests = new Uint32Array(10)
  readonly #retries = new Uint32Array(10)
  #second = -1

  constructor(ratio: number, minRetries: number, clock: Clock = systemClock) {
    this.ratio = ratio
    this.minRetries = minRetries
    this.#clock = clock
  }

  /** Counts a first try. */
  request(): void {
    this.#roll()
    this.#requests[this.#second % 10]!++
  }

  /** Takes a retry from the budget, if there is one left. */
  tryRetry(): boolean {
    this.#roll()
    let requests = 0
    let retries = 0
    for (let i = 0; i < 10; i++) {
      requests += this.#requests[i] as number
      retries += this.#retries[i] as number
    }
    // Retries are taken while under ratio × requests (2.4 allows a third), and at least minRetries per window.
    if (retries >= Math.max(this.minRetries, this.ratio * requests)) return false
    this.#retries[this.#second % 10]!++
    return true
  }

  #roll(): void {
    const second = Math.floor(this.#clock.now() / 1000)
    if (second === this.#second) return
    // Clear the buckets of the seconds that passed (all of them after a long pause).
    for (let s = Math.max(this.#second + 1, second - 9); s <= second; s++) {
      this.#requests[s % 10] = 0
      this.#retries[s % 10] = 0
    }
    this.#second = second
  }
}

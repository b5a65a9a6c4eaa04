/**
 * The template's circuit breaker, exactly: it opens when `failures` failures happen within the
 * rolling `window` (or, `consecutive`, in a row); while open every call fails at once; after `openFor` it is half-open and
 * lets exactly `halfOpenProbes` calls through; if they all succeed it closes, and any failure
 * reopens it. One breaker per service, shared by every endpoint.
 *
 * cockatiel's breakers sample a half-open state with a single probe (or a ratio over a
 * window), so this small state machine is ours; it is driven by an injectable clock.
 */
import { type Clock, systemClock } from './clock.ts'

export type BreakerState = 'closed' | 'open' | 'half-open'

export interface BreakerOptions {
  failures: number
  /** ms */
  window: number
  /** ms */
  openFor: number
  halfOpenProbes: number
  /**
   * A success while closed forgets the failures before it: the breaker opens on `failures` in a
   * row (within `window`) rather than on `failures` among many successes. The Redis stores use this.
   */
  consecutive?: boolean
}

export interface BreakerEvents {
  onStateChange?(from: BreakerState, to: BreakerState): void
}

export class CircuitBreaker {
  readonly options: BreakerOptions
  readonly #clock: Clock
  readonly #events: BreakerEvents
  #state: BreakerState = 'closed'
  /** Times of the recent failures while closed (oldest first, at most `failures`). */
  #failures: number[] = []
  #openedAt = 0
  /** Half-open: probes handed out, and probes that succeeded. */
  #probesOut = 0
  #probesOk = 0
  #changedAt: number
  /** Goes up on every state change; a call's ticket says in which state it was let through. */
  #generation = 0

  constructor(options: BreakerOptions, clock: Clock = systemClock, events: BreakerEvents = {}) {
    this.options = options
    this.#clock = clock
    this.#events = events
    this.#changedAt = clock.now()
  }

  get state(): BreakerState {
    this.#advance()
    return this.#state
  }

  /** When the state last changed (clock ms); half-open dates from when openFor ran out. */
  get changedAt(): number {
    this.#advance()
    return this.#changedAt
  }

  /**
   * May a call go through now? Returns a ticket to hand back with the call's outcome, or -1
   * when it may not. In half-open each ticket is one of the `halfOpenProbes` probes. The ticket
   * keeps outcomes of calls let through in an earlier state (before the breaker opened) from
   * being taken for probes.
   */
  tryAcquire(): number {
    this.#advance()
    if (this.#state === 'open') return -1
    if (this.#state === 'half-open') {
      if (this.#probesOut >= this.options.halfOpenProbes) return -1
      this.#probesOut++
    }
    return this.#generation
  }

  /** The call reached the service and it answered (2xx, or a 4xx: the service is up). */
  success(ticket: number): void {
    if (this.#state === 'closed') {
      if (this.options.consecutive === true && this.#failures.length > 0) this.#failures = []
      return
    }
    if (this.#state !== 'half-open' || ticket !== this.#generation) return
    this.#probesOk++
    if (this.#probesOk >= this.options.halfOpenProbes) this.#move('closed')
  }

  /** 5xx, timeout or connection failure of a call (ticket from tryAcquire), or observed outside any call (no ticket: an active probe). */
  failure(ticket?: number): void {
    const now = this.#clock.now()
    if (this.#state === 'half-open') {
      if (ticket === this.#generation) this.#open(now)
      return
    }
    if (this.#state === 'open') return
    const failures = this.#failures
    failures.push(now)
    while (failures.length > 0 && (failures[0] as number) <= now - this.options.window) failures.shift()
    if (failures.length >= this.options.failures) this.#open(now)
  }

  /** The call's outcome says nothing about the service (the client left, the deadline passed elsewhere): give its probe back. */
  release(ticket: number): void {
    if (ticket === this.#generation && this.#state === 'half-open' && this.#probesOut > this.#probesOk)
      this.#probesOut--
  }

  #advance(): void {
    // The move is made when someone looks, but it happened when openFor ran out.
    const halfOpenAt = this.#openedAt + this.options.openFor
    if (this.#state === 'open' && this.#clock.now() >= halfOpenAt) this.#move('half-open', halfOpenAt)
  }

  #open(now: number): void {
    this.#openedAt = now
    this.#move('open')
  }

  #move(to: BreakerState, at = this.#clock.now()): void {
    const from = this.#state
    this.#state = to
    this.#failures = []
    this.#probesOut = 0
    this.#probesOk = 0
    this.#changedAt = at
    this.#generation++
    if (from !== to) this.#events.onStateChange?.(from, to)
  }
}

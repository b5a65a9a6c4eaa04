/**
 * Cancelling tries without an AbortController, an abort listener and a timer per try: each of
 * those costs more than the rest of Baton's own work on a call (Node's `addAbortListener`, which
 * undici uses on an AbortSignal, is ~0.5 µs by itself).
 *
 * - A `TryCancel` is what aborts one try: its timeout, the deadline, or the request's answer
 *   decided without it. The HTTP transport (http.ts) listens to it in its EventEmitter form (an
 *   `'abort'` event and a `reason`), which costs a field write. A real AbortSignal is made only
 *   when a stage asks for `attempt.signal` (a bulkhead queue, coalescing, credentials, your own
 *   stages), and it aborts with the try.
 * - `InFlight` holds a request's tries and backoffs: one timer for all their timeouts, armed for
 *   the earliest, instead of one per try; and one call aborts them all when the answer is decided.
 */
import type { CallError } from './failure.ts'

export class TryCancel {
  /** performance.now() ms at which the try is aborted with `timeoutReason` (Infinity: never by itself). */
  readonly expiresAt: number
  readonly timeoutReason: CallError | null
  /** Why the try was aborted; null while it runs. */
  reason: CallError | null = null
  #listener: (() => void) | null = null
  #others: (() => void)[] | null = null
  #controller: AbortController | null = null

  constructor(expiresAt: number, timeoutReason: CallError | null) {
    this.expiresAt = expiresAt
    this.timeoutReason = timeoutReason
  }

  /** An AbortSignal that aborts with the try, made on first use. */
  get signal(): AbortSignal {
    if (this.#controller === null) {
      this.#controller = new AbortController()
      if (this.reason !== null) this.#controller.abort(this.reason)
    }
    return this.#controller.signal
  }

  abort(reason: CallError): void {
    if (this.reason !== null) return
    this.reason = reason
    const listener = this.#listener
    this.#listener = null
    listener?.()
    const others = this.#others
    this.#others = null
    if (others !== null) for (const other of others) other()
    this.#controller?.abort(reason)
  }

  // The EventEmitter form of a signal (the transport's, and undici's `signal` option's): 'abort' is the only event.

  on(_event: 'abort', listener: () => void): this {
    if (this.#listener === null) this.#listener = listener
    else (this.#others ??= []).push(listener)
    return this
  }

  once(event: 'abort', listener: () => void): this {
    return this.on(event, listener)
  }

  removeListener(_event: 'abort', listener: () => void): this {
    if (this.#listener === listener) this.#listener = null
    else if (this.#others !== null) removeItem(this.#others, listener)
    return this
  }
}

/** A request's tries (and backoffs) in flight, with one timer for their timeouts. */
export class InFlight {
  #held: TryCancel[] = []
  #timer: ReturnType<typeof setTimeout> | null = null
  #timerAt = Infinity

  get size(): number {
    return this.#held.length
  }

  hold(cancel: TryCancel): void {
    this.#held.push(cancel)
    // A timer already armed for an earlier moment will re-arm itself for this one when it fires.
    if (cancel.expiresAt < this.#timerAt) this.#arm(cancel.expiresAt)
  }

  drop(cancel: TryCancel): void {
    removeItem(this.#held, cancel)
  }

  /** Aborts every try held (the answer is decided) and stops the timer. */
  abortAll(reason: CallError): void {
    const held = this.#held
    this.#held = []
    this.end()
    for (const cancel of held) cancel.abort(reason)
  }

  /** Stops the timer: the request is answered, nothing it held is still running. */
  end(): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#timerAt = Infinity
  }

  #arm(at: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timerAt = at
    this.#timer = setTimeout(this.#fire, Math.max(0, at - performance.now()))
  }

  readonly #fire = (): void => {
    this.#timer = null
    this.#timerAt = Infinity
    // Node's timers count whole milliseconds: one may fire a fraction of a millisecond before
    // performance.now() says its time has come. That fraction is not worth another timer.
    const now = performance.now() + 1
    let expired: TryCancel[] | null = null
    let next = Infinity
    for (const cancel of this.#held) {
      if (cancel.expiresAt <= now) (expired ??= []).push(cancel)
      else if (cancel.expiresAt < next) next = cancel.expiresAt
    }
    if (expired !== null) {
      // A timer that fires late (a busy loop) may find several due: the earliest is aborted first.
      if (expired.length > 1) expired.sort((a, b) => a.expiresAt - b.expiresAt)
      for (const cancel of expired) {
        this.drop(cancel)
        cancel.abort(cancel.timeoutReason as CallError)
      }
    }
    if (next !== Infinity) this.#arm(next)
  }
}

function removeItem<T>(list: T[], item: T): void {
  const at = list.indexOf(item)
  if (at === -1) return
  list[at] = list[list.length - 1] as T
  list.pop()
}

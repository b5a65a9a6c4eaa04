/**
 * At most `maxConcurrent` calls in flight to a service and `maxQueued` waiting; beyond that a
 * call fails at once. An overflow is the gateway protecting itself: it is not a failure of the
 * service and does not touch its breaker.
 */
export class BulkheadFull extends Error {
  constructor(service: string) {
    super(`${service}: too many calls in flight (bulkhead full)`)
    this.name = 'BulkheadFull'
  }
}

export class Bulkhead {
  readonly maxConcurrent: number
  readonly maxQueued: number
  #active = 0
  readonly #queue: { resolve: () => void; reject: (err: unknown) => void; signal: AbortSignal; onAbort: () => void }[] =
    []

  constructor(maxConcurrent: number, maxQueued: number) {
    this.maxConcurrent = maxConcurrent
    this.maxQueued = maxQueued
  }

  get active(): number {
    return this.#active
  }

  get queued(): number {
    return this.#queue.length
  }

  /**
   * Takes a slot: returns null when one was free (the common case, no promise), throws
   * BulkheadFull when the queue is full too, or returns a promise that resolves when a slot
   * frees up (and rejects with the signal's reason if the call is aborted while it waits).
   * Call `release()` once the call has finished.
   */
  acquire(service: string, signal: AbortSignal): Promise<void> | null {
    if (this.#active < this.maxConcurrent) {
      this.#active++
      return null
    }
    if (this.#queue.length >= this.maxQueued) throw new BulkheadFull(service)
    // An abort that already happened fires no event: never queue such a call.
    if (signal.aborted) return Promise.reject(signal.reason as Error)
    return new Promise<void>((resolve, reject) => {
      const entry = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const at = this.#queue.indexOf(entry)
          if (at !== -1) this.#queue.splice(at, 1)
          reject(signal.reason)
        },
      }
      signal.addEventListener('abort', entry.onAbort, { once: true })
      this.#queue.push(entry)
    })
  }

  release(): void {
    const next = this.#queue.shift()
    if (next === undefined) {
      this.#active--
      return
    }
    next.signal.removeEventListener('abort', next.onAbort)
    next.resolve()
  }
}

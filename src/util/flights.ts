/**
 * Runs shared by identical requests in flight at the same moment (singleflight): the first
 * request of a key starts a run, the ones that arrive before it ends wait for its result. A
 * waiter whose client goes leaves without ending the run for the others; the run is abandoned
 * when its last waiter has gone. Used by the response cache (collapsing: one run per entry being
 * computed) and by endpoint coalescing (one run per identical request in flight).
 */

/** A run as the flights drive it (runtime's Run). */
export interface SharedRun<A> {
  readonly answer: Promise<A>
  readonly abandon: () => void
}

/** The client of one request: told when it goes away. */
export interface ClientHandle {
  onGone(listener: () => void): void
}

/** Told about the requests that wait for another's run (metrics: they are in flight too). */
export interface WaiterObserver {
  joined(): void
  left(): void
}

export interface Flight<T, R extends SharedRun<unknown> = SharedRun<unknown>> {
  readonly key: string
  readonly run: R
  readonly result: Promise<T>
  waiters: number
}

export class Flights<T, R extends SharedRun<unknown> = SharedRun<unknown>> {
  readonly #flights = new Map<string, Flight<T, R>>()
  readonly #observer: WaiterObserver | null

  /** `observer` is told about each request that joins a flight another started (not the starter, whose run is observed). */
  constructor(observer: WaiterObserver | null = null) {
    this.#observer = observer
  }

  get(key: string): Flight<T, R> | undefined {
    return this.#flights.get(key)
  }

  has(key: string): boolean {
    return this.#flights.has(key)
  }

  /**
   * The flight of `run` under `key`: its result is `settle` of the run's answer; forgotten once
   * settled. A `detached` flight (a background refresh nobody asked for) is never abandoned:
   * requests that join it and leave do not end it.
   */
  start<A>(key: string, run: R & SharedRun<A>, settle: (answer: A) => T, detached = false): Flight<T, R> {
    // A detached flight holds a waiter of its own until it settles, so the count never falls to 0.
    const flight: Flight<T, R> = { key, run, result: run.answer.then(settle), waiters: detached ? 1 : 0 }
    this.#flights.set(key, flight)
    const done = (): void => {
      if (this.#flights.get(key) === flight) this.#flights.delete(key)
    }
    flight.result.then(done, done)
    return flight
  }

  /**
   * The flight's result for one client, or null if the client left first (the run ends when its
   * last waiter has left). `joined`: the client did not start the flight (the observer sees it).
   */
  wait(flight: Flight<T, R>, client: ClientHandle, joined: boolean): Promise<T | null> {
    flight.waiters++
    const observer = joined ? this.#observer : null
    observer?.joined()
    return new Promise<T | null>((resolve, reject) => {
      let waiting = true
      const leave = (): boolean => {
        if (!waiting) return false
        waiting = false
        observer?.left()
        return true
      }
      client.onGone(() => {
        if (!leave()) return
        if (--flight.waiters === 0) {
          // Abandoned: no request may join it any more (it would get the answer of a run nobody wanted).
          if (this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key)
          flight.run.abandon()
        }
        resolve(null)
      })
      flight.result.then(
        (value) => {
          if (!leave()) return
          flight.waiters--
          resolve(value)
        },
        (err: unknown) => {
          if (!leave()) return
          flight.waiters--
          reject(err as Error)
        },
      )
    })
  }
}

/**
 * Coalescing (singleflight): identical tries in flight to a service at the same moment — same
 * method, path, body and headers, so the same credentials — share one upstream request, across
 * every concurrent client request, and share its parsed answer (or its failure). It sits
 * after the deadline stage, so each waiter keeps its own deadline: a waiter that is aborted
 * (its deadline, its client gone) leaves without cancelling the request for the others; the
 * request is aborted only when its last waiter has left, for that waiter's reason (so a timeout
 * still counts against the service). The shared request goes through the
 * stages below once: one bulkhead slot, one breaker outcome, one client span (the first
 * waiter's), one x-request-id (the first waiter's).
 */
import { TryCancel } from '../cancel.ts'
import type { CallError } from '../failure.ts'
import { type CallResponse, cancelOf, cancelWith, newTry, type Stage } from '../pipeline.ts'
import { requestKey } from '../request-key.ts'
import { CANCELLED } from './deadline.ts'

interface Flight {
  readonly answer: Promise<CallResponse>
  waiters: number
  /** Its last waiter left: no new waiter may join it, and the request is aborted for the waiter's reason. */
  readonly abandon: (reason: unknown) => void
}

/** `onJoined` is told each time a try joins a request already in flight (for metrics). */
export function coalesceStage(onJoined: (() => void) | null): Stage {
  const flights = new Map<string, Flight>()
  return (next) => (attempt) => {
    if (!attempt.call.coalesce) return next(attempt)
    const key = requestKey(attempt)
    let flight = flights.get(key)
    if (flight === undefined) {
      // The shared request's own cancellation: aborted only when its last waiter leaves.
      const cancel = new TryCancel(Infinity, null)
      const shared = newTry(attempt.call, attempt, attempt.number, attempt.owner)
      cancelWith(shared, cancel)
      const answer = next(shared)
      const done = (): void => {
        if (flights.get(key) === started) flights.delete(key)
      }
      const started: Flight = {
        answer,
        waiters: 0,
        abandon: (reason) => {
          done()
          // The last waiter's reason (its timeout, the deadline, its client gone) is the request's: a timeout
          // still counts against the service below, a client gone still does not.
          cancel.abort((reason ?? CANCELLED) as CallError)
        },
      }
      // Also handles the rejection of a request nobody waits for any more.
      answer.then(done, done)
      flights.set(key, started)
      flight = started
    } else {
      onJoined?.()
    }
    // A try as the runtime made it is left through its TryCancel (no AbortSignal made for it); a copy through its signal.
    const cancel = cancelOf(attempt)
    return cancel === null ? wait(flight, attempt.signal) : wait(flight, cancel)
  }
}

/** The flight's answer for one waiter, or its own abort's reason if it leaves first. */
function wait(flight: Flight, signal: AbortSignal | TryCancel): Promise<CallResponse> {
  const listens = signal instanceof TryCancel
  if (listens ? signal.reason !== null : signal.aborted) return Promise.reject(signal.reason as CallError)
  flight.waiters++
  return new Promise<CallResponse>((resolve, reject) => {
    let waiting = true
    const leave = (): void => {
      waiting = false
      unlisten()
      // Nobody wants the answer any more: let the request go.
      if (--flight.waiters === 0) flight.abandon(signal.reason)
    }
    const onAbort = (): void => {
      if (!waiting) return
      leave()
      reject(signal.reason as CallError)
    }
    const unlisten = listens
      ? (): void => void signal.removeListener('abort', onAbort)
      : (): void => signal.removeEventListener('abort', onAbort)
    if (listens) signal.on('abort', onAbort)
    else signal.addEventListener('abort', onAbort, { once: true })
    flight.answer.then(
      (res) => {
        if (!waiting) return
        waiting = false
        flight.waiters--
        unlisten()
        resolve(res)
      },
      (err: unknown) => {
        if (!waiting) return
        waiting = false
        flight.waiters--
        unlisten()
        reject(err as CallError)
      },
    )
  })
}

/**
 * One try of a call runs through a pipeline of stages, composed once per service when the
 * gateway is built: each stage takes the next `send` and returns its own, in the shape of
 * undici's `Dispatcher.compose`. A stage that is not configured is not in the chain, so it
 * costs nothing; the runtime only ever calls the composed function.
 *
 * The built-in composition (see `client.ts`), outermost first:
 *
 *   deadline → cache → coalesce → bulkhead → breaker → stats → observe → …stages given to createGateway → redirects → credentials → HTTP
 *
 * A failure is thrown as a CallError (an answer outside 2xx included), so every stage sees
 * one kind of failure and the answer of a try that succeeded.
 */
import type { CallPlan } from '../plan/types.ts'
import type { TryCancel } from './cancel.ts'
import type { CallError } from './failure.ts'

/** A call's request as the runtime built it; retries of the call send the same one. */
export interface CallRequest {
  readonly method: string
  /** Path and query string, encoded, with the service's path prefix. */
  readonly path: string
  readonly headers: Record<string, string>
  readonly body: string | null
}

/** A 2xx answer. */
export interface CallResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** Parsed JSON (null when the body is empty). */
  readonly body: unknown
}

/** What a try belongs to: the request being run (or a forEach group within it). */
export interface TryOwner {
  /** performance.now() ms by which the request must be answered. */
  readonly deadlineAt: number
  /** Keeps a try (or a backoff) in flight: aborted when its time is up, or when the request's answer is decided. */
  hold(cancel: TryCancel): void
  drop(cancel: TryCancel): void
  /** Told when a try starts and ends (the observe stage); null when nothing observes tries. */
  readonly listener: TryListener | null
}

export interface TryListener {
  /** Returns what tryEnded gets back for this try (e.g. its span). */
  tryStarted(attempt: Try): unknown
  tryEnded(attempt: Try, state: unknown, response: CallResponse | null, error: CallError | null): void
}

/** A request on its way to the service: what the transport (credentials, HTTP) needs. */
export interface Outgoing {
  readonly method: string
  readonly path: string
  readonly body: string | null
  /** As sent; a stage that adds a header (trace context, a token) replaces it with a copy, since tries share it. */
  headers: Record<string, string>
  /**
   * Aborts the request; for a try, the deadline stage's (its timeout, the deadline, or the answer
   * decided without it). A stage that copies a try (`{ ...attempt }`) passes `signal: attempt.signal`.
   */
  signal: AbortSignal
}

/** One try of a call, as it passes through the stages. One object per try. */
export interface Try extends Outgoing {
  readonly call: CallPlan
  /** 1 for the first try. */
  readonly number: number
  readonly owner: TryOwner
}

export type Send = (attempt: Try) => Promise<CallResponse>

/** Wraps the next send. */
export type Stage = (next: Send) => Send

/** The transport: what an active health probe uses too (it is no call's try). */
export type Transport = (request: Outgoing) => Promise<CallResponse>

/** Folds the stages around `send`, the first outermost; null stages are left out. */
export function compose<T extends Outgoing>(
  stages: readonly (((next: (t: T) => Promise<CallResponse>) => (t: T) => Promise<CallResponse>) | null)[],
  send: (t: T) => Promise<CallResponse>,
): (t: T) => Promise<CallResponse> {
  let composed = send
  for (let i = stages.length - 1; i >= 0; i--) {
    const stage = stages[i]
    if (stage != null) composed = stage(composed)
  }
  return composed
}

/** A signal that never aborts: what a try carries before the deadline stage gives it its own. */
export const NEVER: AbortSignal = new AbortController().signal

/**
 * A try as the runtime makes it. Its `signal` is its TryCancel's, made only when a stage reads
 * it; the HTTP transport takes the TryCancel itself (`cancelOf`), which costs no listener.
 */
class Attempt implements Try {
  readonly call: CallPlan
  readonly method: string
  readonly path: string
  readonly body: string | null
  headers: Record<string, string>
  readonly number: number
  readonly owner: TryOwner
  #cancel: TryCancel | null = null
  #signal: AbortSignal = NEVER

  constructor(call: CallPlan, request: CallRequest, number: number, owner: TryOwner) {
    this.call = call
    this.method = request.method
    this.path = request.path
    this.body = request.body
    this.headers = request.headers
    this.number = number
    this.owner = owner
  }

  get signal(): AbortSignal {
    return this.#cancel === null ? this.#signal : this.#cancel.signal
  }

  /** A stage that gives the try a signal of its own: that signal is what aborts it from now on. */
  set signal(signal: AbortSignal) {
    this.#signal = signal
    this.#cancel = null
  }

  static cancel(attempt: Try, cancel: TryCancel): void {
    if (#cancel in attempt) attempt.#cancel = cancel
    else attempt.signal = cancel.signal
  }

  static cancelOf(request: Outgoing): TryCancel | null {
    return #cancel in request ? request.#cancel : null
  }
}

export function newTry(call: CallPlan, request: CallRequest, number: number, owner: TryOwner): Try {
  return new Attempt(call, request, number, owner)
}

/** Gives a try the TryCancel that aborts it (the deadline stage). */
export function cancelWith(attempt: Try, cancel: TryCancel): void {
  Attempt.cancel(attempt, cancel)
}

/** The TryCancel that aborts this request, when it is a try as the runtime made it (else use its `signal`). */
export function cancelOf(request: Outgoing): TryCancel | null {
  return Attempt.cancelOf(request)
}

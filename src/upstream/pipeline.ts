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
  /** Keeps a try's controller so that the try is aborted when the request's answer is decided. */
  hold(controller: AbortController): void
  drop(controller: AbortController): void
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
  /** Aborts the request; for a try, set by the deadline stage (its timeout, the deadline, or the answer decided without it). */
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

export function newTry(call: CallPlan, request: CallRequest, number: number, owner: TryOwner): Try {
  return {
    call,
    method: request.method,
    path: request.path,
    body: request.body,
    headers: request.headers,
    number,
    owner,
    signal: NEVER,
  }
}

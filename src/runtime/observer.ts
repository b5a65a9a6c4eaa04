/**
 * What the runtime tells the world: a run started, a try of a call started and ended, a run
 * finished with its answer. Metrics, tracing, the access log and Server-Timing are observers;
 * the runtime imports none of them. Each endpoint resolves its observers once, when the gateway
 * is built; with none, a request pays a null check.
 */
import type { EndpointPlan } from '../plan/types.ts'
import type { RequestView } from '../plan/scope.ts'
import type { CallError } from '../upstream/failure.ts'
import type { CallResponse, Try } from '../upstream/pipeline.ts'

export interface GatewayAnswer {
  status: number
  body: unknown
  headers: Record<string, string> | null
}

/** What happened in a run; complete once its answer is decided. */
export interface RunReport {
  /** Per call, ms from its start to its end; NaN for calls not made. */
  readonly durations: readonly number[]
  /** Calls whose section is a fallback, by name. */
  readonly degraded: readonly string[] | null
  /** Per call (by index), why it failed; null when nothing failed. */
  readonly errors: readonly (CallError | undefined)[] | null
  /** Per call, tries after the first; null when nothing was retried. */
  readonly retries: readonly number[] | null
  /** Per call, the sizes of the batches a batched forEach sent; null when none was sent. */
  readonly batches: readonly (readonly number[])[] | null
}

/** A request being run, as observers see it. */
export interface RunView extends RunReport {
  readonly endpoint: EndpointPlan
  readonly request: RequestView
  readonly requestId: string
  /** The config version (release) serving the run while a canary runs (README "Canary releases"); null otherwise. */
  readonly version: string | null
  /** performance.now() when the run started. */
  readonly startedAt: number
  /** The request's trace id, when an observer (tracing) gave it one; observers later in the list see it. */
  traceId: string | null
  /** The id of the request's own span in that trace (the server span), set with traceId. */
  spanId: string | null
}

/**
 * Every hook is optional. `runStarted` returns this observer's state for the run (a span, say),
 * handed back to its other hooks. Hooks must not throw: an observer's bug must not cost a request.
 */
export interface RunObserver<S = unknown> {
  runStarted?(run: RunView): S
  /** A try is about to be sent; may replace `attempt.headers` (trace context). Returns its state for tryEnded. */
  tryStarted?(state: S, run: RunView, attempt: Try): unknown
  tryEnded?(state: S, attempt: Try, tryState: unknown, response: CallResponse | null, error: CallError | null): void
  /** The answer is decided and about to be written; may add headers to it (Server-Timing). */
  runFinished?(state: S, run: RunView, answer: GatewayAnswer): void
}

/** An endpoint's observers, resolved once; null when there are none. */
export interface Observers {
  readonly all: readonly RunObserver[]
  /** Indexes of the observers that watch tries; null when none does. */
  readonly tries: readonly number[] | null
}

export function resolveObservers(list: readonly RunObserver[]): Observers | null {
  if (list.length === 0) return null
  const tries = list.flatMap((o, i) => (o.tryStarted !== undefined || o.tryEnded !== undefined ? [i] : []))
  return { all: list, tries: tries.length === 0 ? null : tries }
}

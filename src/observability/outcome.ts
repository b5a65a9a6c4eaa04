/** A request's outcome as logs, metrics and traces name it. */
import type { IncomingHttpHeaders } from 'node:http'
import type { GatewayAnswer, RunReport } from '../runtime/observer.ts'

export type Outcome = 'complete' | 'partial' | 'failed'

export function outcomeOf(answer: GatewayAnswer, report: RunReport): Outcome {
  if (answer.status >= 400) return 'failed'
  return report.degraded === null ? 'complete' : 'partial'
}

/** What a failed call's error is called in logs and Server-Timing: the status it answered, or its kind. */
export function failureName(kind: string, status: number | null): string {
  return kind === 'status' ? String(status) : kind
}

/**
 * An answer written outside an endpoint's run: fastify's own (400 INVALID_JSON, 404, 413,
 * 415…), a request turned away at the edge, a CORS preflight, /health, /health/ready,
 * /metrics, or an error Node reported before a request existed (408, 431, garbage).
 */
export interface Answered {
  /**
   * The endpoint's label when an endpoint's route matched (`POST /v1/checkout/summary`), the
   * route of the gateway's own paths (`GET /health`), `preflight` for a CORS preflight, and
   * `unmatched` when no route matched: never the raw path.
   */
  readonly endpoint: string
  readonly status: number
  readonly requestId: string
  /** ms from the request's arrival; null when unknown (an error before a request existed). */
  readonly durationMs: number | null
  /** The error code of an error envelope, when known. */
  readonly code: string | null
  /** The method and the path (without its query, which may carry an API key) of an unmatched request; null otherwise. */
  readonly method: string | null
  readonly path: string | null
  /** Already logged (an edge rejection has its own `rejected` line): count it only. */
  readonly logged: boolean
  /** The request id of the request whose run answered this one (endpoint coalescing); null when it ran its own, or none. */
  readonly sharedRun: string | null
  /** The server span of that run (traced gateways), which this answer's span links to; null otherwise. */
  readonly sharedSpan: SpanIds | null
  /** The request's headers (its trace context); null for an error before a request existed. */
  readonly headers: IncomingHttpHeaders | null
  /** One of the config's endpoints matched (not the gateway's own paths, not an unmatched one). */
  readonly matched: boolean
  /** The answer says `baton-degraded`: a partial answer, shared by a run or stored in the cache. */
  readonly degraded: boolean
  /** Its trace id and server span's id, set by the tracing observer (told first) when it traces the answer. */
  traceId: string | null
  spanId: string | null
}

/** A span, by its ids. */
export interface SpanIds {
  readonly traceId: string
  readonly spanId: string
}

/** Told about every answer written outside a run (the run's own observers see the others). */
export interface AnswerObserver {
  answered(answer: Answered): void
}

/** The outcome of an answer outside a run: partial when it is a run's partial answer, shared or cached. */
export function answerOutcome(status: number, degraded: boolean): Outcome {
  if (status >= 400) return 'failed'
  return degraded ? 'partial' : 'complete'
}

/** A request's outcome as logs, metrics and traces name it. */
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

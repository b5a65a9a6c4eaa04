/**
 * The service's recent calls for `/health/ready`: calls in flight, and each finished try's
 * duration and whether it counts against the service. Tries cut short for the gateway's own
 * reasons (the client left, a deadline other calls used up) are not recorded.
 */
import type { ServiceStats } from '../../policies/stats.ts'
import { countsAgainstService, toCallError } from '../failure.ts'
import type { Stage } from '../pipeline.ts'

export function statsStage(stats: ServiceStats): Stage {
  return (next) => async (attempt) => {
    const started = performance.now()
    stats.inFlight++
    try {
      const res = await next(attempt)
      stats.record(performance.now() - started, null)
      return res
    } catch (err) {
      const error = toCallError(err)
      if (countsAgainstService(error, Number.isFinite(attempt.call.timeout))) {
        stats.record(performance.now() - started, failureLabel(error.kind, error.status))
      } else if (error.kind === 'status') {
        stats.record(performance.now() - started, null)
      }
      throw error
    } finally {
      stats.inFlight--
    }
  }
}

/** How `/health/ready` names a failure: `status 503`, `timeout`, `connect`… */
export function failureLabel(kind: string, status: number | null): string {
  return kind === 'status' ? `status ${String(status)}` : kind
}

/**
 * At most `maxConcurrent` tries in flight to the service and `maxQueued` waiting. A full
 * bulkhead, or no slot freed within the call's own timeout, is the gateway protecting itself:
 * `bulkhead_full`, which does not count against the service.
 */
import type { ServicePlan } from '../../plan/types.ts'
import type { Bulkhead } from '../../policies/bulkhead.ts'
import { CallError } from '../failure.ts'
import type { Stage } from '../pipeline.ts'

export function bulkheadStage(bulkhead: Bulkhead | null, service: ServicePlan): Stage | null {
  if (bulkhead === null) return null
  const name = service.name
  return (next) => async (attempt) => {
    try {
      const queued = bulkhead.acquire(name, attempt.signal)
      if (queued !== null) await queued
    } catch (err) {
      // The deadline, or the request settled, while waiting: that is what happened, not a full bulkhead.
      if (err instanceof CallError && (err.kind === 'deadline' || err.kind === 'aborted')) throw err
      throw new CallError('bulkhead_full', `${name}: too many calls in flight`)
    }
    try {
      return await next(attempt)
    } finally {
      bulkhead.release()
    }
  }
}

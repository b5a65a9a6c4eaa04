/**
 * Server-Timing: each call's duration and the total, so a front-end developer sees the fan-out
 * in the browser's network panel. `cart;dur=12.3, shipping;desc="timeout";dur=500.2,
 * total;dur=80.1`: calls in plan order (a failed one says why: its kind, or the status it
 * answered), then the total.
 */
import type { EndpointPlan } from '../plan/types.ts'
import type { RunObserver, RunReport } from '../runtime/observer.ts'
import { failureName } from './outcome.ts'

export function serverTiming(endpoint: EndpointPlan, report: RunReport, totalMs: number): string {
  let header = ''
  for (const call of endpoint.calls) {
    const ms = report.durations[call.index] as number
    if (Number.isNaN(ms)) continue
    const error = report.errors?.[call.index]
    const desc = error === undefined ? '' : `desc="${failureName(error.kind, error.status)}";`
    header += `${call.name};${desc}dur=${ms.toFixed(1)}, `
  }
  return `${header}total;dur=${totalMs.toFixed(1)}`
}

export const serverTimingObserver: RunObserver = {
  runFinished(_state, run, answer) {
    const header = serverTiming(run.endpoint, run, performance.now() - run.startedAt)
    answer.headers = { ...answer.headers, 'server-timing': header }
  },
}

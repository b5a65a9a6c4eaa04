/**
 * What one request leaves behind: a log line (and one per failed call), and, when asked for, a
 * Server-Timing header so a front-end developer sees the fan-out in the browser's network panel.
 */
import type { Logger } from 'pino'
import type { EndpointPlan } from '../plan/types.ts'
import type { GatewayAnswer, RunReport } from '../runtime/execute.ts'

export type Outcome = 'complete' | 'partial' | 'failed'

export function outcomeOf(answer: GatewayAnswer, report: RunReport): Outcome {
  if (answer.status >= 400) return 'failed'
  return report.degraded === null ? 'complete' : 'partial'
}

/** `cart;dur=12.3, shipping;desc="timeout";dur=500.2, total;dur=80.1`: calls in plan order (a failed one says why: its kind, or the status it answered), then the total. */
export function serverTiming(endpoint: EndpointPlan, report: RunReport, totalMs: number): string {
  let header = ''
  const failed = report.failures
  for (const call of endpoint.calls) {
    const ms = report.durations[call.index] as number
    if (Number.isNaN(ms)) continue
    const failure = failed?.find((f) => f.call === call.name)
    const desc =
      failure === undefined ? '' : `desc="${failure.kind === 'status' ? String(failure.status) : failure.kind}";`
    header += `${call.name};${desc}dur=${ms.toFixed(1)}, `
  }
  return `${header}total;dur=${totalMs.toFixed(1)}`
}

/** traceId: the request's trace when tracing is on, else null. */
export type RequestLog = (
  endpoint: EndpointPlan,
  answer: GatewayAnswer,
  report: RunReport,
  requestId: string,
  traceId: string | null,
  totalMs: number,
) => void

/** One info line per request and one warn line per failed call, with the request id (and the trace id when tracing); null when the level logs neither. */
export function requestLog(logger: Logger, accessLog = true): RequestLog | null {
  const info = accessLog && logger.isLevelEnabled('info')
  const warn = logger.isLevelEnabled('warn')
  if (!info && !warn) return null
  return (endpoint, answer, report, requestId, traceId, totalMs) => {
    const route = `${endpoint.method} ${endpoint.route}`
    if (warn && report.failures !== null) {
      for (const f of report.failures) {
        logger.warn(
          {
            event: 'call_failed',
            requestId,
            ...(traceId === null ? {} : { traceId }),
            route,
            call: f.call,
            service: f.service,
            kind: f.kind,
            status: f.status,
            required: f.required,
          },
          `  ✗ ${f.call}${f.call === f.service ? '' : ` (${f.service})`}: ${f.kind === 'status' ? `answered ${f.status}` : f.kind}${f.required ? '' : ', fell back'}`,
        )
      }
    }
    if (!info) return
    const outcome = outcomeOf(answer, report)
    const failed = report.failures?.map((f) => f.call) ?? null
    logger.info(
      {
        event: 'request',
        requestId,
        ...(traceId === null ? {} : { traceId }),
        method: endpoint.method,
        route: endpoint.route,
        status: answer.status,
        outcome,
        durationMs: Math.round(totalMs * 10) / 10,
        ...(failed === null ? {} : { failed }),
        ...(report.degraded === null ? {} : { degraded: report.degraded }),
      },
      `${route} ${answer.status} ${totalMs.toFixed(1)}ms${outcome === 'partial' ? ` partial (${report.degraded?.join(', ') ?? ''})` : ''}`,
    )
  }
}

/**
 * What one request leaves in the log: an info line per answer (the access log) and a warn line
 * per failed call, with the request id (and the trace id when tracing). An answer is logged
 * once: a run's by its observer, one turned away at the edge as `rejected`, every other one
 * (fastify's own 400/404/413/415, health, metrics, preflights, errors before a request existed)
 * by the answer log. Every line names the endpoint by its label, or `unmatched`.
 */
import type { Logger } from 'pino'
import type { EdgeObserver, Rejection } from '../edge/admission.ts'
import type { EndpointPlan } from '../plan/types.ts'
import type { RunObserver } from '../runtime/observer.ts'
import { type AnswerObserver, answerOutcome, failureName, outcomeOf } from './outcome.ts'

/** The request log as an observer; null when the level logs neither lines per request nor failed calls. */
export function accessLogObserver(logger: Logger, accessLog = true): RunObserver | null {
  const info = accessLog && logger.isLevelEnabled('info')
  const warn = logger.isLevelEnabled('warn')
  if (!info && !warn) return null
  return {
    runFinished(_state, run, answer) {
      const endpoint = run.endpoint
      const label = endpoint.label
      const { requestId, traceId, spanId } = run
      const trace = traceId === null ? {} : { traceId, spanId }
      const errors = run.errors
      if (warn && errors !== null) {
        for (const call of endpoint.calls) {
          const e = errors[call.index]
          if (e === undefined) continue
          logger.warn(
            {
              event: 'call_failed',
              requestId,
              ...trace,
              endpoint: label,
              ...(run.version === null ? {} : { version: run.version }),
              call: call.name,
              service: call.service.name,
              kind: e.kind,
              status: e.status,
              required: call.required,
            },
            `  ✗ ${call.name}${call.name === call.service.name ? '' : ` (${call.service.name})`}: ${e.kind === 'status' ? `answered ${failureName(e.kind, e.status)}` : e.kind}${call.required ? '' : ', fell back'}`,
          )
        }
      }
      if (!info) return
      const totalMs = performance.now() - run.startedAt
      const outcome = outcomeOf(answer, run)
      const failed =
        errors === null ? null : endpoint.calls.filter((c) => errors[c.index] !== undefined).map((c) => c.name)
      logger.info(
        {
          event: 'request',
          requestId,
          ...trace,
          endpoint: label,
          ...(run.version === null ? {} : { version: run.version }),
          status: answer.status,
          outcome,
          durationMs: Math.round(totalMs * 10) / 10,
          ...(failed === null ? {} : { failed }),
          ...(run.degraded === null ? {} : { degraded: run.degraded }),
        },
        `${label} ${answer.status} ${totalMs.toFixed(1)}ms${outcome === 'partial' ? ` partial (${run.degraded?.join(', ') ?? ''})` : ''}`,
      )
    },
  }
}

/** Rejections at the edge, logged with the access log. */
export function rejectionLog(logger: Logger): EdgeObserver {
  return {
    rejected(endpoint: EndpointPlan, rejection: Rejection, request: { ip: string; requestId: string }) {
      logger.info(
        {
          event: 'rejected',
          endpoint: endpoint.label,
          status: rejection.status,
          code: rejection.code,
          reason: rejection.reason,
          ip: request.ip,
          requestId: request.requestId,
        },
        `${endpoint.label} ${rejection.status} ${rejection.code}`,
      )
    },
  }
}

/** The line of an answer written outside a run, as a run's line looks; null when the level or accessLog leaves it out. */
export function answerLog(logger: Logger, accessLog = true): AnswerObserver | null {
  if (!accessLog || !logger.isLevelEnabled('info')) return null
  return {
    answered(answer) {
      if (answer.logged) return
      const { endpoint, status, durationMs, code, method, path, sharedRun, traceId } = answer
      const where = method === null ? endpoint : `${endpoint} ${method} ${path ?? ''}`
      logger.info(
        {
          event: 'request',
          requestId: answer.requestId,
          ...(traceId === null ? {} : { traceId, spanId: answer.spanId }),
          endpoint,
          ...(method === null ? {} : { method, path }),
          status,
          outcome: answerOutcome(status, answer.degraded),
          ...(durationMs === null ? {} : { durationMs: Math.round(durationMs * 10) / 10 }),
          ...(code === null ? {} : { code }),
          ...(sharedRun === null ? {} : { sharedRun }),
        },
        `${where} ${status}${durationMs === null ? '' : ` ${durationMs.toFixed(1)}ms`}${code === null ? '' : ` ${code}`}${sharedRun === null ? '' : ` (run of ${sharedRun})`}`,
      )
    },
  }
}

/**
 * The log's one schema, in the formats a line can take: Baton's own JSON (level names, epoch
 * ms or ISO time), ECS for shippers that speak the Elastic Common Schema, and pretty lines for
 * a person (`baton dev`). Every line is written by the same calls (`logger.info({ event, … },
 * msg)`); only the options given to pino here decide how it looks, so a field is named once,
 * where it is logged, and renamed for ECS in one table below.
 */
import { ecsFormat } from '@elastic/ecs-pino-format'
import { pino, type DestinationStream, type LoggerOptions } from 'pino'
import { PinoPretty } from 'pino-pretty'

export type LogFormat = 'baton' | 'ecs'
export type LogTime = 'epoch' | 'iso'

export interface LogSchema {
  readonly format: LogFormat
  /** baton format only: ECS always writes an ISO `@timestamp`. */
  readonly time: LogTime
  readonly level: string
  /** The gateway's name: ECS's `service.name`. */
  readonly service: string
  /** baton serve --workers: the worker's id, on each of its lines. */
  readonly worker?: number
}

/** pino's options for the schema's format. */
export function logOptions(schema: LogSchema): LoggerOptions {
  const base = schema.worker === undefined ? null : { worker: schema.worker }
  if (schema.format === 'ecs') return ecsOptions(schema.service, schema.level, base)
  return {
    base,
    level: schema.level,
    timestamp: schema.time === 'iso' ? pino.stdTimeFunctions.isoTime : pino.stdTimeFunctions.epochTime,
    formatters: { level: (label) => ({ level: label }) },
  }
}

/**
 * Lines for a person: the message alone (it was written to be read), `error:` before an error's.
 * The fields stay in the JSON formats; here they would bury the message.
 */
export function prettyStream(destination: number | DestinationStream = 1): DestinationStream {
  return PinoPretty({
    destination,
    sync: true,
    hideObject: true,
    ignore: 'level,time,pid,hostname,worker',
    messageFormat: (log, key) => {
      const msg = String(log[key])
      return log['level'] === 'error' || log['level'] === 'fatal' ? `error: ${msg}` : msg
    },
  })
}

/** Baton's fields that ECS has a field for; the others go under `baton.` (a custom namespace, as ECS asks). */
const ECS_FIELDS: Readonly<Record<string, string>> = {
  event: 'event.action',
  requestId: 'http.request.id',
  traceId: 'trace.id',
  spanId: 'span.id',
  ip: 'client.ip',
}

/** Events whose `status` is the answer's (on a call_failed line it is the service's). */
const ANSWERS = new Set(['request', 'rejected'])

function ecsOptions(service: string, level: string, base: Record<string, unknown> | null): LoggerOptions {
  // apmIntegration off: the format would otherwise try to load elastic-apm-node, which Baton does not use.
  const ecs = ecsFormat({ apmIntegration: false, serviceName: service })
  const toEcs = ecs.formatters?.log
  const bindings = ecs.formatters?.bindings
  return {
    ...ecs,
    level,
    base,
    formatters: {
      ...ecs.formatters,
      bindings: (b) => {
        const { worker, ...rest } = b
        const fields = bindings === undefined ? rest : bindings(rest)
        return worker === undefined ? fields : { ...fields, 'baton.worker': worker }
      },
      log: (fields) => {
        const out: Record<string, unknown> = {}
        for (const [key, value] of Object.entries(fields)) {
          if (key === 'err') {
            // Most lines log the message alone: ECS wants it in error.message (the format converts Errors itself).
            if (value instanceof Error) out['err'] = value
            else out['error.message'] = String(value)
          } else if (key === 'durationMs' && typeof value === 'number') {
            out['event.duration'] = Math.round(value * 1e6)
          } else if (key === 'status' && ANSWERS.has(fields['event'] as string)) {
            out['http.response.status_code'] = value
          } else out[ECS_FIELDS[key] ?? `baton.${key}`] = value
        }
        return toEcs === undefined ? out : toEcs(out)
      },
    },
  }
}

/** A logger writing the gateway's own log schema (src/observability/log.ts) into an array, for a test to read. */
import { pino, type Logger } from 'pino'
import { logOptions, type LogFormat, type LogTime } from '../../src/observability/log.ts'

export type LogLine = Record<string, unknown>

export interface CapturedLog {
  readonly logger: Logger
  /** Each line written so far, parsed. */
  readonly lines: LogLine[]
}

export function captureLog(
  level = 'info',
  options: { format?: LogFormat; time?: LogTime; service?: string } = {},
): CapturedLog {
  const lines: LogLine[] = []
  const schema = { format: options.format ?? 'baton', time: options.time ?? 'epoch', level }
  const logger = pino(logOptions({ ...schema, service: options.service ?? 'test' }), {
    write: (line: string) => void lines.push(JSON.parse(line) as LogLine),
  })
  return { logger, lines }
}

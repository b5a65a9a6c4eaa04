/**
 * An OTLP/HTTP trace receiver for tests: accepts POST /v1/traces with the JSON encoding (what
 * @opentelemetry/exporter-trace-otlp-http sends) and keeps every span, flattened with its
 * resource's service.name.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'

/** An OTLP attribute value in the JSON encoding. */
interface AnyValue {
  stringValue?: string
  boolValue?: boolean
  intValue?: string | number
  doubleValue?: number
  arrayValue?: { values?: AnyValue[] }
}

interface KeyValue {
  key: string
  value: AnyValue
}

interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes?: KeyValue[]
  status?: { code?: number; message?: string }
}

interface ExportRequest {
  resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: OtlpSpan[] }[] }[]
}

/** OTLP's SpanKind numbers (not the API's: OTLP counts UNSPECIFIED as 0). */
export const SPAN_KIND = { SERVER: 2, CLIENT: 3 } as const
/** OTLP's status codes. */
export const STATUS = { UNSET: 0, OK: 1, ERROR: 2 } as const

export interface ReceivedSpan {
  readonly traceId: string
  readonly spanId: string
  /** '' for a root span. */
  readonly parentSpanId: string
  readonly name: string
  readonly kind: number
  readonly attributes: Record<string, unknown>
  readonly status: number
  readonly serviceName: unknown
}

export interface Collector {
  /** The traces URL, …/v1/traces. */
  readonly url: string
  /** The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it. */
  readonly base: string
  readonly spans: ReceivedSpan[]
  /** Export requests received, with their headers. */
  readonly exports: {
    path: string
    contentType: string | undefined
    headers: Record<string, string | string[] | undefined>
  }[]
  /** Answer exports with this status instead of taking them (null: take them). */
  failWith: number | null
  close(): Promise<void>
}

/** A receiver on a free loopback port, closed after the test. */
export async function startCollector(t: TestContext): Promise<Collector> {
  const spans: ReceivedSpan[] = []
  const exports: Collector['exports'] = []
  let collector: Collector | null = null
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      exports.push({ path: req.url ?? '', contentType: req.headers['content-type'], headers: req.headers })
      const failWith = collector?.failWith ?? null
      if (failWith !== null) {
        res.writeHead(failWith).end()
        return
      }
      if (req.method !== 'POST' || req.url !== '/v1/traces' || req.headers['content-type'] !== 'application/json') {
        res.writeHead(415).end()
        return
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ExportRequest
      for (const resourceSpans of body.resourceSpans ?? []) {
        const resource = attributesOf(resourceSpans.resource?.attributes)
        for (const scope of resourceSpans.scopeSpans ?? []) {
          for (const span of scope.spans ?? []) {
            spans.push({
              traceId: span.traceId,
              spanId: span.spanId,
              parentSpanId: span.parentSpanId ?? '',
              name: span.name,
              kind: span.kind,
              attributes: attributesOf(span.attributes),
              status: span.status?.code ?? STATUS.UNSET,
              serviceName: resource['service.name'],
            })
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const close = async (): Promise<void> => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  t.after(close)
  const base = `http://127.0.0.1:${port}`
  collector = { url: `${base}/v1/traces`, base, spans, exports, failWith: null, close }
  return collector
}

function attributesOf(list: KeyValue[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const { key, value } of list ?? []) out[key] = valueOf(value)
  return out
}

function valueOf(value: AnyValue): unknown {
  if (value.stringValue !== undefined) return value.stringValue
  if (value.boolValue !== undefined) return value.boolValue
  if (value.intValue !== undefined) return Number(value.intValue)
  if (value.doubleValue !== undefined) return value.doubleValue
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(valueOf)
  return undefined
}

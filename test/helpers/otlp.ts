/**
 * OTLP trace receivers for tests: over HTTP, POST /v1/traces in the protobuf or the JSON
 * encoding; over gRPC, the TraceService's Export. Each keeps every span, flattened with its
 * resource and instrumentation scope. The protobuf is decoded by a small wire-format reader
 * (only the fields of ExportTraceServiceRequest that the tests look at).
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestContext } from 'node:test'
import * as grpc from '@grpc/grpc-js'

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
  links?: { traceId: string; spanId: string }[]
}

interface ExportRequest {
  resourceSpans?: {
    resource?: { attributes?: KeyValue[] }
    scopeSpans?: { scope?: { name?: string; version?: string }; spans?: OtlpSpan[] }[]
  }[]
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
  /** The resource's attributes. */
  readonly resource: Record<string, unknown>
  /** The instrumentation scope. */
  readonly scope: { readonly name: string; readonly version: string }
  /** The spans it links to. */
  readonly links: readonly { readonly traceId: string; readonly spanId: string }[]
}

export interface Collector {
  /** The traces URL, …/v1/traces (over gRPC, the base URL). */
  readonly url: string
  /** The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it. */
  readonly base: string
  /** Export requests received, by encoding. */
  readonly encodings: ('json' | 'protobuf' | 'grpc')[]
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
  const encodings: Collector['encodings'] = []
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
      const type = req.headers['content-type']
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end()
      } else if (type === 'application/json') {
        encodings.push('json')
        take(spans, JSON.parse(Buffer.concat(chunks).toString('utf8')) as ExportRequest)
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      } else if (type === 'application/x-protobuf') {
        encodings.push('protobuf')
        take(spans, decodeExportRequest(Buffer.concat(chunks)))
        // An empty ExportTraceServiceResponse.
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
      } else {
        res.writeHead(415).end()
      }
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
  collector = { url: `${base}/v1/traces`, base, spans, exports, encodings, failWith: null, close }
  return collector
}

/** An OTLP/gRPC receiver (the collector's TraceService) on a free loopback port, closed after the test. */
export async function startGrpcCollector(t: TestContext): Promise<Collector> {
  const spans: ReceivedSpan[] = []
  const exports: Collector['exports'] = []
  const encodings: Collector['encodings'] = []
  const server = new grpc.Server()
  const raw = (b: Buffer): Buffer => b
  server.addService(
    {
      Export: {
        path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
        requestStream: false,
        responseStream: false,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: raw,
        responseDeserialize: raw,
      },
    },
    {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        exports.push({
          path: call.getPath(),
          contentType: 'application/grpc',
          headers: Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, String(v)])),
        })
        encodings.push('grpc')
        take(spans, decodeExportRequest(call.request))
        callback(null, Buffer.alloc(0))
      },
    },
  )
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err === null ? resolve(p) : reject(err),
    ),
  )
  const close = async (): Promise<void> => {
    server.forceShutdown()
  }
  t.after(close)
  const base = `http://127.0.0.1:${port}`
  return { url: base, base, spans, exports, encodings, failWith: null, close }
}

function take(spans: ReceivedSpan[], body: ExportRequest): void {
  for (const resourceSpans of body.resourceSpans ?? []) {
    const resource = attributesOf(resourceSpans.resource?.attributes)
    for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
      const scope = { name: scopeSpans.scope?.name ?? '', version: scopeSpans.scope?.version ?? '' }
      for (const span of scopeSpans.spans ?? []) {
        spans.push({
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ?? '',
          name: span.name,
          kind: span.kind,
          attributes: attributesOf(span.attributes),
          status: span.status?.code ?? STATUS.UNSET,
          serviceName: resource['service.name'],
          resource,
          scope,
          links: (span.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
        })
      }
    }
  }
}

/** One field of a protobuf message: its number, and its value (a varint, a 64-bit word, or the bytes of a length-delimited field). */
interface Field {
  readonly n: number
  readonly varint: bigint
  readonly bytes: Buffer
}

/** The fields of a protobuf message, in order (wire types 0, 1, 2 and 5). */
function fieldsOf(buf: Buffer): Field[] {
  const out: Field[] = []
  let at = 0
  const varint = (): bigint => {
    let value = 0n
    let shift = 0n
    for (;;) {
      const byte = buf[at++] as number
      value |= BigInt(byte & 0x7f) << shift
      if ((byte & 0x80) === 0) return value
      shift += 7n
    }
  }
  while (at < buf.length) {
    const tag = Number(varint())
    const n = tag >>> 3
    const wire = tag & 7
    if (wire === 0) out.push({ n, varint: varint(), bytes: Buffer.alloc(0) })
    else if (wire === 1) {
      out.push({ n, varint: buf.readBigUInt64LE(at), bytes: buf.subarray(at, at + 8) })
      at += 8
    } else if (wire === 2) {
      const length = Number(varint())
      out.push({ n, varint: 0n, bytes: buf.subarray(at, at + length) })
      at += length
    } else if (wire === 5) {
      out.push({ n, varint: 0n, bytes: buf.subarray(at, at + 4) })
      at += 4
    } else throw new Error(`protobuf wire type ${wire} is not expected in OTLP traces`)
  }
  return out
}

const all = (fields: Field[], n: number): Field[] => fields.filter((f) => f.n === n)
const one = (fields: Field[], n: number): Field | undefined => fields.find((f) => f.n === n)
const text = (f: Field | undefined): string | undefined => f?.bytes.toString('utf8')
const hex = (f: Field | undefined): string | undefined => (f === undefined ? undefined : f.bytes.toString('hex'))

/** opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest, as the JSON encoding would have it. */
function decodeExportRequest(buf: Buffer): ExportRequest {
  return {
    resourceSpans: all(fieldsOf(buf), 1).map((rs) => {
      const f = fieldsOf(rs.bytes)
      const resource = one(f, 1)
      return {
        resource: { attributes: resource === undefined ? [] : decodeAttributes(fieldsOf(resource.bytes), 1) },
        scopeSpans: all(f, 2).map((ss) => {
          const sf = fieldsOf(ss.bytes)
          const scope = one(sf, 1)
          const scopeFields = scope === undefined ? [] : fieldsOf(scope.bytes)
          return {
            scope: { name: text(one(scopeFields, 1)) ?? '', version: text(one(scopeFields, 2)) ?? '' },
            spans: all(sf, 2).map((s) => decodeSpan(fieldsOf(s.bytes))),
          }
        }),
      }
    }),
  }
}

function decodeSpan(f: Field[]): OtlpSpan {
  const status = one(f, 15)
  const parent = hex(one(f, 4))
  return {
    traceId: hex(one(f, 1)) ?? '',
    spanId: hex(one(f, 2)) ?? '',
    ...(parent === undefined || parent === '' ? {} : { parentSpanId: parent }),
    name: text(one(f, 5)) ?? '',
    kind: Number(one(f, 6)?.varint ?? 0n),
    attributes: decodeAttributes(f, 9),
    status: { code: status === undefined ? 0 : Number(one(fieldsOf(status.bytes), 3)?.varint ?? 0n) },
    links: all(f, 13).map((l) => {
      const lf = fieldsOf(l.bytes)
      return { traceId: hex(one(lf, 1)) ?? '', spanId: hex(one(lf, 2)) ?? '' }
    }),
  }
}

function decodeAttributes(fields: Field[], n: number): KeyValue[] {
  return all(fields, n).map((kv) => {
    const f = fieldsOf(kv.bytes)
    const value = one(f, 2)
    return { key: text(one(f, 1)) ?? '', value: value === undefined ? {} : decodeValue(value.bytes) }
  })
}

function decodeValue(buf: Buffer): AnyValue {
  const [f] = fieldsOf(buf)
  if (f === undefined) return {}
  switch (f.n) {
    case 1:
      return { stringValue: f.bytes.toString('utf8') }
    case 2:
      return { boolValue: f.varint !== 0n }
    case 3:
      return { intValue: String(BigInt.asIntN(64, f.varint)) }
    case 4:
      return { doubleValue: f.bytes.readDoubleLE(0) }
    case 5:
      return { arrayValue: { values: all(fieldsOf(f.bytes), 1).map((v) => decodeValue(v.bytes)) } }
    default:
      return {}
  }
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

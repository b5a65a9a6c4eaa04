/**
 * OpenTelemetry traces: one server span per request, one client span per try of each
 * downstream call, the W3C trace context and baggage taken from the client (or a new trace
 * started) and passed on to every service; spans go out in batches over OTLP (protobuf or JSON
 * over HTTP, or gRPC, with the OpenTelemetry exporters), to stdout, or nowhere. Attributes follow
 * the HTTP semantic conventions; credentials in query strings are redacted.
 *
 * Each gateway has its own tracer provider and nothing is registered globally, so two gateways
 * in one process keep their spans apart. The SDK is imported when a gateway that traces gets
 * ready: with tracing off nothing of OpenTelemetry is even loaded (it would add ~150 ms to
 * every CLI start), and a request pays one null check.
 */
import type * as OtelApi from '@opentelemetry/api'
import type { Attributes, Context, Span, TextMapPropagator, Tracer } from '@opentelemetry/api'
import type { BasicTracerProvider, SpanExporter } from '@opentelemetry/sdk-trace-base'
import { readFile } from 'node:fs/promises'
import type { IncomingHttpHeaders } from 'node:http'
import type { Logger } from 'pino'
import type { EndpointPlan, TracingPlan } from '../plan/types.ts'
import type { GatewayAnswer, RunObserver, RunReport, RunView } from '../runtime/observer.ts'
import type { ServiceClient } from '../upstream/client.ts'
import type { CallError } from '../upstream/failure.ts'
import type { CallResponse, Try } from '../upstream/pipeline.ts'
import { type Answered, type AnswerObserver, answerOutcome, outcomeOf } from './outcome.ts'

interface Otel {
  readonly api: typeof OtelApi
  readonly propagator: TextMapPropagator
}

/** Loaded by the first gateway that traces. Stateless, so gateways share it; their providers stay apart. */
let otel: Otel | null = null

/** The OTLP exporter of the plan's protocol; each reads the OTEL_EXPORTER_OTLP_* variables Baton leaves to it. */
async function otlpExporter(plan: TracingPlan): Promise<SpanExporter> {
  const { protocol, endpoint: url, headers } = plan
  if (protocol === 'grpc') {
    const [grpc, base] = await Promise.all([
      import('@opentelemetry/exporter-trace-otlp-grpc'),
      import('@opentelemetry/otlp-grpc-exporter-base'),
    ])
    const metadata = base.createEmptyMetadata()
    for (const [name, value] of Object.entries(headers)) metadata.set(name, value)
    return new grpc.OTLPTraceExporter({ url, metadata })
  }
  const http =
    protocol === 'http/json'
      ? await import('@opentelemetry/exporter-trace-otlp-http')
      : await import('@opentelemetry/exporter-trace-otlp-proto')
  return new http.OTLPTraceExporter({ url, headers: { ...headers } })
}

/** service.version and the instrumentation scope's version: this package's (beside src/ in a checkout, beside dist/ installed). */
async function batonVersion(): Promise<string> {
  const text = await readFile(new URL('../../package.json', import.meta.url), 'utf8')
  return (JSON.parse(text) as { version: string }).version
}

/** A gateway's tracer provider: started when the gateway gets ready, flushed and shut down when it closes. */
export class GatewayTracing implements AnswerObserver {
  readonly plan: TracingPlan
  /** Null until start(), which the gateway awaits before it serves anything, and after close(). */
  tracer: Tracer | null = null
  readonly #logger: Logger | null
  #provider: BasicTracerProvider | null = null
  #exportFailing = false

  constructor(plan: TracingPlan, logger: Logger | null) {
    this.plan = plan
    this.#logger = logger
  }

  async start(): Promise<void> {
    if (this.#provider !== null) return
    const { exporters, protocol, endpoint, serviceName, serviceVersion, sampleRatio, parentBased } = this.plan
    const [api, core, sdk, resources, otlp, version] = await Promise.all([
      import('@opentelemetry/api'),
      import('@opentelemetry/core'),
      import('@opentelemetry/sdk-trace-base'),
      import('@opentelemetry/resources'),
      exporters.includes('otlp') ? otlpExporter(this.plan) : null,
      batonVersion(),
    ])
    otel ??= {
      api,
      propagator: new core.CompositePropagator({
        propagators: [new core.W3CTraceContextPropagator(), new core.W3CBaggagePropagator()],
      }),
    }
    const root =
      sampleRatio >= 1
        ? new sdk.AlwaysOnSampler()
        : sampleRatio <= 0
          ? new sdk.AlwaysOffSampler()
          : new sdk.TraceIdRatioBasedSampler(sampleRatio)
    const spanExporters: SpanExporter[] = []
    if (otlp !== null) {
      // The SDK reports failed exports to a global handler that is silent by default; the log should hear of them.
      spanExporters.push({
        export: (spans, done) => {
          otlp.export(spans, (result) => {
            this.#exported(result.code === core.ExportResultCode.SUCCESS, result.error)
            done(result)
          })
        },
        shutdown: () => otlp.shutdown(),
        forceFlush: () => otlp.forceFlush?.() ?? Promise.resolve(),
      })
    }
    if (exporters.includes('console')) spanExporters.push(new sdk.ConsoleSpanExporter())
    // Baton's version, under what OTEL_RESOURCE_ATTRIBUTES says (read by the SDK's detector), under the plan's names.
    const detected = resources.detectResources({ detectors: [resources.envDetector] })
    const resource = resources
      .defaultResource()
      .merge(resources.resourceFromAttributes({ 'service.version': version }))
      .merge(detected)
      .merge(
        resources.resourceFromAttributes({
          'service.name': serviceName,
          ...(serviceVersion === null ? {} : { 'service.version': serviceVersion }),
        }),
      )
    this.#provider = new sdk.BasicTracerProvider({
      resource,
      sampler: parentBased ? new sdk.ParentBasedSampler({ root }) : root,
      spanProcessors: spanExporters.map((e) => new sdk.BatchSpanProcessor(e)),
    })
    this.tracer = this.#provider.getTracer('baton', version)
    const where = [
      ...(otlp === null ? [] : [`${endpoint} (OTLP ${protocol})`]),
      ...(exporters.includes('console') ? ['stdout'] : []),
    ]
    this.#logger?.info(
      { event: 'tracing', exporters, protocol, collector: endpoint, serviceName, sampleRatio },
      where.length === 0
        ? `traces of ${serviceName} are propagated but not exported (OTEL_TRACES_EXPORTER=none)`
        : `traces of ${serviceName} go to ${where.join(' and ')}`,
    )
  }

  /** The endpoint's observer: a server span per request, a client span per try. */
  observerFor(
    endpoint: EndpointPlan,
    clients: readonly ServiceClient[],
    version: string | null = null,
  ): RunObserver<RequestTrace | null> {
    const spans = new EndpointSpans(this, endpoint, clients, version)
    return {
      runStarted(run) {
        const trace = spans.startRequest(run)
        if (trace !== null) ({ traceId: run.traceId, spanId: run.spanId } = trace.span.spanContext())
        return trace
      },
      tryStarted(trace, _run, attempt) {
        if (trace === null) return null
        const span = trace.startTry(attempt)
        attempt.headers = withTraceContext(trace.context, span, attempt.headers)
        return span
      },
      tryEnded(_trace, _attempt, span, response, error) {
        if (span !== null) endTry(span as Span, response, error)
      },
      runFinished(trace, run, answer) {
        trace?.finish(answer, run)
      },
    }
  }

  /**
   * A server span for an endpoint's answer written without a run of its own: a cache hit, a
   * request that shared another's run (linked to that run's span, where its calls are), a request
   * turned away at the edge. In the client's trace, as a run's span is. The gateway's own paths
   * (health, metrics, admin) and unmatched ones are not traced.
   */
  answered(answer: Answered): void {
    const tracer = this.tracer
    if (tracer === null || !answer.matched || answer.headers === null) return
    const { api } = otel as Otel
    const parent = clientContext(answer.headers)
    const label = answer.endpoint
    const space = label.indexOf(' ')
    const route = label.slice(space + 1)
    const attributes: Attributes = {
      'http.request.method': label.slice(0, space),
      'http.route': route === '' ? '/' : route,
      'baton.endpoint': label,
      'baton.request_id': answer.requestId,
      'http.response.status_code': answer.status,
      'baton.outcome': answerOutcome(answer.status, answer.degraded),
    }
    if (answer.sharedRun !== null) attributes['baton.shared_run'] = answer.sharedRun
    if (answer.code !== null) attributes['baton.error_code'] = answer.code
    const shared = answer.sharedSpan
    const links =
      shared === null
        ? []
        : [{ context: { traceId: shared.traceId, spanId: shared.spanId, traceFlags: api.TraceFlags.SAMPLED } }]
    const now = Date.now()
    const span = tracer.startSpan(
      label,
      { kind: api.SpanKind.SERVER, attributes, links, startTime: now - (answer.durationMs ?? 0) },
      parent,
    )
    if (answer.status >= 500) {
      span.setAttribute('error.type', answer.code ?? String(answer.status))
      span.setStatus({ code: api.SpanStatusCode.ERROR })
    }
    span.end(now)
    ;({ traceId: answer.traceId, spanId: answer.spanId } = span.spanContext())
  }

  /** Exports the spans still buffered, then stops. */
  async close(): Promise<void> {
    const provider = this.#provider
    if (provider === null) return
    this.#provider = null
    this.tracer = null
    try {
      await provider.shutdown()
    } catch (err) {
      // Closing the gateway goes on: traces are not worth a failed shutdown.
      if (!this.#exportFailing)
        this.#logger?.warn(
          { event: 'tracing', err: message(err) },
          `the last traces could not be exported: ${message(err)}`,
        )
    }
  }

  /** Tells the log when exports start failing, and when they work again; not at every batch. */
  #exported(ok: boolean, error: Error | undefined): void {
    if (ok !== this.#exportFailing) return
    this.#exportFailing = !ok
    const { endpoint } = this.plan
    // `collector`, not `endpoint`: in every log line, `endpoint` is an endpoint's label.
    if (ok) this.#logger?.info({ event: 'tracing', collector: endpoint }, `traces are exported to ${endpoint} again`)
    else
      this.#logger?.warn(
        { event: 'tracing', collector: endpoint, err: message(error) },
        `traces cannot be exported to ${endpoint}: ${message(error)}`,
      )
  }
}

interface CallTracing {
  readonly name: string
  readonly origin: string
  readonly attributes: Attributes
}

/** An endpoint's span names and fixed attributes, prepared when the gateway is built. */
class EndpointSpans {
  readonly tracing: GatewayTracing
  readonly name: string
  readonly attributes: Attributes
  /** calls[i] describes plan.calls[i]. */
  readonly calls: readonly CallTracing[]
  /** Query parameters whose values are REDACTED in url.query and url.full. */
  readonly redacted: ReadonlySet<string>

  constructor(
    tracing: GatewayTracing,
    endpoint: EndpointPlan,
    clients: readonly ServiceClient[],
    version: string | null,
  ) {
    const name = endpoint.label
    this.tracing = tracing
    this.redacted = new Set(tracing.plan.redactedQuery)
    // HTTP semantic conventions: a server span is named "{method} {route}"; the endpoint's label is exactly that.
    this.name = name
    this.attributes = {
      'http.request.method': endpoint.method,
      'http.route': endpoint.route === '' ? '/' : endpoint.route,
      'baton.endpoint': name,
      ...(version === null ? {} : { 'baton.version': version }),
    }
    this.calls = endpoint.calls.map((call, i) => {
      const origin = (clients[i] as ServiceClient).origin
      const url = new URL(origin)
      return {
        name: `${call.method} ${call.name}`,
        origin,
        attributes: {
          'http.request.method': call.method,
          'server.address': url.hostname.replace(/^\[|\]$/g, ''),
          'server.port': Number(url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : url.port),
          'baton.endpoint': name,
          'baton.call': call.name,
          'baton.service': call.service.name,
        },
      }
    })
  }

  /** The request's server span: a child of the client's span when it sent a traceparent, else the root of a new trace. */
  startRequest(run: RunView): RequestTrace | null {
    const tracer = this.tracing.tracer
    if (tracer === null) return null
    const { api } = otel as Otel
    const { headers, url, client } = run.request
    const parent = clientContext(headers)
    const attributes: Attributes = {
      ...this.attributes,
      'url.scheme': client.protocol,
      'url.path': run.request.path,
      'client.address': client.ip,
      'baton.request_id': run.requestId,
    }
    const q = url.indexOf('?')
    if (q !== -1 && q < url.length - 1) attributes['url.query'] = redactQuery(url.slice(q + 1), this.redacted)
    const agent = headers['user-agent']
    if (typeof agent === 'string') attributes['user_agent.original'] = agent
    const span = tracer.startSpan(this.name, { kind: api.SpanKind.SERVER, attributes }, parent)
    return new RequestTrace(this, tracer, span, api.trace.setSpan(parent, span))
  }
}

/** The client's trace context (its traceparent and baggage), or a new trace's root when it sent none. */
function clientContext(headers: IncomingHttpHeaders): Context {
  const { api, propagator } = otel as Otel
  return headers.traceparent === undefined && headers.baggage === undefined
    ? api.ROOT_CONTEXT
    : propagator.extract(api.ROOT_CONTEXT, headers, api.defaultTextMapGetter)
}

/** The trace of one request: its server span, parent of the spans of its calls. */
class RequestTrace {
  readonly endpoint: EndpointSpans
  readonly tracer: Tracer
  readonly span: Span
  /** Holds the server span: the parent of every call's spans. */
  readonly context: Context

  constructor(endpoint: EndpointSpans, tracer: Tracer, span: Span, context: Context) {
    this.endpoint = endpoint
    this.tracer = tracer
    this.span = span
    this.context = context
  }

  get traceId(): string {
    return this.span.spanContext().traceId
  }

  /** A client span for one try of a call. */
  startTry(attempt: Try): Span {
    const { api } = otel as Otel
    const c = this.endpoint.calls[attempt.call.index] as CallTracing
    const tries = attempt.number
    const path = attempt.path
    const q = path.indexOf('?')
    const full =
      c.origin + (q === -1 ? path : path.slice(0, q + 1) + redactQuery(path.slice(q + 1), this.endpoint.redacted))
    const attributes: Attributes = { ...c.attributes, 'url.full': full, 'baton.try': tries }
    if (tries > 1) attributes['http.request.resend_count'] = tries - 1
    return this.tracer.startSpan(c.name, { kind: api.SpanKind.CLIENT, attributes }, this.context)
  }

  /** Ends the server span with the answer. 5xx answers are errors; 4xx are the client's (HTTP semantic conventions). */
  finish(answer: GatewayAnswer, report: RunReport): void {
    const span = this.span
    span.setAttribute('http.response.status_code', answer.status)
    span.setAttribute('baton.outcome', outcomeOf(answer, report))
    if (report.degraded !== null) span.setAttribute('baton.degraded', [...report.degraded])
    if (answer.status >= 500) {
      span.setAttribute('error.type', errorCodeOf(answer) ?? String(answer.status))
      span.setStatus({ code: (otel as Otel).api.SpanStatusCode.ERROR })
    }
    span.end()
  }
}

/**
 * The try's request headers with a traceparent (and tracestate) naming its span, and the client's
 * baggage. A copy: the tries of a call share one headers object.
 */
function withTraceContext(
  request: Context,
  span: Span,
  headers: Readonly<Record<string, string>>,
): Record<string, string> {
  const { api, propagator } = otel as Otel
  const out = { ...headers }
  propagator.inject(api.trace.setSpan(request, span), out, api.defaultTextMapSetter)
  return out
}

/** A query string with the values of credential parameters replaced by REDACTED; the rest as sent. */
export function redactQuery(query: string, names: ReadonlySet<string>): string {
  let out = ''
  for (const part of query.split('&')) {
    const eq = part.indexOf('=')
    const name = eq === -1 ? null : part.slice(0, eq)
    if (out !== '') out += '&'
    out += name !== null && names.has(decodeName(name).toLowerCase()) ? `${name}=REDACTED` : part
  }
  return out
}

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '))
  } catch {
    return raw
  }
}

/** Ends a try's span with its outcome: the status the service answered (4xx and 5xx are errors), or why there was none. */
function endTry(span: Span, res: CallResponse | null, error: CallError | null): void {
  const { api } = otel as Otel
  const status = res?.status ?? error?.status ?? null
  if (status !== null) {
    span.setAttribute('http.response.status_code', status)
    if (status >= 400) {
      span.setAttribute('error.type', String(status))
      span.setStatus({ code: api.SpanStatusCode.ERROR })
    }
  } else if (error !== null) {
    // The failure kinds of logs and metrics: timeout, connect, circuit_open, bulkhead_full, deadline, aborted…
    span.setAttribute('error.type', error.kind)
    span.setStatus({ code: api.SpanStatusCode.ERROR, message: error.message })
  }
  span.end()
}

/** The envelope's error code (GATEWAY_TIMEOUT, DOWNSTREAM_FAILURE…): low-cardinality and more telling than the status. */
function errorCodeOf(answer: GatewayAnswer): string | null {
  const code = (answer.body as { error?: { code?: unknown } } | null)?.error?.code
  return typeof code === 'string' ? code : null
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/**
 * OpenTelemetry tracing over real sockets: a client's traceparent is continued (or a trace
 * started), every try of every call is a client span under the request's server span, each
 * service receives the traceparent of its own try's span, and the spans reach an OTLP/HTTP
 * receiver. Off, nothing is sent downstream and nothing exported.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { readFileSync } from 'node:fs'
import { pino } from 'pino'
import { ConfigError } from '../src/errors.ts'
import { redactQuery } from '../src/observability/tracing.ts'
import { compileText } from '../src/plan/compile.ts'
import { REDACTED_QUERY } from '../src/plan/tracing.ts'
import { get, type RunningGateway, startGateway, stubFor } from './helpers/gateway.ts'
import {
  type Collector,
  type ReceivedSpan,
  SPAN_KIND,
  STATUS,
  startCollector,
  startGrpcCollector,
} from './helpers/otlp.ts'
import { captureLog } from './helpers/log.ts'
import { gate } from './helpers/resilience.ts'
import { metricValue } from './helpers/metrics.ts'
import { eventually, hang, json, type Stub } from './helpers/stub.ts'
import { setTimeout as sleep } from 'node:timers/promises'

const run = promisify(execFile)

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c'
const CLIENT_SPAN_ID = 'b7ad6b7169203331'
const CLIENT_TRACEPARENT = `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01`
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/
const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version

/** users answers, orders fails once with a 503 and is retried, extra hangs past its timeout (optional). */
function routes(stub: Stub): void {
  stub.route('GET /users/:id', (req) => json({ id: req.params.id }))
  let orders = 0
  stub.route('GET /api/orders/:id', () => (++orders === 1 ? json({}, { status: 503 }) : json([{ id: 'o1' }])))
  stub.route('GET /slow', hang())
}

const config = (stub: Stub, gateway: string): string => `
version: 1
gateway: { name: Traced${gateway} }
services:
  # Each client request makes its own call here (these tests count them); coalescing is test/coalesce.test.ts's.
  users: { url: "${stub.url}", coalesce: false }
  orders: { url: "${stub.url}/api", retry: { attempts: 2, delay: 1, backoff: fixed } }
  slow: { url: "${stub.url}", timeout: 50ms }
endpoints:
  GET /users/{id}:
    calls:
      user: { request: "GET users /users/\${request.params.id}" }
      orders: { request: "GET orders /orders/\${request.params.id}" }
      extra: { request: GET slow /slow, required: false }
`

async function traced(
  t: TestContext,
  tracing = '',
  env: Record<string, string> = {},
): Promise<{ stub: Stub; collector: Collector; gateway: RunningGateway }> {
  const stub = await stubFor(t)
  routes(stub)
  const collector = await startCollector(t)
  const gateway = await startGateway(t, config(stub, `, tracing: { endpoint: "${collector.url}"${tracing} }`), { env })
  return { stub, collector, gateway }
}

const servers = (spans: ReceivedSpan[]): ReceivedSpan[] => spans.filter((s) => s.kind === SPAN_KIND.SERVER)
const clients = (spans: ReceivedSpan[]): ReceivedSpan[] => spans.filter((s) => s.kind === SPAN_KIND.CLIENT)

/** The one server span; every other span is a client span under it. */
function serverSpan(spans: ReceivedSpan[]): ReceivedSpan {
  const found = servers(spans)
  assert.equal(found.length, 1, `one server span, got ${found.length}`)
  const server = found[0] as ReceivedSpan
  for (const c of clients(spans)) {
    assert.equal(c.traceId, server.traceId, `${c.name} is in the request's trace`)
    assert.equal(c.parentSpanId, server.spanId, `${c.name} is a child of the server span`)
  }
  assert.equal(servers(spans).length + clients(spans).length, spans.length, 'no other spans')
  return server
}

/** Each request a service received names its own try's span as the parent: one span, one request. */
function assertPropagated(stub: Stub, spans: ReceivedSpan[], traceId: string, flags = '01'): void {
  const byId = new Map(clients(spans).map((s) => [s.spanId, s]))
  assert.equal(stub.requests.length, byId.size, 'one client span per request the services received')
  const seen = new Set<string>()
  for (const req of stub.requests) {
    const match = TRACEPARENT.exec(String(req.headers.traceparent))
    assert.ok(match !== null, `${req.url} got a traceparent: ${String(req.headers.traceparent)}`)
    assert.equal(match[1], traceId, `${req.url}: the request's trace id`)
    assert.equal(match[3], flags)
    const span = byId.get(match[2] as string)
    assert.ok(span !== undefined, `${req.url}: its parent id is one of the client spans`)
    assert.equal(span.attributes['url.full'], `${stub.url}${req.url}`, 'the span of that very request')
    assert.ok(!seen.has(span.spanId), 'each try has its own span')
    seen.add(span.spanId)
  }
}

describe('tracing on', () => {
  test("a server span under the client's span, a client span per try, traceparent per try downstream", async (t) => {
    const { stub, collector, gateway } = await traced(t)
    const res = await get(`${gateway.url}/users/42?lang=fr&token=s3cret&Api_Key=k%201&flag`, {
      traceparent: CLIENT_TRACEPARENT,
      tracestate: 'vendor=opaque',
      baggage: 'tenant=acme,plan=gold',
      'user-agent': 'shop-app/3.1',
      'x-request-id': 'req-7',
    })
    assert.equal(res.status, 200)
    assert.equal(res.headers['baton-degraded'], 'extra')
    await gateway.close() // flushes the batch
    const spans = collector.spans

    const server = serverSpan(spans)
    assert.equal(server.traceId, TRACE_ID)
    assert.equal(server.parentSpanId, CLIENT_SPAN_ID)
    assert.equal(server.name, 'GET /users/:id')
    assert.equal(server.serviceName, 'Traced')
    assert.equal(server.status, STATUS.UNSET)
    assert.deepEqual(server.attributes, {
      'http.request.method': 'GET',
      'http.route': '/users/:id',
      'url.scheme': 'http',
      'url.path': '/users/42',
      'url.query': 'lang=fr&token=REDACTED&Api_Key=REDACTED&flag',
      'client.address': '127.0.0.1',
      'user_agent.original': 'shop-app/3.1',
      'http.response.status_code': 200,
      'baton.endpoint': 'GET /users/:id',
      'baton.request_id': 'req-7',
      'baton.outcome': 'partial',
      'baton.degraded': ['extra'],
    })

    const common = (call: string, service: string): Record<string, unknown> => ({
      'http.request.method': 'GET',
      'server.address': '127.0.0.1',
      'server.port': stub.port,
      'baton.endpoint': 'GET /users/:id',
      'baton.call': call,
      'baton.service': service,
    })
    const tries = clients(spans).map((s) => ({ name: s.name, status: s.status, attributes: s.attributes }))
    tries.sort(
      (a, b) => a.name.localeCompare(b.name) || Number(a.attributes['baton.try']) - Number(b.attributes['baton.try']),
    )
    assert.deepEqual(tries, [
      {
        name: 'GET extra',
        status: STATUS.ERROR,
        attributes: {
          ...common('extra', 'slow'),
          'url.full': `${stub.url}/slow`,
          'baton.try': 1,
          'error.type': 'timeout',
        },
      },
      {
        name: 'GET orders',
        status: STATUS.ERROR,
        attributes: {
          ...common('orders', 'orders'),
          'url.full': `${stub.url}/api/orders/42`,
          'baton.try': 1,
          'http.response.status_code': 503,
          'error.type': '503',
        },
      },
      {
        name: 'GET orders',
        status: STATUS.UNSET,
        attributes: {
          ...common('orders', 'orders'),
          'url.full': `${stub.url}/api/orders/42`,
          'baton.try': 2,
          'http.request.resend_count': 1,
          'http.response.status_code': 200,
        },
      },
      {
        name: 'GET user',
        status: STATUS.UNSET,
        attributes: {
          ...common('user', 'users'),
          'url.full': `${stub.url}/users/42`,
          'baton.try': 1,
          'http.response.status_code': 200,
        },
      },
    ])

    assertPropagated(stub, spans, TRACE_ID)
    for (const req of stub.requests) {
      assert.equal(req.headers.tracestate, 'vendor=opaque', `${req.url}: the client's tracestate goes on`)
      assert.equal(req.headers.baggage, 'tenant=acme,plan=gold', `${req.url}: the client's baggage goes on`)
    }
    // http/protobuf by default, the spec's default.
    assert.ok(collector.exports.length > 0)
    assert.ok(collector.exports.every((e) => e.path === '/v1/traces' && e.contentType === 'application/x-protobuf'))
    for (const span of spans) {
      assert.deepEqual(span.scope, { name: 'baton', version: VERSION })
      assert.equal(span.resource['service.version'], VERSION)
      assert.equal(span.resource['telemetry.sdk.language'], 'nodejs')
    }
  })

  test('http/json and grpc, as OTEL_EXPORTER_OTLP_PROTOCOL says; the export headers go as gRPC metadata', async (t) => {
    for (const protocol of ['http/json', 'grpc'] as const) {
      const stub = await stubFor(t)
      routes(stub)
      const collector = protocol === 'grpc' ? await startGrpcCollector(t) : await startCollector(t)
      const tracing = `, tracing: { endpoint: "${collector.url}", headers: { x-api-key: k-2 } }`
      const gateway = await startGateway(t, config(stub, tracing), { env: { OTEL_EXPORTER_OTLP_PROTOCOL: protocol } })
      assert.equal(gateway.plan.tracing?.protocol, protocol)
      await get(`${gateway.url}/users/1`, { traceparent: CLIENT_TRACEPARENT })
      await gateway.close()
      assert.ok(collector.encodings.length > 0, protocol)
      assert.deepEqual(new Set(collector.encodings), new Set([protocol === 'grpc' ? 'grpc' : 'json']))
      for (const e of collector.exports) assert.equal(e.headers['x-api-key'], 'k-2')
      assert.equal(serverSpan(collector.spans).traceId, TRACE_ID)
      assertPropagated(stub, collector.spans, TRACE_ID)
    }
  })

  test('OTEL_EXPORTER_OTLP_ENDPOINT is taken as is over gRPC', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const collector = await startGrpcCollector(t)
    const gateway = await startGateway(t, config(stub, ''), {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.base, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' },
    })
    await get(`${gateway.url}/users/1`)
    await gateway.close()
    assert.deepEqual(new Set(collector.encodings), new Set(['grpc']))
    serverSpan(collector.spans)
  })

  test('OTEL_TRACES_EXPORTER=none: nothing exported, the trace context and baggage still go on', async (t) => {
    const { stub, collector, gateway } = await traced(t, '', { OTEL_TRACES_EXPORTER: 'none' })
    await get(`${gateway.url}/users/1`, { traceparent: CLIENT_TRACEPARENT, baggage: 'tenant=acme' })
    await gateway.close()
    assert.ok(stub.requests.length >= 3)
    for (const req of stub.requests) {
      const match = TRACEPARENT.exec(String(req.headers.traceparent))
      assert.equal(match?.[1], TRACE_ID, req.url)
      assert.equal(req.headers.baggage, 'tenant=acme')
    }
    assert.deepEqual(collector.exports, [])
  })

  test('OTEL_RESOURCE_ATTRIBUTES (read by the SDK) is on the resource; OTEL_SERVICE_VERSION wins for service.version', async (t) => {
    // The SDK's detector reads the process's environment, as the exporter reads its own variables.
    const saved = process.env.OTEL_RESOURCE_ATTRIBUTES
    process.env.OTEL_RESOURCE_ATTRIBUTES = 'deployment.environment.name=staging,service.version=2.3.4,team=web%20shop'
    t.after(() => {
      if (saved === undefined) delete process.env.OTEL_RESOURCE_ATTRIBUTES
      else process.env.OTEL_RESOURCE_ATTRIBUTES = saved
    })
    for (const [env, version] of [
      [{}, '2.3.4'],
      [{ OTEL_SERVICE_VERSION: '9.9.9' }, '9.9.9'],
    ] as const) {
      const { collector, gateway } = await traced(t, '', env)
      await get(`${gateway.url}/users/1`)
      await gateway.close()
      const server = serverSpan(collector.spans)
      assert.equal(server.resource['deployment.environment.name'], 'staging')
      assert.equal(server.resource['team'], 'web shop')
      assert.equal(server.resource['service.version'], version)
      assert.equal(server.serviceName, 'Traced')
    }
  })

  test('credentials in query strings are redacted in url.query and url.full', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /search', () => json([]))
    const collector = await startCollector(t)
    const gateway = await startGateway(
      t,
      `
version: 1
gateway: { name: G, tracing: { endpoint: "${collector.url}" }, auth: { apiKey: { query: my_key, keys: { app: k1 } } } }
services:
  search: { url: "${stub.url}" }
endpoints:
  GET /search:
    calls:
      hits: { request: GET search /search, query: { q: "\${request.query.q}", access_token: t0k, my_key: k1 } }
`,
    )
    const res = await get(`${gateway.url}/search?q=shoes&my_key=k1`)
    assert.equal(res.status, 200)
    await gateway.close()
    assert.equal(stub.requests.length, 1)
    assert.equal(stub.requests[0]?.url, '/search?q=shoes&access_token=t0k&my_key=k1')
    const server = serverSpan(collector.spans)
    assert.equal(server.attributes['url.query'], 'q=shoes&my_key=REDACTED')
    const [call] = clients(collector.spans)
    assert.equal(call?.attributes['url.full'], `${stub.url}/search?q=shoes&access_token=REDACTED&my_key=REDACTED`)
    assert.equal(
      redactQuery('a=1&PassWord=x&pass+word=y&p%61ssword=z&=v&token&sig=', new Set(['password', 'sig'])),
      'a=1&PassWord=REDACTED&pass+word=y&p%61ssword=REDACTED&=v&token&sig=REDACTED',
    )
  })

  test('without a traceparent from the client, a new trace starts at the gateway', async (t) => {
    const { stub, collector, gateway } = await traced(t)
    const res = await get(`${gateway.url}/users/1`)
    assert.equal(res.status, 200)
    await gateway.close()
    const server = serverSpan(collector.spans)
    assert.equal(server.parentSpanId, '')
    assert.match(server.traceId, /^[0-9a-f]{32}$/)
    assert.notEqual(server.traceId, '0'.repeat(32))
    assertPropagated(stub, collector.spans, server.traceId)
  })

  test('a malformed traceparent is ignored: a new trace', async (t) => {
    const { collector, gateway } = await traced(t)
    await get(`${gateway.url}/users/1`, { traceparent: `00-${'0'.repeat(32)}-${CLIENT_SPAN_ID}-01` })
    await gateway.close()
    const server = serverSpan(collector.spans)
    assert.equal(server.parentSpanId, '')
    assert.notEqual(server.traceId, '0'.repeat(32))
  })

  test('sampleRatio 0: new traces are not recorded but still propagated unsampled; a sampled client is followed', async (t) => {
    const { stub, collector, gateway } = await traced(t, ', sampleRatio: 0')
    await get(`${gateway.url}/users/1`)
    for (const req of stub.requests) assert.match(String(req.headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
    const unsampled = stub.requests.length
    await get(`${gateway.url}/users/1`, { traceparent: CLIENT_TRACEPARENT })
    await gateway.close()
    assert.ok(
      collector.spans.every((s) => s.traceId === TRACE_ID),
      'only the sampled trace is exported',
    )
    serverSpan(collector.spans)
    stub.requests.splice(0, unsampled)
    assertPropagated(stub, collector.spans, TRACE_ID)
  })

  test("the trace id is on the request's log lines", async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const collector = await startCollector(t)
    const lines: Record<string, unknown>[] = []
    const logger = pino(
      { base: null },
      {
        write: (line: string) => {
          lines.push(JSON.parse(line) as Record<string, unknown>)
        },
      },
    )
    const gateway = await startGateway(t, config(stub, `, tracing: { endpoint: "${collector.url}" }`), { logger })
    await get(`${gateway.url}/users/1`, { traceparent: CLIENT_TRACEPARENT, 'x-request-id': 'req-9' })
    const mine = lines.filter((l) => l.requestId === 'req-9')
    assert.deepEqual(
      mine.map((l) => [l.event, l.traceId]),
      [
        ['call_failed', TRACE_ID],
        ['request', TRACE_ID],
      ],
    )
    assert.ok(
      lines.some((l) => l.event === 'tracing' && l.collector === collector.url && l.endpoint === undefined),
      'the start-up line names the collector (endpoint is an endpoint label in every line)',
    )
    await gateway.close()
  })

  test('failed exports are logged once, not at every batch, and do not fail the close', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const collector = await startCollector(t)
    collector.failWith = 400 // not retried by the exporter, so the test does not wait out its backoff
    const lines: Record<string, unknown>[] = []
    const logger = pino(
      { base: null, level: 'warn' },
      {
        write: (line: string) => {
          lines.push(JSON.parse(line) as Record<string, unknown>)
        },
      },
    )
    const gateway = await startGateway(t, config(stub, `, tracing: { endpoint: "${collector.url}" }`), { logger })
    await get(`${gateway.url}/users/1`)
    await gateway.close()
    assert.ok(collector.exports.length > 0)
    const warnings = lines.filter((l) => l.event === 'tracing')
    assert.equal(warnings.length, 1)
    assert.match(String(warnings[0]?.msg), new RegExp(`^traces cannot be exported to ${collector.url}`))
  })

  test('the SDK is loaded only by a gateway that traces', async () => {
    // A child process: this one has loaded OpenTelemetry for the tests above. (prom-client loads @opentelemetry/api itself, for exemplars.)
    const src = (file: string): string => new URL(`../src/${file}`, import.meta.url).href
    const script = `
      import { createRequire } from 'node:module'
      import { compileText } from '${src('plan/compile.ts')}'
      import { createGateway } from '${src('server/gateway.ts')}'
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((m) => /@opentelemetry\\/(sdk-trace|exporter-trace-otlp-(http|proto))\\//.test(m))
      const report = []
      for (const tracing of ['false', '{ endpoint: "http://127.0.0.1:9/v1/traces" }']) {
        const { plan } = compileText('t.yaml', 'version: 1\\ngateway: { name: G, tracing: ' + tracing + ' }', { env: {} })
        const gateway = createGateway(plan)
        await gateway.listen({ port: 0, host: '127.0.0.1' })
        report.push(loaded())
        await gateway.close()
      }
      console.log(JSON.stringify(report))
    `
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: new URL('..', import.meta.url),
    })
    assert.deepEqual(JSON.parse(stdout), [false, true])
  })

  test('export headers (with ${env.…}) and the service name', async (t) => {
    const { collector, gateway } = await traced(
      t,
      ', serviceName: checkout-bff, headers: { x-api-key: "${env.OTLP_KEY}" }',
      { OTLP_KEY: 'k-1' },
    )
    await get(`${gateway.url}/users/1`)
    await gateway.close()
    assert.ok(collector.exports.length > 0)
    for (const e of collector.exports) assert.equal(e.headers['x-api-key'], 'k-1')
    assert.ok(collector.spans.length > 0)
    assert.ok(collector.spans.every((s) => s.serviceName === 'checkout-bff'))
  })

  test('OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on without a tracing key; OTEL_SERVICE_NAME names it', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const collector = await startCollector(t)
    const gateway = await startGateway(t, config(stub, ''), {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.base, OTEL_SERVICE_NAME: 'from-env' },
    })
    await get(`${gateway.url}/users/1`)
    await gateway.close()
    const server = serverSpan(collector.spans)
    assert.equal(server.serviceName, 'from-env')
    assertPropagated(stub, collector.spans, server.traceId)
  })

  test("answers without a run of their own have a server span in their client's trace: a shared run's waiters link to its span; a cache hit", async (t) => {
    const stub = await stubFor(t)
    const held = gate()
    stub.route('GET /items/:id', held.hold(json({ id: 1 })))
    const collector = await startCollector(t)
    const { logger, lines } = captureLog()
    const gateway = await startGateway(
      t,
      `
version: 1
gateway: { name: Shared, tracing: { endpoint: "${collector.url}" } }
services:
  items: { url: "${stub.url}" }
endpoints:
  GET /shared/{id}:
    calls:
      item: { request: "GET items /items/\${request.params.id}" }
  GET /cached/{id}:
    cache: { ttl: 60s }
    calls:
      item: { request: "GET items /items/\${request.params.id}" }
  GET /checked/{id}:
    validate:
      params: { properties: { id: { type: integer } } }
    calls:
      item: { request: "GET items /items/\${request.params.id}" }
`,
      { logger },
    )
    const url = gateway.url
    // Three clients, each in a trace of its own, ask for the same answer at once: one run, two waiters.
    const parent = (i: number): string => `00-${String(i).repeat(32)}-${String(i).repeat(16)}-01`
    const first = get(`${url}/shared/1`, { traceparent: parent(1) })
    await eventually(() => stub.requestsTo('GET /items/:id').length === 1, 'the run reached the service')
    const others = [2, 3].map((i) => get(`${url}/shared/1`, { traceparent: parent(i) }))
    const coalesced = 'baton_coalesced_requests_total{method="GET",route="/shared/:id"}'
    for (let i = 0; i < 500 && (await metricValue(url, coalesced)) !== 2; i++) await sleep(10)
    held.open()
    const answers = await Promise.all([first, ...others])
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 200],
    )
    // A miss, then a hit; a 404 and the health check, which are not traced.
    for (let i = 4; i <= 5; i++) assert.equal((await get(`${url}/cached/1`, { traceparent: parent(i) })).status, 200)
    // Turned away before any run: a 400.
    assert.equal((await get(`${url}/checked/abc`, { traceparent: parent(8) })).status, 400)
    assert.equal((await get(`${url}/nothing`, { traceparent: parent(6) })).status, 404)
    assert.equal((await get(`${url}/health`, { traceparent: parent(7) })).status, 200)
    await gateway.close()

    const spans = servers(collector.spans)
    assert.deepEqual(
      spans.map((s) => s.traceId).sort(),
      [1, 2, 3, 4, 5, 8].map((i) => String(i).repeat(32)),
    )
    const byTrace = (i: number): ReceivedSpan => spans.find((s) => s.traceId === String(i).repeat(32)) as ReceivedSpan
    const run = byTrace(1)
    assert.equal(run.name, 'GET /shared/:id')
    assert.equal(
      clients(collector.spans).filter((c) => c.parentSpanId === run.spanId).length,
      1,
      'the call is the run’s',
    )
    for (const i of [2, 3]) {
      const waiter = byTrace(i)
      assert.equal(waiter.name, 'GET /shared/:id')
      assert.equal(waiter.parentSpanId, String(i).repeat(16))
      assert.deepEqual(waiter.links, [{ traceId: run.traceId, spanId: run.spanId }])
      assert.deepEqual(waiter.attributes, {
        'http.request.method': 'GET',
        'http.route': '/shared/:id',
        'baton.endpoint': 'GET /shared/:id',
        'baton.request_id': answers[i - 1]?.headers['x-request-id'],
        'http.response.status_code': 200,
        'baton.outcome': 'complete',
        'baton.shared_run': run.attributes['baton.request_id'],
      })
      assert.equal(clients(collector.spans).filter((c) => c.parentSpanId === waiter.spanId).length, 0)
      // Its log line names its own span, as a run's line does.
      const line = lines.find((l) => l.event === 'request' && l.requestId === waiter.attributes['baton.request_id'])
      assert.deepEqual(
        [line?.traceId, line?.spanId, line?.sharedRun],
        [waiter.traceId, waiter.spanId, run.attributes['baton.request_id']],
      )
    }
    const hit = byTrace(5)
    assert.equal(hit.name, 'GET /cached/:id')
    assert.equal(hit.parentSpanId, '5'.repeat(16))
    assert.deepEqual(hit.links, [])
    assert.equal(hit.attributes['http.response.status_code'], 200)
    assert.equal(byTrace(4).attributes['baton.request_id'] !== hit.attributes['baton.request_id'], true)
    const refused = byTrace(8)
    assert.deepEqual(
      [refused.name, refused.status, refused.attributes['http.response.status_code']],
      ['GET /checked/:id', STATUS.UNSET, 400],
    )
    assert.deepEqual(
      [refused.attributes['baton.error_code'], refused.attributes['baton.outcome']],
      ['VALIDATION_FAILED', 'failed'],
    )
  })

  test('two gateways in one process keep their spans apart', async (t) => {
    const a = await traced(t, ', serviceName: a')
    const b = await traced(t, ', serviceName: b')
    await get(`${a.gateway.url}/users/1`)
    await get(`${b.gateway.url}/users/2`)
    await get(`${b.gateway.url}/users/3`)
    await Promise.all([a.gateway.close(), b.gateway.close()])
    assert.equal(servers(a.collector.spans).length, 1)
    assert.equal(servers(b.collector.spans).length, 2)
    assert.ok(a.collector.spans.every((s) => s.serviceName === 'a'))
    assert.ok(b.collector.spans.every((s) => s.serviceName === 'b'))
  })
})

describe('tracing off', () => {
  for (const [what, tracing, env] of [
    ['by default', '', (_c: Collector) => ({})],
    [
      'tracing: false, even with OTEL_EXPORTER_OTLP_ENDPOINT set',
      ', tracing: false',
      (c: Collector) => ({ OTEL_EXPORTER_OTLP_ENDPOINT: c.base }),
    ],
  ] as const) {
    test(`${what}: no traceparent downstream (not even the client's), nothing exported`, async (t) => {
      const stub = await stubFor(t)
      routes(stub)
      const collector = await startCollector(t)
      const gateway = await startGateway(t, config(stub, tracing), { env: env(collector) })
      assert.equal(gateway.plan.tracing, null)
      const res = await get(`${gateway.url}/users/1`, { traceparent: CLIENT_TRACEPARENT })
      assert.equal(res.status, 200)
      await gateway.close()
      assert.ok(stub.requests.length >= 3)
      for (const req of stub.requests) {
        assert.equal(req.headers.traceparent, undefined)
        assert.equal(req.headers.tracestate, undefined)
      }
      assert.deepEqual(collector.exports, [])
    })
  }
})

describe('tracing config', () => {
  const DEFAULTS = {
    exporters: ['otlp'],
    protocol: 'http/protobuf',
    serviceVersion: null,
    redactedQuery: [...REDACTED_QUERY],
  }
  const plan = (gateway: string, env: Record<string, string> = {}): unknown =>
    compileText('test.yaml', `version: 1\ngateway: { name: G${gateway} }\n`, { env }).plan.tracing

  test('the file wins over the environment; the environment over the defaults', () => {
    assert.deepEqual(plan(', tracing: {}'), {
      ...DEFAULTS,
      endpoint: 'http://localhost:4318/v1/traces',
      serviceName: 'G',
      headers: {},
      sampleRatio: 1,
      parentBased: true,
    })
    assert.deepEqual(plan('', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }), {
      ...DEFAULTS,
      endpoint: 'http://collector:4318/v1/traces',
      serviceName: 'G',
      headers: {},
      sampleRatio: 1,
      parentBased: true,
    })
    assert.deepEqual(
      plan('', {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example/otlp',
        OTEL_SERVICE_NAME: 'bff',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
      }),
      {
        ...DEFAULTS,
        endpoint: 'https://traces.example/otlp',
        serviceName: 'bff',
        headers: {},
        sampleRatio: 0.25,
        parentBased: true,
      },
    )
    assert.deepEqual(
      plan(', tracing: { endpoint: "http://mine:4318/v1/traces", serviceName: mine, sampleRatio: 0.5 }', {
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example/otlp',
        OTEL_SERVICE_NAME: 'bff',
        OTEL_TRACES_SAMPLER: 'traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
      }),
      {
        ...DEFAULTS,
        endpoint: 'http://mine:4318/v1/traces',
        serviceName: 'mine',
        headers: {},
        sampleRatio: 0.5,
        parentBased: true,
      },
    )
    assert.deepEqual(plan('', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_SAMPLER: 'always_off' }), {
      ...DEFAULTS,
      endpoint: 'http://c:4318/v1/traces',
      serviceName: 'G',
      headers: {},
      sampleRatio: 0,
      parentBased: false,
    })
  })

  test('the OTLP protocol and the exporters from the environment', () => {
    const only = (tracing: unknown): unknown => {
      const { exporters, protocol, endpoint } = tracing as Record<string, unknown>
      return { exporters, protocol, endpoint }
    }
    assert.deepEqual(
      only(plan('', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' })),
      {
        exporters: ['otlp'],
        protocol: 'http/json',
        endpoint: 'http://c:4318/v1/traces',
      },
    )
    // Over gRPC the base URL is the endpoint, and the default is port 4317; the …_TRACES_ form wins.
    assert.deepEqual(
      only(
        plan('', {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
          OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc',
        }),
      ),
      { exporters: ['otlp'], protocol: 'grpc', endpoint: 'http://c:4317' },
    )
    assert.deepEqual(only(plan(', tracing: {}', { OTEL_EXPORTER_OTLP_PROTOCOL: 'GRPC' })), {
      exporters: ['otlp'],
      protocol: 'grpc',
      endpoint: 'http://localhost:4317',
    })
    assert.deepEqual(only(plan('', { OTEL_TRACES_EXPORTER: 'console' })), {
      exporters: ['console'],
      protocol: 'http/protobuf',
      endpoint: 'http://localhost:4318/v1/traces',
    })
    assert.deepEqual(only(plan(', tracing: {}', { OTEL_TRACES_EXPORTER: 'otlp, console,otlp' })), {
      exporters: ['otlp', 'console'],
      protocol: 'http/protobuf',
      endpoint: 'http://localhost:4318/v1/traces',
    })
    assert.deepEqual((plan(', tracing: {}', { OTEL_TRACES_EXPORTER: 'none' }) as Record<string, unknown>).exporters, [])
    // Nothing asks for traces: an endpoint with OTEL_TRACES_EXPORTER=none, and no tracing key.
    assert.equal(plan('', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }), null)
  })

  test('a protocol or an exporter Baton does not have is a warning, and the default is used', () => {
    const { plan: compiled, diagnostics } = compileText(
      'test.yaml',
      'version: 1\ngateway: { name: G, tracing: {} }\n',
      {
        env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'http', OTEL_TRACES_EXPORTER: 'zipkin,console' },
      },
    )
    assert.deepEqual(
      diagnostics.map((d) => [d.severity, d.code, d.path.join('.'), d.message]),
      [
        [
          'warning',
          'BATON_INVALID_ENV',
          'gateway.tracing',
          'OTEL_TRACES_EXPORTER=zipkin,console: zipkin is not an exporter Baton has; otlp is used',
        ],
        [
          'warning',
          'BATON_INVALID_ENV',
          'gateway.tracing',
          'OTEL_EXPORTER_OTLP_PROTOCOL=http is not an OTLP protocol Baton speaks; http/protobuf is used',
        ],
      ],
    )
    assert.equal(compiled.tracing?.protocol, 'http/protobuf')
    assert.deepEqual(compiled.tracing?.exporters, ['otlp'])
  })

  test("the API key's query parameter is redacted too", () => {
    const tracing = plan(', tracing: {}, auth: { apiKey: { query: X-Key, keys: { app: k1 } } }') as {
      redactedQuery: string[]
    }
    assert.ok(tracing.redactedQuery.includes('x-key'))
    assert.ok(tracing.redactedQuery.includes('access_token'))
    assert.equal((plan(', tracing: {}') as { redactedQuery: string[] }).redactedQuery.includes('x-key'), false)
  })

  test('off: no key and no endpoint in the environment, tracing: false, or OTEL_SDK_DISABLED', () => {
    assert.equal(plan(''), null)
    assert.equal(plan('', { OTEL_EXPORTER_OTLP_ENDPOINT: '' }), null)
    assert.equal(plan(', tracing: false', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }), null)
    assert.equal(plan(', tracing: {}', { OTEL_SDK_DISABLED: 'true' }), null)
  })

  test('a bad endpoint is a config error; a sampler Baton does not know, a warning', () => {
    assert.throws(
      () => plan(', tracing: { endpoint: "collector:4318" }'),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.diagnostics.some((d) => d.code === 'BATON_INVALID_URL' && d.path.join('.') === 'gateway.tracing.endpoint'),
    )
    assert.throws(
      () => plan('', { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'nope' }),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.diagnostics.some(
          (d) => d.code === 'BATON_INVALID_URL' && /OTEL_EXPORTER_OTLP_TRACES_ENDPOINT/.test(d.message),
        ),
    )
    assert.throws(() => plan(', tracing: { sampleRatio: 2 }'), ConfigError)
    const { plan: compiled, diagnostics } = compileText(
      'test.yaml',
      'version: 1\ngateway: { name: G, tracing: {} }\n',
      { env: { OTEL_TRACES_SAMPLER: 'sometimes', OTEL_TRACES_SAMPLER_ARG: 'x' } },
    )
    assert.deepEqual(
      diagnostics.map((d) => [d.severity, d.code]),
      [['warning', 'BATON_INVALID_ENV']],
    )
    assert.equal(compiled.tracing?.sampleRatio, 1)
  })
})

/** Request logs and Server-Timing: what a request leaves behind. */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { compileText } from '../src/plan/compile.ts'
import { createGateway } from '../src/server/gateway.ts'
import { post, stubFor } from './helpers/gateway.ts'
import { json, type Stub } from './helpers/stub.ts'
import { captureLog } from './helpers/log.ts'
import { type ReceivedSpan, SPAN_KIND, startCollector } from './helpers/otlp.ts'

const yaml = (stub: Stub, gateway = ''): string => `
version: 1
gateway: { name: Observed${gateway} }
services:
  cart: { url: "${stub.url}" }
  shipping: { url: "${stub.url}" }
endpoints:
  POST /summary:
    calls:
      cart: { request: "GET cart /carts/\${request.body.cartId}" }
      shipping: { request: POST shipping /estimate, body: { items: "\${cart.items}" }, required: false }
`

async function start(
  t: TestContext,
  text: string,
  level = 'info',
  schema: Parameters<typeof captureLog>[1] = {},
): Promise<{ url: string; lines: Record<string, unknown>[] }> {
  const { logger, lines } = captureLog(level, schema)
  const { plan } = compileText('test.yaml', text, { env: {} })
  const gateway = createGateway(plan, { logger })
  t.after(() => gateway.close())
  const { url } = await gateway.listen({ port: 0, host: '127.0.0.1' })
  return { url, lines }
}

function shopStub(stub: Stub, shippingStatus = 200): void {
  stub.route('GET /carts/:id', json({ items: [1, 2] }))
  stub.route('POST /estimate', json({ options: [] }, { status: shippingStatus }))
}

describe('Server-Timing', () => {
  test('off by default', async (t) => {
    const stub = await stubFor(t)
    shopStub(stub)
    const { url } = await start(t, yaml(stub))
    const res = await post(`${url}/summary`, { cartId: 'c1' })
    assert.equal(res.status, 200)
    assert.equal(res.headers['server-timing'], undefined)
  })

  test('each call in plan order with its duration, a failed one with why, then the total', async (t) => {
    const stub = await stubFor(t)
    shopStub(stub, 503)
    const { url } = await start(t, yaml(stub, ', serverTiming: true'))
    const res = await post(`${url}/summary`, { cartId: 'c1' })
    assert.equal(res.status, 200)
    assert.match(
      res.headers['server-timing'] ?? '',
      /^cart;dur=\d+\.\d, shipping;desc="503";dur=\d+\.\d, total;dur=\d+\.\d$/,
    )
    const [cart, shipping, total] = (res.headers['server-timing'] ?? '')
      .split(', ')
      .map((m) => Number(/dur=([\d.]+)/.exec(m)?.[1]))
    assert.ok((total ?? 0) >= (cart ?? Infinity) && (total ?? 0) >= (shipping ?? Infinity), 'the total spans the calls')
  })
})

describe('request logs', () => {
  test('one info line per request and one warn line per failed call, all with the request id', async (t) => {
    const stub = await stubFor(t)
    shopStub(stub, 503)
    const { url, lines } = await start(t, yaml(stub))
    const res = await post(`${url}/summary`, { cartId: 'c1' }, { 'x-request-id': 'req-42' })
    assert.equal(res.status, 200)
    const mine = lines.filter((l) => l.requestId === 'req-42')
    assert.deepEqual(
      mine.map((l) => [l.level, l.event]),
      [
        ['warn', 'call_failed'],
        ['info', 'request'],
      ],
    )
    const [failed, request] = mine as [Record<string, unknown>, Record<string, unknown>]
    assert.deepEqual(
      { ...failed, time: 0 },
      {
        level: 'warn',
        time: 0,
        event: 'call_failed',
        requestId: 'req-42',
        endpoint: 'POST /summary',
        call: 'shipping',
        service: 'shipping',
        kind: 'status',
        status: 503,
        required: false,
        msg: '  ✗ shipping: answered 503, fell back',
      },
    )
    // The request line's schema, key by key and in order. One spelling of the endpoint on every line: its label.
    assert.equal(typeof request.time, 'number')
    assert.equal(typeof request.durationMs, 'number')
    assert.match(String(request.msg), /^POST \/summary 200 \d+\.\dms partial \(shipping\)$/)
    assert.deepEqual(
      { ...request, time: 0, durationMs: 0, msg: '' },
      {
        level: 'info',
        time: 0,
        event: 'request',
        requestId: 'req-42',
        endpoint: 'POST /summary',
        status: 200,
        outcome: 'partial',
        durationMs: 0,
        failed: ['shipping'],
        degraded: ['shipping'],
        msg: '',
      },
    )
    assert.deepEqual(Object.keys(request), [
      'level',
      'time',
      'event',
      'requestId',
      'endpoint',
      'status',
      'outcome',
      'durationMs',
      'failed',
      'degraded',
      'msg',
    ])
  })

  test('a failed request: outcome failed, the required call named', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /carts/:id', json({ error: 'down' }, { status: 500 }))
    const { url, lines } = await start(t, yaml(stub))
    const res = await post(`${url}/summary`, { cartId: 'c1' }, { 'x-request-id': 'req-43' })
    assert.equal(res.status, 502)
    const request = lines.find((l) => l.event === 'request' && l.requestId === 'req-43')
    assert.equal(request?.outcome, 'failed')
    assert.equal(request?.status, 502)
    assert.deepEqual(request?.failed, ['cart'])
    assert.equal(lines.find((l) => l.event === 'call_failed' && l.requestId === 'req-43')?.required, true)
  })

  test('accessLog: false keeps failed calls and drops the line per request', async (t) => {
    const stub = await stubFor(t)
    shopStub(stub, 503)
    const { url, lines } = await start(t, yaml(stub, ', accessLog: false'))
    await post(`${url}/summary`, { cartId: 'c1' })
    assert.deepEqual(
      lines.map((l) => l.event),
      ['call_failed'],
    )
  })

  test('at level warn only failed calls are logged', async (t) => {
    const stub = await stubFor(t)
    shopStub(stub, 503)
    const { url, lines } = await start(t, yaml(stub), 'warn')
    await post(`${url}/summary`, { cartId: 'c1' })
    await post(`${url}/summary`, { cartId: 'c2' })
    assert.deepEqual(
      lines.map((l) => l.event),
      ['call_failed', 'call_failed'],
    )
  })

  test('logTime: iso writes the time as an ISO 8601 string', async (t) => {
    const stub = await stubFor(t)
    shopStub(stub)
    const { url, lines } = await start(t, yaml(stub), 'info', { time: 'iso' })
    const before = Date.now()
    await post(`${url}/summary`, { cartId: 'c1' }, { 'x-request-id': 'req-iso' })
    const line = lines.find((l) => l.requestId === 'req-iso')
    assert.match(String(line?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    assert.ok(Date.parse(String(line?.time)) >= before - 1, 'the time of the request, not some other')
    assert.equal(line?.level, 'info')
  })

  test("each of a traced request's lines carries its trace id and its server span's id", async (t) => {
    const stub = await stubFor(t)
    shopStub(stub, 503)
    const collector = await startCollector(t)
    const { logger, lines } = captureLog()
    const { plan } = compileText('test.yaml', yaml(stub, `, tracing: { endpoint: "${collector.url}" }`), { env: {} })
    const gateway = createGateway(plan, { logger })
    t.after(() => gateway.close())
    const { url } = await gateway.listen({ port: 0, host: '127.0.0.1' })
    await post(`${url}/summary`, { cartId: 'c1' }, { 'x-request-id': 'req-traced' })
    // Closing exports the spans still buffered.
    await gateway.close()
    const servers = collector.spans.filter((s) => s.kind === SPAN_KIND.SERVER)
    assert.equal(servers.length, 1)
    const server = servers[0] as ReceivedSpan
    const mine = lines.filter((l) => l.requestId === 'req-traced')
    assert.deepEqual(
      mine.map((l) => [l.event, l.traceId, l.spanId]),
      [
        ['call_failed', server.traceId, server.spanId],
        ['request', server.traceId, server.spanId],
      ],
    )
    // Next to each other, after the request id.
    const keys = Object.keys(mine[1] as object)
    assert.deepEqual(keys.slice(keys.indexOf('requestId'), keys.indexOf('requestId') + 4), [
      'requestId',
      'traceId',
      'spanId',
      'endpoint',
    ])
  })
})

describe('logFormat: ecs', () => {
  test("the request and failed-call lines in the Elastic Common Schema, Baton's own fields under baton.", async (t) => {
    const stub = await stubFor(t)
    shopStub(stub, 503)
    const { url, lines } = await start(t, yaml(stub), 'info', { format: 'ecs', service: 'Observed' })
    await post(`${url}/summary`, { cartId: 'c1' }, { 'x-request-id': 'req-ecs' })
    const mine = lines.filter((l) => l['http.request.id'] === 'req-ecs')
    assert.equal(mine.length, 2)
    const [failed, request] = mine as [Record<string, unknown>, Record<string, unknown>]
    assert.match(String(request['@timestamp']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    const duration = request['event.duration']
    assert.ok(Number.isInteger(duration) && (duration as number) > 0, 'event.duration: nanoseconds')
    assert.match(String(request.message), /^POST \/summary 200 \d+\.\dms partial \(shipping\)$/)
    assert.deepEqual(
      { ...request, '@timestamp': '', 'event.duration': 0, message: '' },
      {
        'log.level': 'info',
        '@timestamp': '',
        'ecs.version': '8.10.0',
        'service.name': 'Observed',
        'event.dataset': 'Observed',
        'event.action': 'request',
        'http.request.id': 'req-ecs',
        'baton.endpoint': 'POST /summary',
        'http.response.status_code': 200,
        'baton.outcome': 'partial',
        'event.duration': 0,
        'baton.failed': ['shipping'],
        'baton.degraded': ['shipping'],
        message: '',
      },
    )
    // A failed call's status is the service's, not the answer's: it stays Baton's.
    assert.deepEqual(
      { ...failed, '@timestamp': '' },
      {
        'log.level': 'warn',
        '@timestamp': '',
        'ecs.version': '8.10.0',
        'service.name': 'Observed',
        'event.dataset': 'Observed',
        'event.action': 'call_failed',
        'http.request.id': 'req-ecs',
        'baton.endpoint': 'POST /summary',
        'baton.call': 'shipping',
        'baton.service': 'shipping',
        'baton.kind': 'status',
        'baton.status': 503,
        'baton.required': false,
        message: '  ✗ shipping: answered 503, fell back',
      },
    )
  })

  test('an error logged as a message goes to error.message; an Error to error.type, .message, .stack_trace', () => {
    const { logger, lines } = captureLog('info', { format: 'ecs', service: 'Observed' })
    logger.error({ event: 'reload_failed', err: 'no such file' }, 'reload failed')
    logger.error({ event: 'unexpected_error', err: new TypeError('boom') }, 'unexpected error')
    assert.deepEqual(
      lines.map((l) => [
        l['log.level'],
        l['event.action'],
        l['error.message'],
        l.error === undefined ? null : Object.keys(l.error as object),
      ]),
      [
        ['error', 'reload_failed', 'no such file', null],
        ['error', 'unexpected_error', undefined, ['type', 'message', 'stack_trace']],
      ],
    )
    assert.deepEqual(
      [(lines[1]?.error as { type: string }).type, (lines[1]?.error as { message: string }).message],
      ['TypeError', 'boom'],
    )
  })
})

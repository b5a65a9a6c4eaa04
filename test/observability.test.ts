/** Request logs and Server-Timing: what a request leaves behind. */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { pino } from 'pino'
import { compileText } from '../src/plan/compile.ts'
import { createGateway } from '../src/server/gateway.ts'
import { post, stubFor } from './helpers/gateway.ts'
import { json, type Stub } from './helpers/stub.ts'

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
): Promise<{ url: string; lines: Record<string, unknown>[] }> {
  const lines: Record<string, unknown>[] = []
  const logger = pino(
    { base: null, level },
    {
      write: (line: string) => {
        lines.push(JSON.parse(line) as Record<string, unknown>)
      },
    },
  )
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
        [40, 'call_failed'],
        [30, 'request'],
      ],
    )
    const [failed, request] = mine as [Record<string, unknown>, Record<string, unknown>]
    assert.deepEqual(
      { ...failed, time: 0 },
      {
        level: 40,
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
    // One spelling of the endpoint on every line: its label.
    assert.equal(request.endpoint, 'POST /summary')
    assert.equal(request.status, 200)
    assert.equal(request.outcome, 'partial')
    assert.deepEqual(request.failed, ['shipping'])
    assert.deepEqual(request.degraded, ['shipping'])
    assert.equal(typeof request.durationMs, 'number')
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
})

/**
 * Nothing unseen: every answer the gateway writes — fastify's own 400/404/413/415, a path the
 * router cannot take, a request turned away at the edge, a CORS preflight, /health,
 * /health/ready, /metrics, an error before a request exists — carries x-request-id, is
 * counted in baton_requests_total and leaves one access-log line, under a bounded label.
 */
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { describe, test, type TestContext } from 'node:test'
import { compileText } from '../src/plan/compile.ts'
import { createGateway } from '../src/server/gateway.ts'
import { type ClientResponse, get, post, rawRequest, stubFor } from './helpers/gateway.ts'
import { json, type Stub } from './helpers/stub.ts'
import { captureLog } from './helpers/log.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const yaml = (stub: Stub, gateway = ''): string => `
version: 1
gateway: { name: Answers, basePath: /v1, bodyLimit: 64${gateway} }
services:
  cart: { url: "${stub.url}" }
endpoints:
  POST /carts/{id}:
    calls:
      cart: { request: "GET cart /carts/\${request.params.id}" }
  GET /carts/{id}:
    calls:
      cart: { request: "GET cart /carts/\${request.params.id}" }
`

type Line = Record<string, unknown>

interface Running {
  readonly url: string
  readonly metricsUrl: string | null
  readonly lines: Line[]
}

async function start(t: TestContext, text: string, env: Record<string, string> = {}): Promise<Running> {
  const { logger, lines } = captureLog()
  const { plan } = compileText('test.yaml', text, { env })
  const gateway = createGateway(plan, { logger })
  t.after(() => gateway.close())
  const { url, metricsUrl } = await gateway.listen({ port: 0, host: '127.0.0.1' })
  return { url, metricsUrl, lines }
}

async function scrape(metricsUrl: string | null): Promise<string> {
  const res = await fetch(metricsUrl as string)
  assert.equal(res.status, 200)
  return await res.text()
}

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

/** The one access-log line of the answer with this request id (there must be exactly one). */
function lineOf(lines: readonly Line[], res: ClientResponse): Line {
  const id = res.headers['x-request-id']
  const mine = lines.filter((l) => l.requestId === id)
  assert.equal(mine.length, 1, `one line for request ${String(id)}, got ${JSON.stringify(mine)}`)
  const line = mine[0] as Line
  assert.equal(typeof line.durationMs, 'number')
  return { ...line, durationMs: 0 }
}

describe('answers fastify writes before an endpoint runs are counted and logged', () => {
  test('400 INVALID_JSON, 413 and 415 on an endpoint: under its label, with their code', async (t) => {
    const stub = await stubFor(t)
    const { url, metricsUrl, lines } = await start(t, yaml(stub))
    const invalid = await post(`${url}/v1/carts/c1`, '{"cartId":', { 'x-request-id': 'bad-json-1' })
    const large = await post(`${url}/v1/carts/c1`, { pad: 'x'.repeat(100) })
    const media = await post(`${url}/v1/carts/c1`, 'hello', { 'content-type': 'text/plain' })
    assert.deepEqual([invalid.status, large.status, media.status], [400, 413, 415])
    assert.equal(invalid.headers['x-request-id'], 'bad-json-1')
    const base = {
      level: 'info',
      time: 0,
      event: 'request',
      endpoint: 'POST /v1/carts/:id',
      outcome: 'failed',
      durationMs: 0,
    }
    assert.deepEqual(
      { ...lineOf(lines, invalid), time: 0, msg: '' },
      { ...base, requestId: 'bad-json-1', status: 400, code: 'INVALID_JSON', msg: '' },
    )
    assert.match(
      String(lines.find((l) => l.requestId === 'bad-json-1')?.msg),
      /^POST \/v1\/carts\/:id 400 \d+\.\dms INVALID_JSON$/,
    )
    assert.deepEqual(
      { ...lineOf(lines, large), time: 0, msg: '' },
      { ...base, requestId: large.headers['x-request-id'], status: 413, code: 'PAYLOAD_TOO_LARGE', msg: '' },
    )
    assert.deepEqual(
      { ...lineOf(lines, media), time: 0, msg: '' },
      { ...base, requestId: media.headers['x-request-id'], status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', msg: '' },
    )
    const text = await scrape(metricsUrl)
    assert.equal(
      value(text, 'baton_requests_total{method="POST",route="/v1/carts/:id",status_class="4xx",outcome="failed"}'),
      3,
    )
    // Not runs: the histogram of orchestrated requests does not see them.
    assert.equal(
      value(text, 'baton_request_duration_seconds_count{method="POST",route="/v1/carts/:id",outcome="failed"}'),
      0,
    )
    assert.equal(stub.requests.length, 0)
  })

  test('404: endpoint "unmatched", the method and path in the log line only, never a label', async (t) => {
    const stub = await stubFor(t)
    const { url, metricsUrl, lines } = await start(t, yaml(stub))
    const paths = Array.from({ length: 20 }, (_, i) => `/v1/nope/${i}/${Math.random().toString(36).slice(2)}`)
    const answers: ClientResponse[] = []
    for (const path of paths) answers.push(await get(`${url}${path}?api_key=secret`))
    assert.ok(answers.every((r) => r.status === 404))
    const first = answers[0] as ClientResponse
    assert.match(first.headers['x-request-id'] ?? '', UUID)
    assert.deepEqual(
      { ...lineOf(lines, first), time: 0, msg: '' },
      {
        level: 'info',
        time: 0,
        event: 'request',
        requestId: first.headers['x-request-id'],
        endpoint: 'unmatched',
        method: 'GET',
        path: paths[0],
        status: 404,
        outcome: 'failed',
        durationMs: 0,
        code: 'NOT_FOUND',
        msg: '',
      },
    )
    assert.match(
      String(lines.find((l) => l.requestId === first.headers['x-request-id'])?.msg),
      /^unmatched GET \/v1\/nope\/0\/\w+ 404 \d+\.\dms NOT_FOUND$/,
    )
    assert.ok(!lines.some((l) => JSON.stringify(l).includes('secret')), 'the query string is never logged')
    const text = await scrape(metricsUrl)
    assert.equal(
      value(text, 'baton_requests_total{method="",route="unmatched",status_class="4xx",outcome="failed"}'),
      20,
    )
    assert.ok(!text.includes('/v1/nope'), 'no raw path becomes a label value')
  })

  test('a path the router cannot decode, or a parameter over 100 characters: 400 in the envelope, counted and logged', async (t) => {
    const stub = await stubFor(t)
    const { url, metricsUrl, lines } = await start(t, yaml(stub))
    const badUrl = await rawRequest('GET', `${url}/v1/carts/%E0%A4%A`, {})
    const long = await get(`${url}/v1/carts/${'a'.repeat(101)}`, { 'x-request-id': 'long-1' })
    assert.deepEqual([badUrl.status, long.status], [400, 400])
    assert.deepEqual(badUrl.body, {
      error: { code: 'BAD_REQUEST', message: 'The request is malformed', failedServices: [], partialData: false },
      data: {},
    })
    assert.deepEqual(long.body, {
      error: {
        code: 'BAD_REQUEST',
        message: 'A path segment is longer than 100 characters',
        failedServices: [],
        partialData: false,
      },
      data: {},
    })
    assert.match(badUrl.headers['x-request-id'] ?? '', UUID)
    assert.equal(long.headers['x-request-id'], 'long-1')
    for (const res of [badUrl, long]) {
      const line = lineOf(lines, res)
      assert.deepEqual([line.endpoint, line.status, line.code], ['unmatched', 400, 'BAD_REQUEST'])
    }
    const text = await scrape(metricsUrl)
    assert.equal(
      value(text, 'baton_requests_total{method="",route="unmatched",status_class="4xx",outcome="failed"}'),
      2,
    )
    assert.equal(stub.requests.length, 0)
  })

  test('a request turned away at the edge: counted under its endpoint, logged once (its rejected line)', async (t) => {
    const stub = await stubFor(t)
    const { url, metricsUrl, lines } = await start(
      t,
      yaml(stub, ', auth: { apiKey: { header: x-api-key, keys: { app: "${env.KEY}" } } }'),
      { KEY: 'k-0123456789' },
    )
    const res = await get(`${url}/v1/carts/c1`, { 'x-request-id': 'no-key-1' })
    assert.equal(res.status, 401)
    assert.equal(res.headers['x-request-id'], 'no-key-1')
    const mine = lines.filter((l) => l.requestId === 'no-key-1')
    assert.deepEqual(
      mine.map((l) => [l.event, l.endpoint, l.status]),
      [['rejected', 'GET /v1/carts/:id', 401]],
    )
    const text = await scrape(metricsUrl)
    assert.equal(
      value(text, 'baton_requests_total{method="GET",route="/v1/carts/:id",status_class="4xx",outcome="failed"}'),
      1,
    )
    assert.equal(
      value(text, 'baton_requests_rejected_total{method="GET",route="/v1/carts/:id",reason="unauthenticated"}'),
      1,
    )
  })

  test('an error before a request exists (a head over maxHeaderSize): a fresh x-request-id on the socket, counted and logged', async (t) => {
    const stub = await stubFor(t)
    const { url, metricsUrl, lines } = await start(t, yaml(stub, ', maxHeaderSize: 4kb'))
    const { hostname, port } = new URL(url)
    const socket = connect(Number(port), hostname)
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
    socket.write(`GET /v1/carts/c1 HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(8 * 1024)}\r\n\r\n`)
    await closed
    const head = Buffer.concat(chunks).toString('utf8').split('\r\n\r\n')[0] as string
    assert.match(head, /^HTTP\/1\.1 431 /)
    const id = /\r\nx-request-id: ([^\r]+)/.exec(head)?.[1] ?? ''
    assert.match(id, UUID)
    assert.deepEqual(
      lines.filter((l) => l.requestId === id).map((l) => ({ ...l, time: 0 })),
      [
        {
          level: 'info',
          time: 0,
          event: 'request',
          requestId: id,
          endpoint: 'unmatched',
          status: 431,
          outcome: 'failed',
          code: 'HEADERS_TOO_LARGE',
          msg: 'unmatched 431 HEADERS_TOO_LARGE',
        },
      ],
    )
    const text = await scrape(metricsUrl)
    assert.equal(
      value(text, 'baton_requests_total{method="",route="unmatched",status_class="4xx",outcome="failed"}'),
      1,
    )
  })
})

describe('x-request-id on every answer', () => {
  for (const [what, path] of [
    ['/health', '/health'],
    ['/health/ready', '/health/ready'],
    ['/metrics', '/metrics'],
  ] as const) {
    test(`${what}: the client's when sane, else a fresh one; counted and logged under GET ${path}`, async (t) => {
      const stub = await stubFor(t)
      const { url, metricsUrl, lines } = await start(t, yaml(stub))
      const given = await get(`${url}${path}`, { 'x-request-id': 'probe-7' })
      const insane = await get(`${url}${path}`, { 'x-request-id': 'has spaces' })
      const none = await get(`${url}${path}`)
      assert.deepEqual([given.status, insane.status, none.status], [200, 200, 200])
      assert.equal(given.headers['x-request-id'], 'probe-7')
      assert.match(insane.headers['x-request-id'] ?? '', UUID)
      assert.match(none.headers['x-request-id'] ?? '', UUID)
      assert.notEqual(insane.headers['x-request-id'], none.headers['x-request-id'])
      const line = lineOf(lines, given)
      assert.deepEqual(
        [line.event, line.endpoint, line.status, line.outcome],
        ['request', `GET ${path}`, 200, 'complete'],
      )
      const text = await scrape(metricsUrl)
      // A scrape is counted once written: this one sees the three before it, not itself.
      assert.equal(
        value(text, `baton_requests_total{method="GET",route="${path}",status_class="2xx",outcome="complete"}`),
        3,
      )
    })
  }

  test('/metrics on the admin port too', async (t) => {
    const stub = await stubFor(t)
    const { metricsUrl } = await start(t, yaml(stub, ', metrics: { port: 0 }'))
    const given = await get(metricsUrl as string, { 'x-request-id': 'scrape-1' })
    const none = await get(metricsUrl as string)
    assert.equal(given.status, 200)
    assert.equal(given.headers['x-request-id'], 'scrape-1')
    assert.match(none.headers['x-request-id'] ?? '', UUID)
    assert.equal(
      value(
        String(none.body),
        'baton_requests_total{method="GET",route="/metrics",status_class="2xx",outcome="complete"}',
      ),
      1,
    )
  })

  test('a CORS preflight: its x-request-id, counted and logged as "preflight"; an OPTIONS that is not one as unmatched', async (t) => {
    const stub = await stubFor(t)
    const { url, metricsUrl, lines } = await start(t, yaml(stub, ", cors: { origins: ['https://app.example.com'] }"))
    const preflight = await rawRequest('OPTIONS', `${url}/v1/carts/c1`, {
      origin: 'https://app.example.com',
      'access-control-request-method': 'POST',
      'x-request-id': 'pre-1',
    })
    const fresh = await rawRequest('OPTIONS', `${url}/v1/carts/c1`, {
      origin: 'https://app.example.com',
      'access-control-request-method': 'POST',
    })
    const notOne = await rawRequest('OPTIONS', `${url}/v1/carts/c1`, {})
    assert.deepEqual([preflight.status, fresh.status, notOne.status], [204, 204, 404])
    assert.equal(preflight.headers['x-request-id'], 'pre-1')
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example.com')
    assert.match(fresh.headers['x-request-id'] ?? '', UUID)
    assert.match(notOne.headers['x-request-id'] ?? '', UUID)
    const line = lineOf(lines, preflight)
    assert.deepEqual([line.endpoint, line.status, line.outcome], ['preflight', 204, 'complete'])
    assert.deepEqual([lineOf(lines, notOne).endpoint, lineOf(lines, notOne).status], ['unmatched', 404])
    const text = await scrape(metricsUrl)
    assert.equal(
      value(text, 'baton_requests_total{method="",route="preflight",status_class="2xx",outcome="complete"}'),
      2,
    )
    assert.equal(stub.requests.length, 0)
  })

  test('an endpoint answer is still logged and counted once, by its run', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /carts/:id', json({ id: 'c1' }))
    const { url, metricsUrl, lines } = await start(t, yaml(stub))
    const res = await get(`${url}/v1/carts/c1`, { 'x-request-id': 'run-1' })
    assert.equal(res.status, 200)
    assert.deepEqual(
      lines.filter((l) => l.requestId === 'run-1').map((l) => [l.event, l.endpoint, l.status, l.outcome]),
      [['request', 'GET /v1/carts/:id', 200, 'complete']],
    )
    const text = await scrape(metricsUrl)
    assert.equal(
      value(text, 'baton_requests_total{method="GET",route="/v1/carts/:id",status_class="2xx",outcome="complete"}'),
      1,
    )
  })
})

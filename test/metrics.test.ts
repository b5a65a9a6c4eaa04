/** GET /metrics: the Prometheus exposition, its series, and its bounded cardinality. */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { describe, test, type TestContext } from 'node:test'
import { compileText } from '../src/plan/compile.ts'
import { createGateway } from '../src/server/gateway.ts'
import { get, post, stubFor } from './helpers/gateway.ts'
import { json, type Stub } from './helpers/stub.ts'

const yaml = (stub: Stub, gateway = ''): string => `
version: 1
gateway: { name: Metered${gateway} }
services:
  cart: { url: "${stub.url}", circuitBreaker: { failures: 2, window: 60s, openFor: 60s } }
  shipping: { url: "${stub.url}", retry: { attempts: 2, delay: 1ms, on: [5xx] } }
endpoints:
  POST /summary:
    calls:
      cart: { request: "GET cart /carts/\${request.body.cartId}" }
      shipping: { request: POST shipping /estimate, body: { items: "\${cart.items}" }, required: false, idempotent: true }
  GET /users/{id}:
    calls:
      cart: { request: "GET cart /carts/\${request.params.id}" }
`

async function start(t: TestContext, text: string): Promise<{ url: string; metricsUrl: string | null }> {
  const { plan } = compileText('test.yaml', text, { env: {} })
  const gateway = createGateway(plan)
  t.after(() => gateway.close())
  return await gateway.listen({ port: 0, host: '127.0.0.1' })
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(url)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  return await res.text()
}

/** The value of one series, given its name and labels in exposition order. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

const seriesCount = (text: string): number => text.split('\n').filter((l) => l.startsWith('baton_')).length

describe('metrics', () => {
  test('requests, calls, outcomes, retries and fallbacks by endpoint, call and service', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /carts/:id', json({ items: [1] }))
    stub.route('POST /estimate', json({ error: 'down' }, { status: 503 }))
    const { url, metricsUrl } = await start(t, yaml(stub))
    assert.equal(metricsUrl, `${url}/metrics`)
    assert.equal((await post(`${url}/summary`, { cartId: 'c1' })).status, 200)
    const text = await scrape(metricsUrl as string)
    assert.equal(
      value(text, 'baton_requests_total{method="POST",route="/summary",status_class="2xx",outcome="partial"}'),
      1,
    )
    assert.equal(
      value(text, 'baton_request_duration_seconds_count{method="POST",route="/summary",outcome="partial"}'),
      1,
    )
    assert.equal(
      value(text, 'baton_call_duration_seconds_count{method="POST",route="/summary",call="cart",service="cart"}'),
      1,
    )
    assert.equal(
      value(
        text,
        'baton_call_outcomes_total{method="POST",route="/summary",call="cart",service="cart",outcome="success"}',
      ),
      1,
    )
    assert.equal(
      value(
        text,
        'baton_call_outcomes_total{method="POST",route="/summary",call="shipping",service="shipping",outcome="status_5xx"}',
      ),
      1,
    )
    assert.equal(
      value(
        text,
        'baton_call_outcomes_total{method="POST",route="/summary",call="shipping",service="shipping",outcome="fallback"}',
      ),
      1,
    )
    assert.equal(
      value(text, 'baton_call_retries_total{method="POST",route="/summary",call="shipping",service="shipping"}'),
      2,
    )
    assert.equal(stub.requestsTo('POST /estimate').length, 3)
    assert.equal(value(text, 'baton_requests_in_flight'), 0)
    assert.equal(value(text, 'baton_calls_in_flight{service="cart"}'), 0)
  })

  test('breaker state as a gauge and its changes as a counter', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /carts/:id', json({ error: 'down' }, { status: 500 }))
    const { url, metricsUrl } = await start(t, yaml(stub))
    assert.equal(value(await scrape(metricsUrl as string), 'baton_circuit_breaker_state{service="cart"}'), 0)
    for (let i = 0; i < 3; i++) await get(`${url}/users/${i}`)
    const text = await scrape(metricsUrl as string)
    assert.equal(value(text, 'baton_circuit_breaker_state{service="cart"}'), 2)
    assert.equal(value(text, 'baton_circuit_breaker_transitions_total{service="cart",from="closed",to="open"}'), 1)
    assert.equal(
      value(
        text,
        'baton_call_outcomes_total{method="GET",route="/users/:id",call="cart",service="cart",outcome="circuit_open"}',
      ),
      1,
    )
    assert.equal(
      value(text, 'baton_requests_total{method="GET",route="/users/:id",status_class="5xx",outcome="failed"}'),
      3,
    )
  })

  test('labels are route templates and config names: random paths and ids add no series', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /carts/:id', json({ items: [] }))
    const { url, metricsUrl } = await start(t, yaml(stub))
    await get(`${url}/users/first`)
    const before = seriesCount(await scrape(metricsUrl as string))
    for (let i = 0; i < 100; i++) {
      await get(`${url}/users/${Math.random().toString(36).slice(2)}`)
      await get(`${url}/random/${i}/${Math.random().toString(36).slice(2)}`)
    }
    const text = await scrape(metricsUrl as string)
    assert.equal(seriesCount(text), before)
    assert.equal(
      value(text, 'baton_requests_total{method="GET",route="/users/:id",status_class="2xx",outcome="complete"}'),
      101,
    )
  })

  test('promtool accepts the exposition', async (t) => {
    const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' })
    if (promtool.error !== undefined) {
      t.skip('promtool is not installed (Debian package prometheus; .ci/run installs it)')
      return
    }
    const stub = await stubFor(t)
    stub.route('GET /carts/:id', json({ items: [1] }))
    stub.route('POST /estimate', json({ options: [] }))
    const { url, metricsUrl } = await start(t, yaml(stub))
    await post(`${url}/summary`, { cartId: 'c1' })
    const check = spawnSync('promtool', ['check', 'metrics'], {
      input: await scrape(metricsUrl as string),
      encoding: 'utf8',
    })
    assert.equal(check.status, 0, `${check.stdout}${check.stderr}`)
  })

  test('a separate admin port, or none at all', async (t) => {
    const stub = await stubFor(t)
    const admin = await start(t, yaml(stub, ', metrics: { port: 0, path: /prom }'))
    assert.notEqual(admin.metricsUrl, null)
    assert.ok(!(admin.metricsUrl as string).startsWith(admin.url))
    assert.match(await scrape(admin.metricsUrl as string), /baton_requests_in_flight 0/)
    assert.equal((await get(`${admin.url}/prom`)).status, 404)
    const off = await start(t, yaml(stub, ', metrics: false'))
    assert.equal(off.metricsUrl, null)
    assert.equal((await get(`${off.url}/metrics`)).status, 404)
  })
})

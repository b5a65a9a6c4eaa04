/** /health and /health/ready: what an orchestrator (Kubernetes, a load balancer) sees. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseConfig } from '../src/config/load.ts'
import { compileConfig } from '../src/plan/compile.ts'
import { errorsOf } from './helpers/config.ts'
import { get, startGateway, stubFor } from './helpers/gateway.ts'
import { fakeClock, inTurn } from './helpers/resilience.ts'
import { eventually, json, type Stub } from './helpers/stub.ts'

const yaml = (stub: Stub, extra = ''): string => `
version: 1
gateway: { name: Health${extra} }
services:
  users: { url: "${stub.url}", timeout: 500ms, circuitBreaker: { failures: 2, window: 60s, openFor: 60s, halfOpenProbes: 1 } }
  prefs: { url: "${stub.url}", timeout: 500ms, health: { path: /healthz, interval: 1h } }
endpoints:
  GET /users/{id}:
    calls:
      user: { request: "GET users /users/\${request.params.id}" }
  GET /prefs:
    calls:
      prefs: { request: GET prefs /prefs }
`

describe('health endpoints', () => {
  test('/health answers 200 without touching any service', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /healthz', json({ ok: true }))
    const { url } = await startGateway(t, yaml(stub))
    await eventually(() => stub.requestsTo('GET /healthz').length === 1, 'the first probe')
    const before = stub.requests.length
    const res = await get(`${url}/health`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { status: 'ok' })
    assert.equal(res.headers['cache-control'], 'no-store')
    assert.equal(stub.requests.length, before)
  })

  test('/health/ready reports every service; ok while breakers are closed and probes pass', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /healthz', json({ ok: true }))
    stub.route('GET /users/:id', json({ id: 1 }))
    const { url } = await startGateway(t, yaml(stub))
    await eventually(() => stub.requestsTo('GET /healthz').length === 1, 'the first probe')
    assert.equal((await get(`${url}/users/1`)).status, 200)
    const res = await get(`${url}/health/ready`)
    assert.equal(res.status, 200)
    const body = res.body as { status: string; services: Record<string, Record<string, unknown>> }
    assert.equal(body.status, 'ok')
    assert.deepEqual(Object.keys(body.services), ['users', 'prefs'])
    const users = body.services.users as Record<string, unknown>
    assert.equal(users.breaker, 'closed')
    assert.equal(users.calls, 1)
    assert.equal(users.errorRate, 0)
    assert.equal(users.inFlight, 0)
    assert.equal(users.lastFailure, null)
    assert.equal(typeof users.p50, 'number')
    const prefs = body.services.prefs as Record<string, unknown>
    assert.equal(prefs.breaker, null)
    assert.equal((prefs.probe as { ok: boolean }).ok, true)
  })

  test('a breaker open on one service: degraded while another endpoint can still be served', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /healthz', json({ ok: true }))
    stub.route('GET /users/:id', json({ error: 'boom' }, { status: 500 }))
    const { url } = await startGateway(t, yaml(stub))
    for (let i = 0; i < 2; i++) assert.equal((await get(`${url}/users/${i}`)).status, 502)
    const res = await get(`${url}/health/ready`)
    assert.equal(res.status, 200)
    const body = res.body as {
      status: string
      services: Record<string, { breaker: string; errorRate: number; lastFailure: { kind: string } }>
    }
    assert.equal(body.status, 'degraded')
    assert.equal(body.services.users?.breaker, 'open')
    assert.equal(body.services.users?.errorRate, 1)
    assert.equal(body.services.users?.lastFailure.kind, 'status 500')
  })

  test('down, with 503, when no endpoint can be served fully', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', json({ error: 'boom' }, { status: 503 }))
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Down }
services:
  users: { url: "${stub.url}", circuitBreaker: { failures: 1, window: 60s, openFor: 60s } }
endpoints:
  GET /users/{id}:
    calls:
      user: { request: "GET users /users/\${request.params.id}" }
`,
    )
    assert.equal((await get(`${url}/users/1`)).status, 502)
    const res = await get(`${url}/health/ready`)
    assert.equal(res.status, 503)
    assert.equal((res.body as { status: string }).status, 'down')
  })

  test('a failing active probe marks the service degraded and counts as a breaker failure', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /healthz', json({ ok: false }, { status: 503 }))
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Probe }
services:
  prefs: { url: "${stub.url}", health: { path: /healthz, interval: 1h }, circuitBreaker: { failures: 1, window: 60s, openFor: 60s } }
endpoints:
  GET /prefs:
    calls:
      prefs: { request: GET prefs /prefs }
`,
    )
    type Ready = { status: string; services: { prefs: { probe: { ok: boolean } | null; breaker: string } } }
    let body: Ready | undefined
    // The probe's answer lands asynchronously: read until it is there.
    for (let i = 0; i < 100 && (body?.services.prefs.probe ?? null) === null; i++) {
      body = (await get(`${url}/health/ready`)).body as Ready
      if (body.services.prefs.probe === null) await new Promise((resolve) => setTimeout(resolve, 10))
    }
    assert.equal(body?.services.prefs.probe?.ok, false)
    assert.equal(body?.services.prefs.breaker, 'open')
    assert.equal(body?.status, 'down')
    // The breaker the probe opened short-circuits real traffic: the stub never sees /prefs.
    const res = await get(`${url}/prefs`)
    assert.equal(res.status, 502)
    assert.equal((res.body as { error: { code: string } }).error.code, 'CIRCUIT_OPEN')
    assert.equal(stub.requestsTo('GET /prefs').length, 0)
  })

  test('paths are configurable, and health: false turns them off', async (t) => {
    const stub = await stubFor(t)
    const custom = await startGateway(t, yaml(stub, ', health: { path: /livez, readyPath: /readyz }'))
    assert.equal((await get(`${custom.url}/livez`)).status, 200)
    assert.equal((await get(`${custom.url}/health`)).status, 404)
    const off = await startGateway(t, yaml(stub, ', health: false'))
    const res = await get(`${off.url}/health`)
    assert.equal(res.status, 404)
    assert.equal((res.body as { error: { code: string } }).error.code, 'NOT_FOUND')
  })

  test('an endpoint on a health path is a config error', () => {
    const result = compileConfig(
      parseConfig(
        'x.yaml',
        `version: 1
gateway: { name: X }
endpoints:
  GET /health: {}
`,
      ),
      { env: {} },
    )
    assert.deepEqual(
      result.diagnostics.filter((d) => d.severity === 'error').map((d) => [d.code, d.line]),
      [['BATON_DUPLICATE_ROUTE', 4]],
    )
  })
})

describe('/health/ready: a status per service', () => {
  type Ready = {
    status: string
    services: Record<string, { status: string; breaker: string | null; calls: number; errorRate: number }>
  }
  const ready = async (url: string): Promise<{ code: number; body: Ready }> => {
    const res = await get(`${url}/health/ready`)
    return { code: res.status, body: res.body as Ready }
  }
  /** `prefs` has no breaker and no probe: only its error rate can say it is failing. */
  const noBreaker = (stub: Stub, health = ''): string => `
version: 1
gateway: { name: Rates${health} }
services:
  users: { url: "${stub.url}" }
  prefs: { url: "${stub.url}" }
endpoints:
  GET /users/{id}:
    calls:
      user: { request: "GET users /users/\${request.params.id}" }
  GET /prefs:
    calls:
      prefs: { request: GET prefs /prefs }
`

  test('a service failing 100 % of its calls without a breaker: degraded, and so is the overall status', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', json({ id: 1 }))
    stub.route('GET /prefs', json({ error: 'boom' }, { status: 500 }))
    const { url } = await startGateway(t, noBreaker(stub))
    assert.equal((await get(`${url}/users/1`)).status, 200)
    for (let i = 0; i < 10; i++) assert.equal((await get(`${url}/prefs`)).status, 502)
    const { code, body } = await ready(url)
    // Degraded, not down: the breakerless service is still called, and /users is served fully.
    assert.equal(code, 200)
    assert.equal(body.status, 'degraded')
    assert.deepEqual(body.services.prefs, {
      ...body.services.prefs,
      status: 'degraded',
      breaker: null,
      calls: 10,
      errorRate: 1,
    })
    assert.equal(body.services.users?.status, 'ok')
  })

  test('the default threshold: over 50 % of at least 10 recent calls', async (t) => {
    const stub = await stubFor(t)
    const ok = json({ ok: true })
    const boom = json({ error: 'boom' }, { status: 500 })
    // Nine failures: too few calls to judge.
    stub.route(
      'GET /prefs',
      inTurn(boom, boom, boom, boom, boom, boom, boom, boom, boom, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok),
    )
    const { url } = await startGateway(t, noBreaker(stub))
    for (let i = 0; i < 9; i++) await get(`${url}/prefs`)
    assert.deepEqual(
      [
        (await ready(url)).body.status,
        (await ready(url)).body.services.prefs?.status,
        (await ready(url)).body.services.prefs?.errorRate,
      ],
      ['ok', 'ok', 1],
    )
    // Nine of ten, then nine of eighteen (50 %: not over it).
    await get(`${url}/prefs`)
    assert.equal((await ready(url)).body.services.prefs?.status, 'degraded')
    for (let i = 0; i < 8; i++) await get(`${url}/prefs`)
    const { body } = await ready(url)
    assert.deepEqual([body.status, body.services.prefs?.status, body.services.prefs?.errorRate], ['ok', 'ok', 0.5])
  })

  test('gateway.health.errorRate and minCalls set the threshold; 100% turns it off', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /prefs', inTurn(json({ error: 'boom' }, { status: 503 }), json({ ok: true })))
    const strict = await startGateway(t, noBreaker(stub, ', health: { errorRate: 10%, minCalls: 2 }'))
    await get(`${strict.url}/prefs`)
    assert.equal((await ready(strict.url)).body.services.prefs?.status, 'ok', 'one call is under minCalls')
    await get(`${strict.url}/prefs`)
    assert.deepEqual(
      [(await ready(strict.url)).body.status, (await ready(strict.url)).body.services.prefs?.status],
      ['degraded', 'degraded'],
    )

    const stub2 = await stubFor(t)
    stub2.route('GET /prefs', json({ error: 'boom' }, { status: 500 }))
    const off = await startGateway(t, noBreaker(stub2, ', health: { errorRate: 100% }'))
    for (let i = 0; i < 10; i++) await get(`${off.url}/prefs`)
    const { body } = await ready(off.url)
    assert.deepEqual([body.status, body.services.prefs?.status, body.services.prefs?.errorRate], ['ok', 'ok', 1])
  })

  test('breaker open: down; half-open: degraded; closed again: ok', async (t) => {
    const stub = await stubFor(t)
    stub.route(
      'GET /users/:id',
      inTurn(json({ error: 'boom' }, { status: 500 }), json({ error: 'boom' }, { status: 500 }), json({ id: 1 })),
    )
    const clock = fakeClock()
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Breaker, health: { errorRate: 100% } }
services:
  users: { url: "${stub.url}", circuitBreaker: { failures: 2, window: 60s, openFor: 30s } }
  prefs: { url: "${stub.url}" }
endpoints:
  GET /users/{id}:
    calls:
      user: { request: "GET users /users/\${request.params.id}" }
  GET /prefs:
    calls:
      prefs: { request: GET prefs /prefs }
`,
      { clock },
    )
    assert.equal((await ready(url)).body.services.users?.status, 'ok')
    for (let i = 0; i < 2; i++) await get(`${url}/users/${i}`)
    let body = (await ready(url)).body
    assert.deepEqual(
      [body.status, body.services.users?.status, body.services.users?.breaker],
      ['degraded', 'down', 'open'],
    )
    assert.equal(body.services.prefs?.status, 'ok')
    clock.advance(30_000)
    body = (await ready(url)).body
    assert.deepEqual(
      [body.status, body.services.users?.status, body.services.users?.breaker],
      ['degraded', 'degraded', 'half-open'],
    )
    assert.equal((await get(`${url}/users/3`)).status, 200)
    body = (await ready(url)).body
    assert.deepEqual([body.status, body.services.users?.status, body.services.users?.breaker], ['ok', 'ok', 'closed'])
  })

  test('a failed probe without a breaker: degraded', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /healthz', json({ ok: false }, { status: 503 }))
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Probe }
services:
  prefs: { url: "${stub.url}", health: { path: /healthz, interval: 1h } }
endpoints:
  GET /prefs:
    calls:
      prefs: { request: GET prefs /prefs }
`,
    )
    await eventually(() => stub.requestsTo('GET /healthz').length === 1, 'the first probe')
    let body: Ready | undefined
    for (let i = 0; i < 100; i++) {
      body = (await ready(url)).body
      if (body.services.prefs?.status !== 'ok') break
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    assert.deepEqual(
      [body?.status, body?.services.prefs?.status, body?.services.prefs?.breaker],
      ['degraded', 'degraded', null],
    )
  })

  test('errorRate and minCalls are validated', () => {
    const config = (health: string): string => `version: 1
gateway: { name: X, health: ${health} }
`
    assert.deepEqual(
      errorsOf(config('{ errorRate: 150% }')).map((d) => [d.code, d.path.join(' › ')]),
      [['BATON_INVALID_VALUE', 'gateway › health › errorRate']],
    )
    assert.deepEqual(
      errorsOf(config('{ minCalls: 0 }')).map((d) => [d.code, d.path.join(' › ')]),
      [['BATON_INVALID_VALUE', 'gateway › health › minCalls']],
    )
    assert.deepEqual(
      errorsOf(config('{ errorRate: often }')).map((d) => [d.code, d.path.join(' › ')]),
      [['BATON_INVALID_VALUE', 'gateway › health › errorRate']],
    )
  })
})

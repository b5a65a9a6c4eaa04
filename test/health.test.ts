/** /health and /health/ready: what an orchestrator (Kubernetes, a load balancer) sees. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseConfig } from '../src/config/load.ts'
import { compileConfig } from '../src/plan/compile.ts'
import { get, startGateway, stubFor } from './helpers/gateway.ts'
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

/**
 * The per-call pipeline's public extension point (GatewayOptions.stages), run observers
 * (GatewayOptions.observers), and the one rule for what counts against a service, over real
 * sockets against a stub service.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { compileText } from '../src/plan/compile.ts'
import { createGateway, type GatewayOptions } from '../src/server/gateway.ts'
import { CallError, type RunObserver, type ServiceStage, type Try } from '../src/index.ts'
import { get, stubFor } from './helpers/gateway.ts'
import { json, type Stub } from './helpers/stub.ts'

function config(stub: Stub, service = ''): string {
  return `
version: 1
gateway: { name: Pipeline, logLevel: silent }
services:
  svc: { url: "${stub.url}", timeout: 1s${service} }
  other: { url: "${stub.url}", timeout: 1s }
endpoints:
  GET /both:
    calls:
      a: { request: GET svc /a }
      b: { request: GET other /b }
`
}

async function start(t: TestContext, yaml: string, options: GatewayOptions): Promise<string> {
  const { plan } = compileText('test.yaml', yaml, { env: {} })
  const gateway = createGateway(plan, options)
  t.after(() => gateway.close())
  return (await gateway.listen({ port: 0, host: '127.0.0.1' })).url
}

describe('stages of your own', () => {
  test('a stage sees every try of its service, and a header it adds reaches the service', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /a', json({ a: 1 }))
    stub.route('GET /b', json({ b: 2 }))
    const seen: string[] = []
    const signing: ServiceStage = (service) =>
      service.name !== 'svc'
        ? null
        : (next) => async (attempt: Try) => {
            seen.push(`${attempt.call.name} ${attempt.method} ${attempt.path} try ${attempt.number}`)
            attempt.headers = { ...attempt.headers, 'x-signature': `signed:${attempt.path}` }
            return await next(attempt)
          }
    const url = await start(t, config(stub), { stages: [signing] })
    const res = await get(`${url}/both`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { a: { a: 1 }, b: { b: 2 } })
    assert.deepEqual(seen, ['a GET /a try 1'])
    assert.equal(stub.requestsTo('GET /a')[0]?.headers['x-signature'], 'signed:/a')
    // The stage returned null for `other`: its chain is the built-in one, and nothing was added.
    assert.equal(stub.requestsTo('GET /b')[0]?.headers['x-signature'], undefined)
  })

  test('a failure a stage throws is a failure of the call, and counts against the service (breaker)', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /a', json({ a: 1 }))
    stub.route('GET /b', json({ b: 2 }))
    const refuse: ServiceStage = (service) =>
      service.name === 'svc'
        ? () => async () => {
            throw new CallError('status', 'refused by the stage', { status: 503, headers: {} })
          }
        : null
    const url = await start(t, config(stub, ', circuitBreaker: { failures: 2, window: 60s, openFor: 60s }'), {
      stages: [refuse],
    })
    const first = await get(`${url}/both`)
    assert.equal(first.status, 502)
    assert.deepEqual((first.body as { error: { code: string; failedServices: string[] } }).error, {
      code: 'DOWNSTREAM_FAILURE',
      message: 'svc failed (503)',
      failedServices: ['svc'],
      partialData: false,
    })
    await get(`${url}/both`)
    const third = await get(`${url}/both`)
    assert.equal((third.body as { error: { code: string } }).error.code, 'CIRCUIT_OPEN')
    // The stage sits before the HTTP request: the service never saw /a.
    assert.equal(stub.requestsTo('GET /a').length, 0)
  })
})

describe('observers of your own', () => {
  test('runStarted, tryStarted/tryEnded per try and runFinished, in order, with the state handed back', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /a', json({ a: 1 }))
    stub.route('GET /b', json({ error: 'down' }, { status: 500 }))
    const events: string[] = []
    const observer: RunObserver<string> = {
      runStarted: (run) => {
        events.push(`start ${run.endpoint.label} ${run.requestId}`)
        return 'state'
      },
      tryStarted: (state, _run, attempt) => {
        events.push(`try ${attempt.call.name} ${state}`)
        return attempt.call.name
      },
      tryEnded: (_state, _attempt, tryState, response, error) => {
        events.push(`end ${String(tryState)} ${response?.status ?? error?.kind} ${error?.status ?? ''}`.trim())
      },
      runFinished: (state, run, answer) => {
        events.push(`finish ${state} ${answer.status} ${run.errors?.[1]?.kind}`)
        answer.headers = { ...answer.headers, 'x-observed': 'yes' }
      },
    }
    const url = await start(t, config(stub), { observers: [observer] })
    const res = await get(`${url}/both`, { 'x-request-id': 'obs-1' })
    assert.equal(res.status, 502)
    assert.equal(res.headers['x-observed'], 'yes')
    assert.equal(events[0], 'start GET /both obs-1')
    assert.deepEqual(events.slice(1, 3).sort(), ['try a state', 'try b state'])
    assert.deepEqual(events.slice(3, 5).sort(), ['end a 200', 'end b status 500'])
    assert.equal(events[5], 'finish state 502 status')
    assert.equal(events.length, 6)
  })

  test('an observer that throws costs the client nothing', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /a', json({ a: 1 }))
    stub.route('GET /b', json({ b: 2 }))
    const broken: RunObserver = {
      runFinished: () => {
        throw new Error('observer bug')
      },
    }
    const url = await start(t, config(stub), { observers: [broken] })
    const res = await get(`${url}/both`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { a: { a: 1 }, b: { b: 2 } })
  })
})

describe('what counts against a service: one rule for calls and active probes', () => {
  test('a probe answered 404 leaves the service ok and its breaker closed; a 503 opens it', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /a', json({ a: 1 }))
    stub.route('GET /b', json({ b: 2 }))
    let probeStatus = 404
    stub.route('GET /healthz', () => json({}, { status: probeStatus }))
    const yaml = config(
      stub,
      ', health: { path: /healthz, interval: 1h }, circuitBreaker: { failures: 1, window: 60s, openFor: 60s }',
    )
    type Ready = { services: { svc: { probe: { ok: boolean } | null; breaker: string; errorRate: number } } }
    const ready = async (url: string): Promise<Ready['services']['svc']> => {
      let svc: Ready['services']['svc'] | undefined
      // The probe's answer lands asynchronously: read until it is there.
      for (let i = 0; i < 200 && (svc?.probe ?? null) === null; i++) {
        svc = ((await get(`${url}/health/ready`)).body as Ready).services.svc
        if (svc.probe === null) await new Promise((resolve) => setTimeout(resolve, 10))
      }
      return svc as Ready['services']['svc']
    }
    const up = await start(t, yaml, {})
    const okay = await ready(up)
    assert.deepEqual([okay.probe?.ok, okay.breaker, okay.errorRate], [true, 'closed', 0])
    assert.equal((await get(`${up}/both`)).status, 200)

    probeStatus = 503
    const down = await start(t, yaml, {})
    const failing = await ready(down)
    assert.deepEqual([failing.probe?.ok, failing.breaker, failing.errorRate], [false, 'open', 1])
  })
})

/**
 * Hot reload: a new plan serves new requests while the requests already running finish on the
 * one they started on; what did not change (service clients and their breakers) carries over; an
 * invalid config is refused and the running one keeps serving; 100 reloads under load lose no
 * request and never mix two generations in one answer.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { ConfigError } from '../src/errors.ts'
import { parseConfig } from '../src/config/load.ts'
import { compileConfig, compileText } from '../src/plan/compile.ts'
import type { GatewayPlan } from '../src/plan/types.ts'
import { createGateway, type GatewayOptions } from '../src/server/gateway.ts'
import { startCli } from './helpers/cli.ts'
import { get, post, stubFor } from './helpers/gateway.ts'
import { gate } from './helpers/resilience.ts'
import { eventually, json, type Stub } from './helpers/stub.ts'
import { metricValue } from './helpers/metrics.ts'
import type { TestContext } from 'node:test'

function yaml(stub: Stub, version: string, extra = '', service = ''): string {
  return `
version: 1
gateway: { name: Reload, logLevel: silent }
services:
  catalog: { url: "${stub.url}"${service} }
endpoints:
  GET /product:
    calls:
      product: { request: "GET catalog /product" }
    response: { version: "${version}", product: "\${product}" }
${extra}`
}

const plan = (text: string): GatewayPlan => compileText('test.yaml', text, { env: {} }).plan

async function start(t: TestContext, first: GatewayPlan, options: GatewayOptions = {}) {
  const gateway = createGateway(first, options)
  t.after(() => gateway.close())
  const { url } = await gateway.listen({ port: 0, host: '127.0.0.1' })
  return { gateway, url }
}

const codeOf = (res: { body: unknown }): string | undefined => (res.body as { error?: { code: string } }).error?.code

const metric = metricValue

describe('reload', () => {
  test('new requests get the new plan; endpoints appear and disappear; the report says what changed', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /product', json({ id: 1 }))
    const { gateway, url } = await start(t, plan(yaml(stub, 'one', '  GET /old:\n    response: { old: true }\n')))
    assert.deepEqual((await get(`${url}/product`)).body, { version: 'one', product: { id: 1 } })
    assert.equal((await get(`${url}/old`)).status, 200)
    assert.equal((await get(`${url}/new`)).status, 404)

    const report = await gateway.reload(plan(yaml(stub, 'two', '  GET /new:\n    response: { new: true }\n')))
    assert.deepEqual(report, {
      generation: 2,
      added: ['GET /new'],
      removed: ['GET /old'],
      changed: ['GET /product'],
      servicesKept: ['catalog'],
      servicesNew: [],
      restartNeeded: [],
    })
    assert.equal(gateway.generation, 2)
    assert.deepEqual((await get(`${url}/product`)).body, { version: 'two', product: { id: 1 } })
    assert.deepEqual((await get(`${url}/new`)).body, { new: true })
    const gone = await get(`${url}/old`)
    assert.equal(gone.status, 404)
    assert.equal((gone.body as { error: { code: string } }).error.code, 'NOT_FOUND')
    assert.equal(await metric(url, 'baton_config_generation'), 2)
    assert.equal(await metric(url, 'baton_config_reloads_total{result="success"}'), 1)
  })

  test('a request running during a reload finishes wholly on the generation it started on', async (t) => {
    const stub = await stubFor(t)
    const held = gate()
    stub.route('GET /product', held.hold(json({ id: 1 })))
    // Without coalescing, so that the second request is a request of its own at the service.
    const { gateway, url } = await start(t, plan(yaml(stub, 'one', '', ', coalesce: false')))
    const running = get(`${url}/product`)
    await eventually(() => stub.requestsTo('GET /product').length === 1, 'the request reached the service')
    await gateway.reload(plan(yaml(stub, 'two', '', ', coalesce: false')))
    const newer = get(`${url}/product`)
    await eventually(() => stub.requestsTo('GET /product').length === 2, 'the new request reached the service')
    held.open()
    assert.deepEqual((await running).body, { version: 'one', product: { id: 1 } })
    assert.deepEqual((await newer).body, { version: 'two', product: { id: 1 } })
  })

  test('an unchanged service keeps its client (its open breaker); a changed one starts afresh', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /product', json({}, { status: 500 }))
    const breaker = ', circuitBreaker: { failures: 2, window: 60s, openFor: 60s }'
    const { gateway, url } = await start(t, plan(yaml(stub, 'one', '', breaker)))
    await get(`${url}/product`)
    await get(`${url}/product`)
    assert.equal(stub.requestsTo('GET /product').length, 2)
    // Open: the next request is not sent.
    assert.equal(codeOf(await get(`${url}/product`)), 'CIRCUIT_OPEN')
    assert.equal(stub.requestsTo('GET /product').length, 2)

    const kept = await gateway.reload(plan(yaml(stub, 'two', '', breaker)))
    assert.deepEqual(kept.servicesKept, ['catalog'])
    assert.equal(codeOf(await get(`${url}/product`)), 'CIRCUIT_OPEN')
    assert.equal(stub.requestsTo('GET /product').length, 2, 'still open after the reload: nothing sent')

    const fresh = await gateway.reload(plan(yaml(stub, 'two', '', `${breaker}, timeout: 2s`)))
    assert.deepEqual(fresh.servicesNew, ['catalog'])
    assert.notEqual(codeOf(await get(`${url}/product`)), 'CIRCUIT_OPEN')
    assert.equal(stub.requestsTo('GET /product').length, 3, 'a new client, a closed breaker: the request is sent')
  })

  test('a reloader that fails (an invalid config): refused, counted, and the running plan keeps serving', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /product', json({ id: 1 }))
    const broken = compileConfig(
      parseConfig('broken.yaml', 'version: 1\ngateway: { name: x }\nendpoints:\n  GET /a:\n    calls: 7\n'),
    )
    assert.equal(broken.plan, undefined)
    const { gateway, url } = await start(t, plan(yaml(stub, 'one')), {
      reloader: async () => {
        throw new ConfigError(broken.diagnostics)
      },
    })
    await assert.rejects(gateway.reload(), ConfigError)
    assert.equal(gateway.generation, 1)
    assert.deepEqual((await get(`${url}/product`)).body, { version: 'one', product: { id: 1 } })
    assert.equal(await metric(url, 'baton_config_reloads_total{result="failure"}'), 1)
    assert.equal(await metric(url, 'baton_config_generation'), 1)
  })

  test('POST /admin/reload: behind gateway.admin.token on the main port; an invalid file is 422 with its diagnostics', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /product', json({ id: 1 }))
    const token = 'admin-token-0123456789abcdef'
    const withToken = (text: string): string =>
      text.replace('logLevel: silent }', 'logLevel: silent, admin: { token: "${env.ADMIN}" } }')
    const dir = mkdtempSync(join(tmpdir(), 'baton-reload-'))
    const file = join(dir, 'baton.yaml')
    writeFileSync(file, withToken(yaml(stub, 'one')))
    const compile = (): GatewayPlan => {
      const result = compileText(file, readFileSync(file, 'utf8'), {
        env: { ADMIN: token },
      })
      if (result.plan === undefined) throw new ConfigError(result.diagnostics)
      return result.plan
    }
    const { url } = await start(t, compile(), { reloader: async () => compile() })
    const auth = { authorization: `Bearer ${token}` }
    assert.equal((await post(`${url}/admin/reload`, {})).status, 401)
    writeFileSync(file, withToken(yaml(stub, 'two')))
    const done = await post(`${url}/admin/reload`, {}, auth)
    assert.equal(done.status, 200)
    assert.equal((done.body as { generation: number }).generation, 2)
    assert.deepEqual((await get(`${url}/product`)).body, { version: 'two', product: { id: 1 } })

    writeFileSync(file, withToken(yaml(stub, 'three')).replace('GET catalog /product', 'GET nowhere /product'))
    const refused = await post(`${url}/admin/reload`, {}, auth)
    assert.equal(refused.status, 422)
    const error = (refused.body as { error: { code: string; diagnostics: { code: string; at: string }[] } }).error
    assert.equal(error.code, 'CONFIG_INVALID')
    assert.equal(error.diagnostics[0]?.code, 'BATON_UNKNOWN_SERVICE')
    assert.match(error.diagnostics[0]?.at ?? '', /baton\.yaml:\d+:\d+$/)
    assert.deepEqual((await get(`${url}/product`)).body, { version: 'two', product: { id: 1 } })
  })

  test('100 reloads under load: no failed request, and every answer wholly from one generation', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /a', json({ from: 'A' }))
    stub.route('GET /b', json({ from: 'B' }))
    const config = (v: 'A' | 'B'): string => `
version: 1
gateway: { name: Reload, logLevel: silent }
services:
  s: { url: "${stub.url}", timeout: ${v === 'A' ? '1s' : '2s'} }
endpoints:
  GET /screen:
    calls:
      first: { request: "GET s /${v.toLowerCase()}" }
      second: { request: "GET s /${v.toLowerCase()}?again=1" }
    response: { generation: "${v}", first: "\${first.from}", second: "\${second.from}" }
`
    const plans = { A: plan(config('A')), B: plan(config('B')) }
    const { gateway, url } = await start(t, plans.A)
    let stop = false
    const answers: { status: number; body: unknown }[] = []
    const clients = Array.from({ length: 8 }, async () => {
      while (!stop) answers.push(await get(`${url}/screen`))
    })
    for (let i = 0; i < 100; i++) {
      await gateway.reload(i % 2 === 0 ? plans.B : plans.A)
      await new Promise((resolve) => setImmediate(resolve))
    }
    stop = true
    await Promise.all(clients)
    assert.equal(gateway.generation, 101)
    assert.ok(answers.length >= 100, `answers during the reloads: ${answers.length}`)
    const failed = answers.filter((a) => a.status !== 200)
    assert.deepEqual(failed, [], 'no failed request')
    const mixed = answers.filter((a) => {
      const body = a.body as { generation: string; first: string; second: string }
      return body.first !== body.generation || body.second !== body.generation
    })
    assert.deepEqual(mixed, [], 'no answer mixes two generations')
  })
})

describe('baton serve reloads', () => {
  test('when the file changes, and on SIGHUP; an invalid edit is refused with file:line:col and the old config serves', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /product', json({ id: 1 }))
    const dir = mkdtempSync(join(tmpdir(), 'baton-serve-reload-'))
    const file = join(dir, 'baton.yaml')
    const text = (v: string): string =>
      yaml(stub, v).replace('logLevel: silent', 'logLevel: info, host: 127.0.0.1, port: 0')
    writeFileSync(file, text('one'))
    const { cli, url } = await startCli(t, ['serve', file])
    assert.deepEqual((await get(`${url}/product`)).body, { version: 'one', product: { id: 1 } })

    writeFileSync(file, text('two'))
    await cli.waitFor(/"event":"reloaded"[^\n]*"generation":2/)
    assert.deepEqual((await get(`${url}/product`)).body, { version: 'two', product: { id: 1 } })

    writeFileSync(file, text('three').replace('GET catalog', 'GET nowhere'))
    const refused = await cli.waitFor(/"event":"reload_failed"[^\n]*/)
    assert.match(refused[0], /baton\.yaml:\d+:\d+: error BATON_UNKNOWN_SERVICE/)
    assert.match(refused[0], /generation 2 keeps serving/)
    assert.deepEqual((await get(`${url}/product`)).body, { version: 'two', product: { id: 1 } })

    writeFileSync(file, text('four'))
    await cli.waitFor(/"event":"reloaded"[^\n]*"generation":3/)
    cli.kill('SIGHUP')
    await cli.waitFor(/"event":"reloaded"[^\n]*"generation":4/)
    assert.deepEqual((await get(`${url}/product`)).body, { version: 'four', product: { id: 1 } })
    cli.kill('SIGTERM')
    assert.equal((await cli.exited).code, 0)
  })
})

describe('baton dev reloads', () => {
  test('its printed token stays valid across reloads, and the mocks answer with the new routes', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-dev-reload-'))
    const file = join(dir, 'baton.yaml')
    const text = (v: number): string => `
version: 1
gateway:
  name: Dev reload
  auth: { jwt: { secret: "\${env.BATON_TEST_UNSET_SECRET}" } }
services:
  catalog: { url: "http://catalog.internal", mock: { "GET /product": { body: { v: ${v} } } } }
endpoints:
  GET /product:
    calls:
      product: { request: "GET catalog /product" }
`
    writeFileSync(file, text(1))
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' }
    delete env.BATON_TEST_UNSET_SECRET
    const { cli, url } = await startCli(t, ['dev', file, '--port', '0'], { env })
    const token = (await cli.waitFor(/export TOKEN=(\S+)/))[1] as string
    const auth = { authorization: `Bearer ${token}` }
    assert.deepEqual((await get(`${url}/product`, auth)).body, { product: { v: 1 } })
    writeFileSync(file, text(2))
    await cli.waitFor(/reloaded: generation 2/)
    const after = await get(`${url}/product`, auth)
    assert.equal(after.status, 200, 'the token printed at start is still accepted')
    assert.deepEqual(after.body, { product: { v: 2 } })
    cli.kill('SIGTERM')
    assert.equal((await cli.exited).code, 0)
  })
})

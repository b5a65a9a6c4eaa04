/**
 * The log of the real CLI: `baton serve` writes the plan's schema (logFormat, logTime), `baton dev`
 * prints pretty lines (pino-pretty) that put the message first. The fields of each line are tested
 * in observability.test.ts; here, that the commands write them.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { startCli } from './helpers/cli.ts'
import { diagnosticsOf } from './helpers/config.ts'
import { get, stubFor } from './helpers/gateway.ts'
import { json } from './helpers/stub.ts'

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

function configFile(t: TestContext, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-logs-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'baton.yaml')
  writeFileSync(file, text)
  return file
}

async function serveWith(t: TestContext, gateway: string): Promise<{ lines: () => Record<string, unknown>[] }> {
  const stub = await stubFor(t)
  stub.route('GET /product', json({ v: 1 }))
  const file = configFile(
    t,
    `version: 1
gateway: { name: Shop${gateway} }
services:
  catalog: { url: "${stub.url}" }
endpoints:
  GET /product:
    calls:
      product: { request: "GET catalog /product" }
`,
  )
  const { cli, url } = await startCli(t, ['serve', file, '--port', '0', '--host', '127.0.0.1'])
  assert.equal((await get(`${url}/product`, { 'x-request-id': 'req-1' })).status, 200)
  await cli.waitFor(/"req-1"/)
  cli.kill('SIGTERM')
  assert.equal((await cli.exited).code, 0, cli.stderr)
  return { lines: () => cli.json() }
}

describe('baton serve', () => {
  test('by default: level names, epoch ms', async (t) => {
    const { lines } = await serveWith(t, '')
    const request = lines().find((l) => l.event === 'request')
    assert.deepEqual([request?.level, typeof request?.time, request?.endpoint], ['info', 'number', 'GET /product'])
    assert.deepEqual(
      lines().map((l) => l.level),
      lines().map(() => 'info'),
    )
  })

  test('logTime: iso', async (t) => {
    const { lines } = await serveWith(t, ', logTime: iso')
    const listening = lines().find((l) => l.event === 'listening')
    assert.equal(listening?.level, 'info')
    assert.match(String(listening?.time), ISO)
  })

  test('logFormat: ecs: every line in the Elastic Common Schema, service.name the gateway', async (t) => {
    const { lines } = await serveWith(t, ', logFormat: ecs')
    const all = lines()
    assert.deepEqual(
      all.map((l) => l['event.action']),
      ['listening', 'endpoint', 'request', 'stopping', 'stopped'],
    )
    for (const l of all) {
      assert.deepEqual(
        [l['log.level'], l['ecs.version'], l['service.name'], typeof l.message, l.level, l.msg, l.time],
        ['info', '8.10.0', 'Shop', 'string', undefined, undefined, undefined],
      )
      assert.match(String(l['@timestamp']), ISO)
    }
    const request = all[2] as Record<string, unknown>
    assert.deepEqual(
      [request['http.request.id'], request['baton.endpoint'], request['http.response.status_code']],
      ['req-1', 'GET /product', 200],
    )
  })
})

describe('baton dev', () => {
  test('pretty lines: the message alone, "error:" before an error; no JSON', async (t) => {
    const yaml = (request: string): string => `version: 1
gateway: { name: Shop }
services:
  catalog: { url: "http://catalog.internal", mock: { "GET /product": { body: { v: 1 } } } }
  reviews: { url: "http://reviews.internal", mock: { "GET /reviews": { body: [] } } }
endpoints:
  GET /product:
    calls:
      product: { request: "${request}" }
      reviews: { request: "GET reviews /reviews", required: false }
`
    const file = configFile(t, yaml('GET catalog /product'))
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }
    const { cli, url } = await startCli(t, ['dev', file, '--port', '0', '--down', 'reviews'], { env })
    assert.equal((await get(`${url}/product`)).status, 200)
    await cli.waitFor(/^GET \/product 200 /m)
    writeFileSync(file, yaml('GET nowhere /product'))
    await cli.waitFor(/keeps serving:\n.+\n/)
    cli.kill('SIGTERM')
    assert.equal((await cli.exited).code, 0, cli.stderr)

    const out = cli.stdout.split('\n')
    assert.deepEqual(
      out.filter((l) => l.startsWith('{')),
      [],
    )
    assert.ok(out.includes(`Shop listening on ${url}`), cli.stdout)
    assert.ok(out.includes('  ✗ reviews: answered 503, fell back'), cli.stdout)
    assert.ok(
      out.some((l) => /^GET \/product 200 \d+\.\dms partial \(reviews\)$/.test(l)),
      cli.stdout,
    )
    const refused = out.findIndex((l) => l.startsWith('error: '))
    assert.equal(out[refused], `error: reload (${file} changed) refused, 1 error; generation 1 keeps serving:`)
    assert.match(out[refused + 1] ?? '', /baton\.yaml:9:\d+/)
  })
})

describe('config', () => {
  test('logFormat and logTime: a value they do not take is an error at its place, with the values they do', () => {
    const found = diagnosticsOf(
      `version: 1
gateway: { name: Test, logFormat: json, logTime: unix }
services:
  cart: { url: "http://cart.local" }
endpoints:
  GET /x:
    calls:
      cart: { request: "GET cart /x" }
`,
      { env: {} },
    ).map((d) => [d.code, d.path.join('.'), d.line, d.col, d.hint])
    assert.deepEqual(found, [
      ['BATON_INVALID_VALUE', 'gateway.logFormat', 2, 35, 'Invalid option: expected one of "baton"|"ecs"'],
      ['BATON_INVALID_VALUE', 'gateway.logTime', 2, 50, 'Invalid option: expected one of "epoch"|"iso"'],
    ])
  })
})

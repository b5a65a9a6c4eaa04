/**
 * Canary releases: the candidate config serves its weight of the requests (by chance, or by a
 * sticky key's hash), a header forces a version, every answer names its version, and the guard
 * rolls the candidate back by itself when it answers worse than the stable version — and not
 * when it answers as well. Promotion and abort by hand.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import pino from 'pino'
import { compileText } from '../src/plan/compile.ts'
import { errorsOf } from './helpers/config.ts'
import { bucketOf } from '../src/server/canary.ts'
import { createGateway } from '../src/server/gateway.ts'
import { spawnCli, startCli } from './helpers/cli.ts'
import { get, post, stubFor } from './helpers/gateway.ts'
import { freePort } from './helpers/redis.ts'
import { fakeClock, type FakeClock } from './helpers/resilience.ts'
import { json, type Stub } from './helpers/stub.ts'
import { metricValue } from './helpers/metrics.ts'

function stable(stub: Stub, canary: string): string {
  return `
version: 1
gateway: { name: Shop, logLevel: info, release: v1, metrics: { port: 0 } }
canary: ${canary}
services:
  catalog: { url: "${stub.url}", coalesce: false }
endpoints:
  GET /product:
    calls:
      product: { request: "GET catalog /v1/product" }
`
}

function candidate(stub: Stub, path = '/v2/product'): string {
  return `
version: 1
gateway: { name: Shop, logLevel: info, release: v2, metrics: { port: 0 } }
services:
  catalog: { url: "${stub.url}", coalesce: false }
endpoints:
  GET /product:
    calls:
      product: { request: "GET catalog ${path}" }
`
}

interface Started {
  url: string
  admin: string
  lines: { event?: string; msg: string }[]
  clock: FakeClock
}

async function start(t: TestContext, base: string, next: string): Promise<Started> {
  const lines: { event?: string; msg: string }[] = []
  const logger = pino({ base: null, level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) })
  const clock = fakeClock()
  const gateway = createGateway(compileText('base.yaml', base, { env: {} }).plan, {
    candidate: compileText('next.yaml', next, { env: {} }).plan,
    logger,
    clock,
  })
  t.after(() => gateway.close())
  const { url, metricsUrl } = await gateway.listen({ port: 0, host: '127.0.0.1' })
  return { url, admin: (metricsUrl as string).replace(/\/metrics$/, ''), lines, clock }
}

/** `n` requests, `concurrency` at a time; the versions that answered, counted. */
async function versions(
  url: string,
  n: number,
  headers: (i: number) => Record<string, string> = () => ({}),
): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  let next = 0
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < n) {
        const i = next++
        const res = await get(`${url}/product`, headers(i))
        assert.equal(res.status, 200)
        const version = res.headers['baton-version'] ?? 'none'
        counts.set(version, (counts.get(version) ?? 0) + 1)
      }
    }),
  )
  return counts
}

function routes(stub: Stub, v2: 'ok' | 'broken' = 'ok'): void {
  stub.route('GET /v1/product', json({ version: 1 }))
  stub.route('GET /v2/product', v2 === 'ok' ? json({ version: 2 }) : json({ error: 'bad' }, { status: 502 }))
}

const metric = metricValue

describe('routing', () => {
  test('a sticky key hashes to the same place every time, and 10,000 keys spread evenly', () => {
    assert.equal(bucketOf('alice'), bucketOf('alice'))
    let below = 0
    for (let i = 0; i < 10_000; i++) if (bucketOf(`user-${i}`) < 0.1) below++
    // Binomial(10,000, 0.1): mean 1,000, sd 30; five sd either way.
    assert.ok(below > 850 && below < 1150, `${below} of 10,000 below 0.1`)
  })

  test('weight 10%: over 10,000 requests the candidate answers about 1,000; each answer names its version', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const { url } = await start(t, stable(stub, '{ config: next.yaml, weight: 10% }'), candidate(stub))
    const counts = await versions(url, 10_000)
    const v2 = counts.get('v2') ?? 0
    assert.equal((counts.get('v1') ?? 0) + v2, 10_000, 'every answer says baton-version v1 or v2')
    assert.ok(v2 > 850 && v2 < 1150, `candidate answered ${v2} of 10,000`)
    assert.equal(stub.requestsTo('GET /v2/product').length, v2)
  })

  test('sticky: the same key always gets the same version', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const { url } = await start(
      t,
      stable(stub, `{ config: next.yaml, weight: 50%, sticky: "\${request.headers['x-user']}" }`),
      candidate(stub),
    )
    const seen = new Map<string, Set<string>>()
    for (let round = 0; round < 4; round++) {
      for (let u = 0; u < 40; u++) {
        const res = await get(`${url}/product`, { 'x-user': `user-${u}` })
        const versionsOf = seen.get(`user-${u}`) ?? new Set<string>()
        versionsOf.add(res.headers['baton-version'] as string)
        seen.set(`user-${u}`, versionsOf)
      }
    }
    for (const [user, versionsOf] of seen) assert.equal(versionsOf.size, 1, `${user} saw ${[...versionsOf].join(', ')}`)
    for (let u = 0; u < 40; u++) {
      const expected = bucketOf(`user-${u}`) < 0.5 ? 'v2' : 'v1'
      assert.deepEqual([...(seen.get(`user-${u}`) as Set<string>)], [expected])
    }
  })

  test('the header forces a version: always (the candidate), never (the stable one)', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const { url, lines } = await start(t, stable(stub, '{ config: next.yaml, weight: 50% }'), candidate(stub))
    const always = await versions(url, 50, () => ({ 'x-baton-canary': 'always' }))
    const never = await versions(url, 50, () => ({ 'x-baton-canary': 'never' }))
    assert.deepEqual([...always], [['v2', 50]])
    assert.deepEqual([...never], [['v1', 50]])
    // The access log says which version served each request.
    const logged = lines.filter((l) => l.event === 'request') as unknown as { version?: string }[]
    assert.equal(logged.length, 100)
    assert.deepEqual([...new Set(logged.map((l) => l.version))].sort(), ['v1', 'v2'])
    assert.equal(logged.filter((l) => l.version === 'v2').length, 50)
  })
})

describe('the guard', () => {
  const guarded = (stub: Stub): string =>
    stable(stub, '{ config: next.yaml, weight: 50%, guard: { minRequests: 20, window: 1m, errorRate: 5% } }')

  test('a candidate that starts answering 502: rolled back by itself (weight 0), logged with the figures, counted', async (t) => {
    const stub = await stubFor(t)
    routes(stub, 'broken')
    const { url, admin, lines, clock } = await start(t, guarded(stub), candidate(stub))
    let rolledBack = false
    for (let round = 0; round < 20 && !rolledBack; round++) {
      clock.advance(1000)
      for (let i = 0; i < 20; i++) await get(`${url}/product`)
      rolledBack = lines.some((l) => l.event === 'canary_rolled_back')
    }
    assert.ok(rolledBack, 'the guard rolled the candidate back')
    const line = lines.find((l) => l.event === 'canary_rolled_back') as { msg: string }
    assert.match(
      line.msg,
      /^canary v2 rolled back \(weight 0\): error rate 100\.0% against 0\.0% \(margin 5\.0% points\)/,
    )
    assert.equal(await metric(admin, 'baton_canary_rollbacks_total'), 1)
    assert.equal(await metric(admin, 'baton_canary_weight'), 0)
    // From now on the stable version answers everything (the header can still ask for the candidate).
    const after = await versions(url, 100)
    assert.deepEqual([...after], [['v1', 100]])
  })

  test('a candidate as good as the stable version keeps its weight', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const { url, admin, lines, clock } = await start(t, guarded(stub), candidate(stub))
    for (let round = 0; round < 10; round++) {
      clock.advance(1000)
      for (let i = 0; i < 30; i++) await get(`${url}/product`)
    }
    assert.equal(lines.filter((l) => l.event === 'canary_rolled_back').length, 0, lines.map((l) => l.msg).join('\n'))
    assert.equal(await metric(admin, 'baton_canary_weight'), 0.5)
    assert.equal(await metric(admin, 'baton_canary_rollbacks_total'), 0)
    assert.ok((await metric(admin, 'baton_canary_requests_total{version="candidate",result="ok"}')) > 50)
  })
})

describe('ending a canary by hand', () => {
  test('promote: the candidate serves everyone; abort: the stable one does; 409 once none runs', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const promoted = await start(t, stable(stub, '{ config: next.yaml, weight: 10% }'), candidate(stub))
    const done = await post(`${promoted.admin}/admin/canary/promote`, {})
    assert.equal(done.status, 200)
    assert.deepEqual(done.body, { ended: 'promote' })
    const after = await versions(promoted.url, 30)
    // No canary any more: no baton-version header, and the candidate's calls answer.
    assert.deepEqual([...after], [['none', 30]])
    assert.equal(stub.requestsTo('GET /v2/product').length >= 30, true)
    assert.equal((await post(`${promoted.admin}/admin/canary/promote`, {})).status, 409)

    const aborted = await start(t, stable(stub, '{ config: next.yaml, weight: 90% }'), candidate(stub))
    const before = stub.requestsTo('GET /v1/product').length
    assert.equal((await post(`${aborted.admin}/admin/canary/abort`, {})).status, 200)
    await versions(aborted.url, 30)
    assert.equal(stub.requestsTo('GET /v1/product').length - before, 30)
  })
})

describe('the real CLI', () => {
  test('baton serve runs the canary its config names; baton canary promote ends it; alerts has its rule', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const dir = mkdtempSync(join(tmpdir(), 'baton-canary-'))
    const adminPort = await freePort()
    const withPorts = (text: string): string =>
      text.replace('metrics: { port: 0 }', `metrics: { port: ${adminPort} }, host: 127.0.0.1, port: 0`)

    writeFileSync(join(dir, 'base.yaml'), withPorts(stable(stub, '{ config: next.yaml, weight: 10% }')))
    writeFileSync(join(dir, 'next.yaml'), withPorts(candidate(stub)))
    const { cli, url } = await startCli(t, ['serve', join(dir, 'base.yaml'), '--no-watch'])
    const forced = await get(`${url}/product`, { 'x-baton-canary': 'always' })
    assert.equal(forced.headers['baton-version'], 'v2')
    assert.deepEqual(forced.body, { product: { version: 2 } })

    const promote = spawnCli(t, ['canary', 'promote', join(dir, 'base.yaml')])
    assert.equal((await promote.exited).code, 0, promote.stderr)
    assert.match(promote.stdout, /^canary promoted at http:\/\/127\.0\.0\.1:\d+\n$/)
    const after = await get(`${url}/product`)
    assert.deepEqual(after.body, { product: { version: 2 } })
    assert.equal(after.headers['baton-version'], undefined)
    const again = spawnCli(t, ['canary', 'abort', join(dir, 'base.yaml')])
    assert.equal((await again.exited).code, 1)
    assert.match(again.stderr, /409 .*NO_CANARY/)

    const alerts = spawnCli(t, ['alerts', join(dir, 'base.yaml')])
    assert.equal((await alerts.exited).code, 0, alerts.stderr)
    assert.match(
      alerts.stdout,
      /alert: BatonCanaryRolledBack\n\s+expr: increase\(baton_canary_rollbacks_total\[10m\]\) > 0/,
    )
    cli.kill('SIGTERM')
    assert.equal((await cli.exited).code, 0)
  })
})

describe('baton serve --workers 2 with a canary', () => {
  test('baton canary abort, whichever worker takes it, ends the canary in both workers', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const dir = mkdtempSync(join(tmpdir(), 'baton-canary-workers-'))
    const adminPort = await freePort()
    const withPorts = (text: string): string =>
      text.replace('metrics: { port: 0 }', `metrics: { port: ${adminPort} }, host: 127.0.0.1, port: 0`)
    writeFileSync(join(dir, 'base.yaml'), withPorts(stable(stub, '{ config: next.yaml, weight: 50% }')))
    writeFileSync(join(dir, 'next.yaml'), withPorts(candidate(stub)))
    const { cli, url } = await startCli(t, ['serve', join(dir, 'base.yaml'), '--no-watch', '--workers', '2'])
    const abort = spawnCli(t, ['canary', 'abort', join(dir, 'base.yaml')])
    assert.equal((await abort.exited).code, 0, abort.stderr)
    const aborted = (): Record<string, unknown>[] => cli.json().filter((l) => l.event === 'canary_aborted')
    for (let i = 0; i < 200 && aborted().length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 25))
    assert.deepEqual(
      aborted()
        .map((l) => l.worker)
        .sort(),
      [1, 2],
    )
    // New connections go to the workers in turn: none of them routes to the candidate any more.
    for (let i = 0; i < 6; i++) {
      const answer = await new Promise<{ version: string | undefined; body: string }>((resolve, reject) => {
        const req = httpRequest(`${url}/product`, { agent: false, headers: { 'x-baton-canary': 'always' } }, (res) => {
          let body = ''
          res.on('data', (c: Buffer) => (body += c.toString()))
          res.on('end', () => resolve({ version: res.headers['baton-version'] as string | undefined, body }))
        })
        req.on('error', reject)
        req.end()
      })
      assert.equal(answer.version, undefined)
      assert.deepEqual(JSON.parse(answer.body), { product: { version: 1 } })
    }
    cli.kill('SIGTERM')
    assert.equal((await cli.exited).code, 0)
  })
})

describe('baton serve --canary FILE --weight N', () => {
  test('serves the candidate at that weight without a canary in the config; --weight alone is a usage error', async (t) => {
    const stub = await stubFor(t)
    routes(stub)
    const dir = mkdtempSync(join(tmpdir(), 'baton-canary-flags-'))
    const local = (text: string): string =>
      text.replace('metrics: { port: 0 }', 'host: 127.0.0.1, port: 0').replace(/^canary: .*$/m, '')
    writeFileSync(join(dir, 'base.yaml'), local(stable(stub, '')))
    writeFileSync(join(dir, 'next.yaml'), local(candidate(stub)))
    const { cli, url } = await startCli(t, [
      'serve',
      join(dir, 'base.yaml'),
      '--canary',
      join(dir, 'next.yaml'),
      '--weight',
      '100',
      '--no-watch',
    ])
    const counts = await versions(url, 20)
    assert.deepEqual([...counts], [['v2', 20]])
    cli.kill('SIGTERM')
    assert.equal((await cli.exited).code, 0)
    const alone = spawnCli(t, ['serve', join(dir, 'base.yaml'), '--weight', '5'])
    assert.equal((await alone.exited).code, 2)
    assert.match(alone.stderr, /--weight goes with --canary FILE/)
  })
})

describe('the canary block in baton check', () => {
  test('a sticky key that reads more than the request and the caller is refused, at its place', () => {
    const errors = errorsOf(
      'version: 1\ngateway: { name: X }\ncanary: { config: next.yaml, weight: 5%, sticky: "${request.params.id}" }\n',
    )
    assert.deepEqual(
      errors.map((e) => [e.code, e.message, e.line, e.hint]),
      [
        [
          'BATON_UNKNOWN_FIELD',
          'a sticky key cannot read request.params',
          3,
          'it can read request.method, request.path, request.query, request.headers and auth',
        ],
      ],
    )
  })
})

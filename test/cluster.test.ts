/**
 * `baton serve --workers 2`, spawned for real: both workers answer on one port, /metrics is the
 * sum of both (on the main port and on the admin port), a worker killed with SIGKILL is
 * restarted, SIGTERM drains both and exits 0, SIGHUP reloads each, and a crash loop ends with exit 1.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { type Cli, spawnCli, startCli } from './helpers/cli.ts'
import { stubFor } from './helpers/gateway.ts'
import { eventually, json, type Stub } from './helpers/stub.ts'

function config(stub: Stub, gateway = ''): string {
  return `version: 1
gateway:
  name: Cluster test
  host: 127.0.0.1
  logLevel: info${gateway}
services:
  items:
    url: ${stub.url}
    timeout: 5s
endpoints:
  GET /items/{id}:
    timeout: 5s
    calls:
      item:
        request: GET items /items/\${request.params.id}
    response: "\${item}"
`
}

function write(t: TestContext, yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-cluster-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'baton.yaml')
  writeFileSync(file, yaml)
  return file
}

async function serve(t: TestContext, yaml: string, workers = '2'): Promise<{ cli: Cli; port: number }> {
  const { cli, port } = await startCli(t, ['serve', write(t, yaml), '--port', '0', '--workers', workers])
  return { cli, port }
}

/** One GET on a connection of its own (so that the workers take turns): status and body. */
async function getAlone(port: number, path: string): Promise<{ status: number; body: string }> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c.toString()))
      res.on('error', reject)
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

/** The value of one series in an exposition, e.g. `baton_requests_total{method="GET",route="/items/:id",…}`. */
function valueOf(exposition: string, series: string): number | undefined {
  const line = exposition.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

const ITEMS_OK = 'baton_requests_total{method="GET",route="/items/:id",status_class="2xx",outcome="complete"}'

const events = (cli: Cli, name: string): Record<string, unknown>[] => cli.json().filter((l) => l.event === name)

async function freePort(): Promise<number> {
  const server: Server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

describe('baton serve --workers 2', () => {
  test('both workers answer; /metrics is the sum of both (100 requests read 100), which promtool accepts; SIGHUP kills no worker', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /items/:id', (req) => json({ id: req.params.id }))
    const { cli, port } = await serve(t, config(stub, '\n  rateLimit: { perIp: 100000/min }'))
    // One listening line, from the primary, once both workers listen; the memory store's limits are per worker, said once.
    const listening = events(cli, 'listening')
    assert.equal(listening.length, 1)
    assert.equal(cli.json()[0]?.event, 'listening')
    assert.deepEqual([listening[0]?.port, listening[0]?.workers, (listening[0]?.pids as number[]).length], [port, 2, 2])
    assert.equal(listening[0]?.worker, undefined)
    await cli.waitFor(/"event":"rate_limits_per_worker"/)
    const warned = events(cli, 'rate_limits_per_worker')
    assert.deepEqual(
      warned.map((l) => [l.level, l.workers]),
      [['warn', 2]],
    )

    for (let i = 0; i < 100; i++) {
      const answer = await getAlone(port, `/items/${i}`)
      assert.deepEqual([answer.status, JSON.parse(answer.body)], [200, { id: String(i) }])
    }
    assert.equal(stub.requestsTo('GET /items/:id').length, 100)
    // Each worker logged some of them (its id on each line).
    await eventually(() => events(cli, 'request').length === 100, 'the 100 access log lines', 5000)
    const byWorker = Map.groupBy(events(cli, 'request'), (l) => l.worker)
    assert.deepEqual([...byWorker.keys()].sort(), [1, 2])

    // Whichever worker the scrape lands on, the answer is the sum: until both workers have answered one (connections
    // are dealt in turn, so it takes two or three; each scrape's log line may land a little after its answer).
    const scrapers = async (): Promise<number[]> => {
      await eventually(
        () => events(cli, 'request').filter((l) => l.endpoint === 'GET /metrics').length === scraped,
        'the scrape log lines',
        5000,
      )
      return [
        ...new Set(
          events(cli, 'request')
            .filter((l) => l.endpoint === 'GET /metrics')
            .map((l) => l.worker as number),
        ),
      ].sort()
    }
    let scraped = 0
    for (let i = 0; i < 10 && (scraped < 2 || (await scrapers()).length < 2); i++) {
      const metrics = await getAlone(port, '/metrics')
      scraped++
      assert.equal(metrics.status, 200)
      assert.equal(valueOf(metrics.body, ITEMS_OK), 100)
      assert.equal(
        valueOf(
          metrics.body,
          'baton_request_duration_seconds_count{method="GET",route="/items/:id",outcome="complete"}',
        ),
        100,
      )
      assert.equal(
        valueOf(
          metrics.body,
          'baton_call_outcomes_total{method="GET",route="/items/:id",call="item",service="items",outcome="success"}',
        ),
        100,
      )
      assert.equal(valueOf(metrics.body, 'baton_requests_in_flight'), 0)
      const promtool = spawnSync('promtool', ['check', 'metrics'], { input: metrics.body, encoding: 'utf8' })
      if (promtool.error === undefined) assert.equal(promtool.status, 0, `${promtool.stdout}${promtool.stderr}`)
      else t.diagnostic('promtool is not installed (Debian package prometheus): the exposition was not checked')
    }
    assert.deepEqual(await scrapers(), [1, 2])

    // SIGHUP is passed on: each worker reloads the config (README "Reload"), none dies of it, and both still answer.
    cli.kill('SIGHUP')
    await eventually(() => events(cli, 'reloaded').length === 2, 'both workers reloaded', 5000)
    assert.deepEqual(
      events(cli, 'reloaded')
        .map((l) => l.worker)
        .sort(),
      [1, 2],
    )
    for (let i = 0; i < 4; i++) assert.equal((await getAlone(port, `/items/h${i}`)).status, 200)
    assert.equal(events(cli, 'worker_died').length, 0)
    assert.equal(cli.child.exitCode, null)
  })

  test('metrics on the admin port: the sum of both workers there too', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /items/:id', (req) => json({ id: req.params.id }))
    const admin = await freePort()
    const { port } = await serve(t, config(stub, `\n  metrics: { port: ${admin} }`))
    for (let i = 0; i < 10; i++) assert.equal((await getAlone(port, `/items/${i}`)).status, 200)
    assert.equal((await getAlone(port, '/metrics')).status, 404)
    for (let i = 0; i < 2; i++) assert.equal(valueOf((await getAlone(admin, '/metrics')).body, ITEMS_OK), 10)
  })

  test('an invalidation or a reload POSTed to one worker is passed on to the other: the whole instance acts on it', async (t) => {
    const stub = await stubFor(t)
    let version = 1
    stub.route('GET /items/:id', (req) => json({ id: req.params.id, version }))
    const admin = await freePort()
    const cached = config(stub, `\n  metrics: { port: ${admin} }`).replace(
      '    response: "${item}"',
      '    cache: { ttl: 60s, tags: ["item:${request.params.id}"] }\n    response: "${item}"',
    )
    const file = write(t, cached)
    // --no-watch: only the POST may reload them.
    const { cli, port } = await startCli(t, ['serve', file, '--port', '0', '--workers', '2', '--no-watch'])
    const calls = (): number => stub.requestsTo('GET /items/:id').length
    // The workers take turns with new connections: each caches the answer once (a miss each), then hits.
    for (let i = 0; i < 4; i++)
      assert.deepEqual(JSON.parse((await getAlone(port, '/items/1')).body), { id: '1', version: 1 })
    assert.equal(calls(), 2)
    version = 2
    const dropped = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port: admin,
          path: '/admin/cache/invalidate',
          method: 'POST',
          agent: false,
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          let body = ''
          res.on('data', (c: Buffer) => (body += c.toString()))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        },
      )
      req.on('error', reject)
      req.end(JSON.stringify({ tags: ['item:1'] }))
    })
    assert.equal(dropped.status, 200)
    assert.deepEqual(JSON.parse(dropped.body), { tags: ['item:1'], dropped: 1, published: false })
    // Both workers dropped it (a line each), whichever got the POST: each misses once more, then hits.
    await eventually(() => events(cli, 'cache_invalidated').length === 2, 'both workers dropped item:1', 5000)
    assert.deepEqual(
      events(cli, 'cache_invalidated')
        .map((l) => [l.worker, l.dropped])
        .sort(),
      [
        [1, 1],
        [2, 1],
      ],
    )
    for (let i = 0; i < 4; i++)
      assert.deepEqual(JSON.parse((await getAlone(port, '/items/1')).body), { id: '1', version: 2 })
    assert.equal(calls(), 4)

    // A reload POSTed to one worker reloads the other too (its log line says why).
    writeFileSync(file, cached.replace('timeout: 5s\nendpoints', 'timeout: 4s\nendpoints'))
    const reloaded = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: admin, path: '/admin/reload', method: 'POST', agent: false },
        (res) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode ?? 0))
        },
      )
      req.on('error', reject)
      req.end()
    })
    assert.equal(reloaded, 200)
    await eventually(() => events(cli, 'reloaded').length >= 2, 'both workers reloaded', 5000)
    const workers = new Set(events(cli, 'reloaded').map((l) => l.worker))
    assert.deepEqual([...workers].sort(), [1, 2])
  })

  test('a worker killed with SIGKILL is restarted (warn line), and requests keep being answered', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /items/:id', (req) => json({ id: req.params.id }))
    const { cli, port } = await serve(t, config(stub))
    const [victim, survivor] = events(cli, 'listening')[0]?.pids as [number, number]
    process.kill(victim, 'SIGKILL')
    await cli.waitFor(/"event":"worker_listening"/)
    const died = events(cli, 'worker_died')
    assert.deepEqual(
      died.map((l) => [l.level, l.pid, l.signal, l.code]),
      [['warn', victim, 'SIGKILL', null]],
    )
    const restarted = events(cli, 'worker_listening')[0]?.pid as number
    assert.notEqual(restarted, victim)
    for (let i = 0; i < 10; i++) assert.equal((await getAlone(port, `/items/${i}`)).status, 200)
    // The survivor and the new worker share them.
    const workers = new Set(
      events(cli, 'request')
        .slice(-10)
        .map((l) => l.worker),
    )
    assert.equal(workers.size, 2)
    assert.equal(cli.child.exitCode, null)
    // The survivor is still the one it was.
    process.kill(survivor, 0)
  })

  test('SIGTERM with requests in flight on both workers: they finish, every worker drains, exit 0', async (t) => {
    const stub = await stubFor(t)
    const release = Promise.withResolvers<void>()
    stub.route('GET /items/:id', async (req) => {
      await release.promise
      return json({ id: req.params.id })
    })
    const { cli, port } = await serve(t, config(stub))
    const inFlight = [1, 2, 3, 4].map((i) => getAlone(port, `/items/${i}`))
    await eventually(() => stub.inFlight('GET /items/:id') === 4, '4 requests in flight at the stub', 5000)

    cli.kill('SIGTERM')
    await eventually(() => events(cli, 'stopping').length === 3, 'the primary and both workers stopping', 5000)
    const stopping = events(cli, 'stopping')
    // The workers' lines: 4 requests between them, each one its own worker.
    const workers = stopping.filter((l) => l.worker !== undefined)
    assert.deepEqual(workers.map((l) => l.worker).sort(), [1, 2])
    assert.equal(
      workers.reduce((n, l) => n + (l.inFlight as number), 0),
      4,
    )
    assert.equal(cli.child.exitCode, null)

    release.resolve()
    const answers = await Promise.all(inFlight)
    assert.deepEqual(
      answers.map((a) => [a.status, JSON.parse(a.body)]),
      [1, 2, 3, 4].map((i) => [200, { id: String(i) }]),
    )
    assert.deepEqual(await cli.exited, { code: 0, signal: null }, cli.stderr)
    const stopped = events(cli, 'stopped')
    assert.deepEqual(stopped.map((l) => `${String(l.worker ?? 'primary')} ${String(l.exitCode)}`).sort(), [
      '1 0',
      '2 0',
      'primary 0',
    ])
    assert.equal(
      stopped.filter((l) => l.worker !== undefined).reduce((n, l) => n + (l.drained as number), 0),
      4,
    )
    assert.equal(cli.json().at(-1)?.event, 'stopped')
    assert.equal(events(cli, 'worker_died').length, 0)
  })

  test('workers that die as they start (the port is taken): restarted with a backoff, then a crash loop ends it with exit 1', async (t) => {
    const stub = await stubFor(t)
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    t.after(() => taken.close())
    const { port } = taken.address() as { port: number }
    const cli = spawnCli(t, ['serve', write(t, config(stub)), '--port', String(port), '--workers', '2'])
    const exit = await cli.exited
    assert.deepEqual(exit, { code: 1, signal: null }, cli.stdout + cli.stderr)
    const died = events(cli, 'worker_died')
    assert.deepEqual(
      died.map((l) => [l.level, l.code, l.restartInMs]),
      [
        ['warn', 1, 100],
        ['warn', 1, 200],
        ['warn', 1, 400],
        ['warn', 1, 800],
      ],
    )
    const loop = events(cli, 'crash_loop')
    assert.deepEqual(
      loop.map((l) => [l.level, l.deaths]),
      [['error', 5]],
    )
    assert.equal(events(cli, 'listening').length, 0)
    assert.equal(cli.json().at(-1)?.event, 'stopped')
  })

  test('--workers takes a number from 1 or auto: anything else is a usage error (exit 2)', async (t) => {
    const stub = await stubFor(t)
    const file = write(t, config(stub))
    for (const bad of ['0', 'two', '1.5']) {
      const cli = spawnCli(t, ['serve', file, '--workers', bad])
      assert.deepEqual(await cli.exited, { code: 2, signal: null })
      assert.match(cli.stderr, /--workers <n>' argument '.*' is invalid\. a number from 1 to 1024, or auto/)
    }
  })
})

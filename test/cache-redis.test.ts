/**
 * The response cache shared through Redis: two gateway instances over one Redis (tiered: memory
 * in front), invalidation reaching both (the webhook, `baton invalidate`), and a Redis that dies
 * or freezes mid-run: answers keep coming, computed without the cache, and caching resumes.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { isDeepStrictEqual } from 'node:util'
import { gunzipSync } from 'node:zlib'
import pino, { type Logger } from 'pino'
import { spawnCli } from './helpers/cli.ts'
import { get, getBytes, post, startGateway, stubFor } from './helpers/gateway.ts'
import { ownRedisFor, redisFor, redisProxyFor, uniquePrefix } from './helpers/redis.ts'
import { fakeClock } from './helpers/resilience.ts'
import { eventually, json, type Stub } from './helpers/stub.ts'

const TOKEN = 'purge-token-0123456789abcdef'

function config(stub: Stub, redisUrl: string, prefix: string, store = 'tiered', redisExtra = ''): string {
  return `
version: 1
gateway:
  name: Shared cache
  logLevel: silent
  redis: { url: "${redisUrl}", prefix: "${prefix}"${redisExtra} }
  cache: { invalidation: { token: "\${env.PURGE}" } }
services:
  catalog: { url: "${stub.url}" }
endpoints:
  GET /products/{id}:
    cache: { ttl: 60s, store: ${store}, tags: ["product:\${request.params.id}"] }
    calls:
      product: { request: "GET catalog /products/\${request.params.id}" }
`
}

function product(stub: Stub): void {
  let n = 0
  stub.route('GET /products/:id', (req) => json({ id: req.params.id, version: ++n }))
}

const calls = (stub: Stub): number => stub.requestsTo('GET /products/:id').length
const status = (res: { headers: Record<string, string> }): string => res.headers['cache-status'] ?? ''

function capture(): { logger: Logger; lines: { event?: string; msg: string }[] } {
  const lines: { event?: string; msg: string }[] = []
  const logger = pino({ base: null, level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) })
  return { logger, lines }
}

describe('two instances, one Redis', () => {
  test('an answer stored by one is a hit on the other; the webhook on one drops it on both', async (t) => {
    const redis = await redisFor(t)
    if (redis === null) return
    const stub = await stubFor(t)
    product(stub)
    const yaml = config(stub, redis.url, redis.prefix)
    const a = await startGateway(t, yaml, { env: { PURGE: TOKEN } })
    const b = await startGateway(t, yaml, { env: { PURGE: TOKEN } })
    const first = await get(`${a.url}/products/1`)
    assert.equal(status(first), 'baton; fwd=miss; stored')
    // The write to Redis is not waited for by the client: poll until B finds it.
    let onB = await get(`${b.url}/products/1`)
    for (let i = 0; i < 100 && !status(onB).startsWith('baton; hit'); i++) onB = await get(`${b.url}/products/1`)
    assert.match(status(onB), /^baton; hit/)
    assert.deepEqual(onB.body, first.body)
    assert.equal(onB.headers.etag, first.headers.etag)
    const keys = await redis.keys()
    assert.ok(
      keys.some((k) => k.startsWith(`${redis.prefix}:cache:e:`)) && keys.includes(`${redis.prefix}:cache:t:product:1`),
      `entry and tag set in Redis: ${keys.join(', ')}`,
    )
    const misses = calls(stub)

    const done = await post(
      `${a.url}/admin/cache/invalidate`,
      { tags: ['product:1'] },
      { authorization: `Bearer ${TOKEN}` },
    )
    assert.equal(done.status, 200)
    assert.deepEqual(done.body, { tags: ['product:1'], dropped: 1, published: true })
    // B's memory tier is dropped by the event: its next request runs again.
    let after = await get(`${b.url}/products/1`)
    for (let i = 0; i < 200 && status(after).startsWith('baton; hit'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10))
      after = await get(`${b.url}/products/1`)
    }
    assert.equal(status(after), 'baton; fwd=miss; stored')
    assert.equal(calls(stub), misses + 1)
  })

  test('hits from Redis alone (store: redis) are compressed for clients that accept it, the same bytes each time', async (t) => {
    const redis = await redisFor(t)
    if (redis === null) return
    const stub = await stubFor(t)
    const big = { id: '3', description: 'a product described at length '.repeat(80) }
    stub.route('GET /products/:id', json(big))
    const yaml = config(stub, redis.url, redis.prefix, 'redis')
    const a = await startGateway(t, yaml, { env: { PURGE: TOKEN } })
    const b = await startGateway(t, yaml, { env: { PURGE: TOKEN } })
    const zipped = { 'accept-encoding': 'gzip' }
    const miss = await getBytes(`${a.url}/products/3`, zipped)
    assert.equal(status(miss), 'baton; fwd=miss; stored')
    let onB = await getBytes(`${b.url}/products/3`, zipped)
    for (let i = 0; i < 100 && !status(onB).startsWith('baton; hit'); i++)
      onB = await getBytes(`${b.url}/products/3`, zipped)
    const again = await getBytes(`${b.url}/products/3`, zipped)
    for (const res of [miss, onB, again]) {
      assert.equal(res.headers['content-encoding'], 'gzip')
      assert.equal(res.headers['content-length'], String(res.body.length))
      assert.deepEqual(JSON.parse(gunzipSync(res.body).toString('utf8')), { product: big })
    }
    assert.match(status(again), /^baton; hit/)
    assert.ok(onB.body.equals(again.body))
    assert.equal(stub.requestsTo('GET /products/:id').length, 1)
  })

  test('baton invalidate TAG publishes to every instance and empties Redis of the tag', async (t) => {
    const redis = await redisFor(t)
    if (redis === null) return
    const stub = await stubFor(t)
    product(stub)
    const yaml = config(stub, redis.url, redis.prefix)
    const a = await startGateway(t, yaml, { env: { PURGE: TOKEN } })
    const b = await startGateway(t, yaml, { env: { PURGE: TOKEN } })
    const old = (await get(`${a.url}/products/7`)).body
    await get(`${b.url}/products/7`)
    await get(`${a.url}/products/8`)
    await eventually(() => calls(stub) >= 2, 'answers stored')
    const before = calls(stub)
    const dir = mkdtempSync(join(tmpdir(), 'baton-invalidate-'))
    const file = join(dir, 'baton.yaml')
    writeFileSync(file, yaml)
    const cli = spawnCli(t, ['invalidate', file, 'product:7'], {
      env: { ...process.env, PURGE: TOKEN, NO_COLOR: '1' },
    })
    const exit = await cli.exited
    assert.equal(exit.code, 0, cli.stderr)
    assert.match(
      cli.stdout,
      /^dropped 1 cached answer in Redis for product:7; every instance was told \(channel .*:cache:invalidate\)\n$/,
    )
    // Neither instance serves the dropped answer once the event has reached it (one of them computes the new one).
    for (const url of [b.url, a.url]) {
      let res = await get(`${url}/products/7`)
      for (let i = 0; i < 200 && isDeepStrictEqual(res.body, old); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10))
        res = await get(`${url}/products/7`)
      }
      assert.notDeepEqual(res.body, old, `${url} dropped product:7`)
    }
    assert.match(status(await get(`${a.url}/products/8`)), /^baton; hit/)
    assert.ok(calls(stub) > before)
  })

  test('baton invalidate with a memory-only config says what to do instead, exit 1', async (t) => {
    const stub = await stubFor(t)
    const dir = mkdtempSync(join(tmpdir(), 'baton-invalidate-'))
    const file = join(dir, 'baton.yaml')
    writeFileSync(file, config(stub, 'redis://127.0.0.1:6379', uniquePrefix(), 'memory'))
    const cli = spawnCli(t, ['invalidate', file, 'product:7'], { env: { ...process.env, PURGE: TOKEN, NO_COLOR: '1' } })
    const exit = await cli.exited
    assert.equal(exit.code, 1)
    assert.match(cli.stderr, /baton invalidate: no endpoint caches in Redis .*invalidation webhook instead/)
  })
})

describe('Redis failing', () => {
  test('Redis killed mid-run: every request still answered (from the service), one warning; back: cached again', async (t) => {
    const own = await ownRedisFor(t)
    if (own === null) return
    const stub = await stubFor(t)
    product(stub)
    const { logger, lines } = capture()
    const { url } = await startGateway(t, config(stub, own.url, uniquePrefix(), 'redis'), {
      env: { PURGE: TOKEN },
      logger,
    })
    await get(`${url}/products/1`)
    let hit = await get(`${url}/products/1`)
    for (let i = 0; i < 100 && !status(hit).startsWith('baton; hit'); i++) hit = await get(`${url}/products/1`)
    assert.match(status(hit), /^baton; hit/)

    await own.kill()
    const before = calls(stub)
    for (let i = 0; i < 5; i++) {
      const res = await get(`${url}/products/1`)
      assert.equal(res.status, 200)
      assert.equal(status(res), 'baton; fwd=miss; stored')
    }
    assert.equal(calls(stub), before + 5)
    const warnings = (): string[] => lines.filter((l) => l.event === 'cache_store').map((l) => l.msg)
    await eventually(() => warnings().length === 1, 'one warning for the outage')
    assert.match(
      warnings()[0] as string,
      /^cache store unavailable \(.*\): answers are computed without it until it is back$/,
    )

    await own.restart()
    await eventually(() => warnings().length === 2, 'the store is back', 10_000)
    assert.equal(warnings()[1], 'cache store is back: answers are cached again')
    await get(`${url}/products/2`)
    let again = await get(`${url}/products/2`)
    for (let i = 0; i < 100 && !status(again).startsWith('baton; hit'); i++) again = await get(`${url}/products/2`)
    assert.match(status(again), /^baton; hit/)
  })

  test('Redis frozen: only the first lookups wait for its timeout; the rest skip it until a probe succeeds', async (t) => {
    const redis = await redisFor(t)
    if (redis === null) return
    const proxy = await redisProxyFor(t, redis.url)
    const stub = await stubFor(t)
    product(stub)
    const clock = fakeClock()
    const { url } = await startGateway(
      t,
      config(stub, proxy.url, redis.prefix, 'redis', ', timeout: 100ms, breaker: { failures: 3, openFor: 5s }'),
      { env: { PURGE: TOKEN }, clock },
    )
    // Connected and working: a stored answer is a hit.
    await get(`${url}/products/1`)
    await eventually(() => true, 'settled')
    proxy.pause()
    const sent = proxy.commands
    for (let i = 0; i < 10; i++) {
      const res = await get(`${url}/products/2`)
      assert.equal(res.status, 200)
    }
    // At most 3 failures in a row (a lookup, or a write: MULTI, SET, SADD, 2 × PEXPIRE, EXEC) reached the frozen
    // Redis; then the store was skipped.
    const frozenCommands = proxy.commands - sent
    assert.ok(frozenCommands <= 3 * 6, `at most 3 failures' worth of commands, saw ${frozenCommands}`)
    assert.equal(calls(stub), 11)
    const afterFreeze = proxy.commands
    for (let i = 0; i < 5; i++) await get(`${url}/products/3`)
    assert.equal(proxy.commands, afterFreeze, 'the breaker keeps requests off the frozen Redis')
    proxy.resume()
    clock.advance(5000)
    // One probe, then the store is used again: an answer is stored and found.
    let res = await get(`${url}/products/4`)
    for (let i = 0; i < 100 && !status(res).startsWith('baton; hit'); i++) res = await get(`${url}/products/4`)
    assert.match(status(res), /^baton; hit/)
  })
})

/**
 * The guarded Redis store on its own, against a real Redis: results and UNAVAILABLE, a frozen
 * Redis (a proxy that stops forwarding) skipped after `breaker.failures` timeouts in a row and
 * probed back one command at a time, one warning per outage and one line when it is over,
 * publish/subscribe across connections, and a Redis restarted under it. Time for the breaker is
 * a fake clock: no test waits for openFor.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { type Logger, pino } from 'pino'
import { type RedisSettings, RedisStore, type RedisStoreOptions, UNAVAILABLE } from '../src/store/redis.ts'
import { freePort, ownRedisFor, redisFor, redisProxyFor, uniquePrefix } from './helpers/redis.ts'
import { type FakeClock, fakeClock } from './helpers/resilience.ts'
import { eventually } from './helpers/stub.ts'
import { logOptions } from '../src/observability/log.ts'

interface LogLine {
  level: string
  msg: string
  event?: string
  [key: string]: unknown
}

function capture(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const logger = pino(logOptions({ format: 'baton', time: 'epoch', level: 'info', service: 'test' }), {
    write: (line: string) => lines.push(JSON.parse(line) as LogLine),
  })
  return { logger, lines }
}

interface Watched {
  readonly store: RedisStore
  readonly clock: FakeClock
  readonly lines: LogLine[]
  /** What onFailure was told, in order. */
  readonly failures: ('command' | 'connection')[]
  /** What onStateChange was told, in order. */
  readonly states: boolean[]
  /** The store's log lines' messages. */
  messages(): string[]
}

const settings = (url: string, overrides: Partial<RedisSettings> = {}): RedisSettings => ({
  url,
  timeout: 100,
  prefix: uniquePrefix(),
  breaker: { failures: 3, openFor: 5000 },
  ...overrides,
})

/** A store on `url`, watched, closed after the test. */
function storeFor(t: TestContext, url: string, overrides: Partial<RedisSettings> = {}, name = 'cache'): Watched {
  const clock = fakeClock()
  const { logger, lines } = capture()
  const failures: ('command' | 'connection')[] = []
  const states: boolean[] = []
  const options: RedisStoreOptions = {
    logger,
    clock,
    onFailure: (kind) => failures.push(kind),
    onStateChange: (up) => states.push(up),
  }
  const store = new RedisStore(name, settings(url, overrides), options)
  t.after(() => store.close())
  return {
    store,
    clock,
    lines,
    failures,
    states,
    messages: () => lines.filter((l) => l.event === `${name.replaceAll(' ', '_')}_store`).map((l) => l.msg),
  }
}

describe('run', () => {
  test('a command gives its result; one that throws gives UNAVAILABLE, counted, and the store stays up', async (t) => {
    const redis = await redisFor(t)
    if (redis === null) return
    const w = storeFor(t, redis.url)
    await w.store.ready()
    assert.equal(w.store.up, true)
    assert.deepEqual(w.states, [true])
    const key = `${redis.prefix}:n`
    assert.equal(await w.store.run((r) => r.incr(key)), 1)
    assert.equal(await w.store.run((r) => r.incr(key)), 2)
    // A wrong-type error is Redis answering: a failed command all the same.
    assert.equal(await w.store.run((r) => r.lpush(key, 'x')), UNAVAILABLE)
    assert.deepEqual(w.failures, ['command'])
    assert.equal(w.store.up, true)
    assert.equal(await w.store.run((r) => r.get(key)), '2')
    assert.deepEqual(w.messages(), [])
  })

  test('a failure between successes does not add up: the breaker opens on failures in a row only', async (t) => {
    const redis = await redisFor(t)
    if (redis === null) return
    const w = storeFor(t, redis.url)
    await w.store.ready()
    const key = `${redis.prefix}:s`
    await w.store.run((r) => r.set(key, 'v'))
    for (let i = 0; i < 5; i++) {
      assert.equal(await w.store.run((r) => r.lpush(key, 'x')), UNAVAILABLE)
      assert.equal(await w.store.run((r) => r.lpush(key, 'x')), UNAVAILABLE)
      assert.equal(await w.store.run((r) => r.get(key)), 'v')
    }
    assert.equal(w.failures.length, 10)
    assert.equal(w.store.up, true)
    assert.deepEqual(w.states, [true])
  })

  test('no Redis: UNAVAILABLE at once without a command sent, connection failures counted, one warning, no crash', async (t) => {
    const unexpected: unknown[] = []
    const collect = (err: unknown): void => {
      unexpected.push(err)
    }
    process.on('uncaughtException', collect)
    process.on('unhandledRejection', collect)
    t.after(() => {
      process.off('uncaughtException', collect)
      process.off('unhandledRejection', collect)
    })
    const w = storeFor(t, `redis://127.0.0.1:${await freePort()}`, {}, 'rate limit')
    let called = 0
    for (let i = 0; i < 5; i++) {
      assert.equal(
        await w.store.run(async () => {
          called++
          return 'ran'
        }),
        UNAVAILABLE,
      )
    }
    assert.equal(called, 0)
    assert.equal(await w.store.publish('nowhere', 'x'), false)
    await eventually(() => w.failures.length >= 2, 'two failed connection attempts', 5000)
    assert.ok(w.failures.every((k) => k === 'connection'))
    assert.equal(w.store.up, false)
    assert.deepEqual(w.states, [])
    const messages = w.messages()
    assert.equal(messages.length, 1, JSON.stringify(messages))
    assert.match(
      messages[0] ?? '',
      /^rate limit store unavailable \(.*ECONNREFUSED.*\): serving without it until it is back$/,
    )
    assert.equal(w.lines[0]?.level, 'warn')
    await w.store.close()
    assert.deepEqual(unexpected, [])
  })
})

describe('a frozen Redis', () => {
  /** A store through a proxy that can freeze, connected. */
  async function frozenFor(t: TestContext) {
    const redis = await redisFor(t)
    if (redis === null) return null
    const proxy = await redisProxyFor(t, redis.url)
    const w = storeFor(t, proxy.url)
    await w.store.ready()
    assert.equal(await w.store.run((r) => r.ping()), 'PONG')
    return { redis, proxy, ...w }
  }

  test('only the first `failures` commands wait for the timeout; the rest are skipped without reaching Redis', async (t) => {
    const f = await frozenFor(t)
    if (f === null) return
    const { store, proxy } = f
    proxy.pause()
    const before = proxy.commands
    const results: unknown[] = []
    for (let i = 0; i < 10; i++) results.push(await store.run((r) => r.ping()))
    assert.deepEqual(results, Array(10).fill(UNAVAILABLE))
    assert.equal(proxy.commands - before, 3, 'commands that reached the frozen Redis')
    assert.deepEqual(f.failures, ['command', 'command', 'command'])
    assert.equal(store.up, false)
    assert.deepEqual(f.states, [true, false])
    assert.deepEqual(f.messages(), [
      'cache store unavailable (3 commands failed in a row, the last: Command timed out): serving without it until it is back',
    ])
    assert.equal(f.lines[0]?.level, 'warn')
  })

  test('after openFor one probe goes through at a time; a failed probe keeps it skipped; a good one brings it back', async (t) => {
    const f = await frozenFor(t)
    if (f === null) return
    const { store, proxy, clock } = f
    proxy.pause()
    for (let i = 0; i < 3; i++) assert.equal(await store.run((r) => r.ping()), UNAVAILABLE)
    let sent = proxy.commands

    clock.advance(4999)
    assert.equal(await store.run((r) => r.ping()), UNAVAILABLE)
    assert.equal(proxy.commands, sent, 'a command went through before openFor')

    // Half-open, still frozen: the probe waits for its timeout, a second command meanwhile is skipped.
    clock.advance(1)
    const probe = store.run((r) => r.ping())
    assert.equal(await store.run((r) => r.ping()), UNAVAILABLE)
    assert.equal(await probe, UNAVAILABLE)
    assert.equal(proxy.commands, sent + 1)
    sent = proxy.commands
    assert.equal(store.up, false)
    // Open again, for another openFor.
    assert.equal(await store.run((r) => r.ping()), UNAVAILABLE)
    assert.equal(proxy.commands, sent)

    proxy.resume()
    clock.advance(5000)
    assert.equal(await store.run((r) => r.ping()), 'PONG')
    assert.equal(proxy.commands, sent + 1)
    assert.equal(store.up, true)
    assert.deepEqual(f.states, [true, false, true])
    assert.equal(await store.run((r) => r.echo('again')), 'again')
    assert.deepEqual(
      f.messages().map((m) => m.replace(/\(.+\)/, '(…)')),
      ['cache store unavailable (…): serving without it until it is back', 'cache store is back'],
    )
    assert.deepEqual(f.failures, ['command', 'command', 'command', 'command'])
  })

  test('the answers held back while frozen do not get mixed up with later commands', async (t) => {
    const f = await frozenFor(t)
    if (f === null) return
    const { store, proxy, clock } = f
    const key = `${f.redis.prefix}:k`
    proxy.pause()
    for (let i = 0; i < 3; i++) assert.equal(await store.run((r) => r.incr(key)), UNAVAILABLE)
    proxy.resume()
    clock.advance(5000)
    // The three INCRs reach Redis late; their answers are not taken for this one's.
    assert.equal(await store.run((r) => r.get(key)), '3')
    assert.equal(await store.run((r) => r.incr(key)), 4)
  })
})

describe('publish and subscribe', () => {
  test('a subscriber receives what another connection publishes, and what the store publishes', async (t) => {
    const redis = await redisFor(t)
    if (redis === null) return
    const w = storeFor(t, redis.url)
    await w.store.ready()
    const channel = `${redis.prefix}:events`
    const got: string[] = []
    const alsoGot: string[] = []
    await w.store.subscribe(channel, (m) => got.push(m))
    await w.store.subscribe(channel, (m) => alsoGot.push(m))
    const other = new Redis(redis.url)
    t.after(() => other.quit())
    assert.equal(await other.publish(channel, 'from another'), 1, 'one subscribed connection')
    assert.equal(await w.store.publish(channel, 'from the store'), true)
    await eventually(() => got.length === 2, 'both messages')
    assert.deepEqual(got, ['from another', 'from the store'])
    assert.deepEqual(alsoGot, got)
    await other.publish(`${redis.prefix}:elsewhere`, 'not for us')
    await other.publish(channel, 'last')
    await eventually(() => got.length === 3, 'the last message')
    assert.deepEqual(got, ['from another', 'from the store', 'last'])
  })

  test('Redis restarted: the store comes back with one line, and the subscriber subscribes again', async (t) => {
    const own = await ownRedisFor(t)
    if (own === null) return
    const w = storeFor(t, own.url)
    await w.store.ready()
    const channel = 'baton-test:restart'
    const got: string[] = []
    await w.store.subscribe(channel, (m) => got.push(m))
    const other = (): Redis => {
      const client = new Redis(own.url, { maxRetriesPerRequest: 0, retryStrategy: () => null })
      client.on('error', () => {})
      return client
    }
    const first = other()
    await first.publish(channel, 'before')
    first.disconnect()
    await eventually(() => got.length === 1, 'the message before the restart')

    await own.kill()
    await eventually(() => !w.store.up, 'the store to see Redis gone')
    assert.equal(await w.store.run((r) => r.ping()), UNAVAILABLE)
    await own.restart()
    await eventually(() => w.store.up, 'the store to reconnect', 8000)
    assert.equal(await w.store.run((r) => r.ping()), 'PONG')
    assert.deepEqual(
      w.messages().map((m) => m.replace(/\(.+\)/, '(…)')),
      ['cache store unavailable (…): serving without it until it is back', 'cache store is back'],
    )
    assert.deepEqual(w.states, [true, false, true])

    // The subscription is made again by itself: publish until it is heard.
    const second = other()
    t.after(() => second.disconnect())
    const until = performance.now() + 8000
    while (got.length === 1) {
      assert.ok(performance.now() < until, 'no message heard within 8s of the restart')
      await second.publish(channel, 'after')
      await sleep(20)
    }
    assert.deepEqual([...new Set(got)], ['before', 'after'])
  })
})

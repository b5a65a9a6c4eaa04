/**
 * A Redis for the tests that need one: REDIS_URL when set, else one on 127.0.0.1:6379 when it
 * answers PING, else a `redis-server` of the test's own on a free port. Each test gets a key
 * prefix of its own, and its keys are deleted after it, so runs never see each other's counts.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createServer, type Socket, connect as connectTcp } from 'node:net'
import type { TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'

export interface TestRedis {
  readonly url: string
  /** Unique to the test; use it as gateway.rateLimit.redis.prefix. */
  readonly prefix: string
  /** Where the Redis came from, for messages. */
  readonly source: 'REDIS_URL' | 'local' | 'spawned'
  /** Keys under the prefix, sorted. */
  keys(): Promise<string[]>
  /** Milliseconds a key has left to live (-1: none, -2: no such key). */
  pttl(key: string): Promise<number>
}

export interface OwnRedis {
  readonly url: string
  readonly port: number
  /** Kills the server (SIGKILL: an outage, not a polite shutdown) and waits for it to be gone. */
  kill(): Promise<void>
  /** Starts it again on the same port, empty (nothing is saved), and waits until it answers. */
  restart(): Promise<void>
}

const LOCAL = 'redis://127.0.0.1:6379'

/**
 * A Redis for this test, with a fresh prefix whose keys are deleted after it; null when none
 * can be had, the test then marked skipped with the reason.
 */
export async function redisFor(t: TestContext): Promise<TestRedis | null> {
  let url: string
  let source: TestRedis['source']
  const given = process.env.REDIS_URL
  if (given !== undefined && given !== '') {
    // Named on purpose: a REDIS_URL that does not answer is a broken setup, not a reason to skip.
    if (!(await ping(given))) throw new Error(`REDIS_URL=${given} does not answer PING`)
    url = given
    source = 'REDIS_URL'
  } else if (await ping(LOCAL)) {
    url = LOCAL
    source = 'local'
  } else {
    const own = await ownRedisFor(
      t,
      'no REDIS_URL, no Redis answering on 127.0.0.1:6379, and redis-server is not installed',
    )
    if (own === null) return null
    url = own.url
    source = 'spawned'
  }
  const prefix = uniquePrefix()
  const client = connect(url)
  // Never throws: a failed after hook would skip the ones after it (closing the gateways), and
  // the keys expire with their window anyway.
  t.after(async () => {
    try {
      // A server of the test's own is gone by now, and kept nothing.
      if (source === 'spawned') return
      const keys = await keysUnder(client, prefix)
      if (keys.length > 0) await client.del(...keys)
    } catch {
      // left to expire
    } finally {
      client.disconnect()
    }
  })
  return {
    url,
    prefix,
    source,
    keys: () => keysUnder(client, prefix),
    pttl: (key) => client.pttl(key),
  }
}

/**
 * A redis-server of the test's own on a free port, stopped after the test; null when the
 * binary is missing (the test then skipped with `skipReason`).
 */
export async function ownRedisFor(
  t: TestContext,
  skipReason = 'redis-server is not installed (this test stops and restarts a Redis of its own)',
): Promise<OwnRedis | null> {
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let child: ChildProcess | null = null

  const start = async (): Promise<'started' | 'missing'> => {
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    )
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => proc.once('error', resolve))
    const spawned = await Promise.race([
      new Promise<null>((resolve) => proc.once('spawn', () => resolve(null))),
      failed,
    ])
    if (spawned !== null) {
      if (spawned.code === 'ENOENT') return 'missing'
      throw spawned
    }
    child = proc
    const until = performance.now() + 5000
    while (!(await ping(url))) {
      if (proc.exitCode !== null || proc.signalCode !== null)
        throw new Error(`redis-server on port ${port} exited (${proc.exitCode ?? proc.signalCode}) before answering`)
      if (performance.now() > until) throw new Error(`redis-server on port ${port} did not answer PING within 5s`)
      await sleep(20)
    }
    return 'started'
  }

  const kill = async (): Promise<void> => {
    const proc = child
    child = null
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    proc.kill('SIGKILL')
    await exited
  }

  if ((await start()) === 'missing') {
    t.skip(skipReason)
    return null
  }
  t.after(kill)
  return {
    url,
    port,
    kill,
    async restart() {
      await kill()
      if ((await start()) === 'missing') throw new Error('redis-server disappeared')
    },
  }
}

export interface RedisProxy {
  /** redis:// URL of the proxy (same database as the Redis behind it). */
  readonly url: string
  /** Commands the clients sent so far, counted as they reach the proxy (paused or not). */
  readonly commands: number
  /** Freezes Redis as the clients see it: nothing is forwarded either way, every socket stays open. */
  pause(): void
  /** Forwards what was held, then everything again. */
  resume(): void
}

/**
 * A TCP proxy in front of `target` (a redis:// URL) that can freeze: a Redis that is slow or
 * stuck, not one that is down (its connections stay open, its commands are never answered).
 * It counts the commands that reach it, so a test can say how many a client sent. Closed after
 * the test.
 */
export async function redisProxyFor(t: TestContext, target: string): Promise<RedisProxy> {
  const { hostname, port } = new URL(target)
  let paused = false
  let commands = 0
  /** While paused: what each direction holds back, flushed on resume. */
  const held: { to: Socket; chunks: Buffer[] }[] = []
  const sockets = new Set<Socket>()
  const forward = (to: Socket, chunk: Buffer): void => {
    if (!paused) {
      to.write(chunk)
      return
    }
    let entry = held.find((h) => h.to === to)
    if (entry === undefined) held.push((entry = { to, chunks: [] }))
    entry.chunks.push(chunk)
  }
  const server = createServer((client) => {
    const upstream = connectTcp(Number(port), hostname)
    sockets.add(client).add(upstream)
    const counter = commandCounter(() => {
      commands++
    })
    client.on('data', (chunk: Buffer) => {
      counter(chunk)
      forward(upstream, chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      forward(client, chunk)
    })
    for (const [one, other] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      one.on('error', () => {})
      one.on('close', () => {
        sockets.delete(one)
        other.destroy()
      })
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  t.after(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const address = server.address()
  const proxyPort = typeof address === 'object' && address !== null ? address.port : 0
  const db = new URL(target).pathname
  return {
    url: `redis://127.0.0.1:${proxyPort}${db === '/' ? '' : db}`,
    get commands() {
      return commands
    },
    pause() {
      paused = true
    },
    resume() {
      paused = false
      for (const { to, chunks } of held.splice(0)) for (const chunk of chunks) if (!to.destroyed) to.write(chunk)
    },
  }
}

/**
 * Counts complete commands in a client's stream (RESP: an array `*N` of N bulk strings
 * `$len`), however the stream is cut into chunks.
 */
function commandCounter(onCommand: () => void): (chunk: Buffer) => void {
  let buffer = Buffer.alloc(0)
  const line = (from: number): { value: string; next: number } | null => {
    const end = buffer.indexOf('\r\n', from)
    return end === -1 ? null : { value: buffer.toString('latin1', from + 1, end), next: end + 2 }
  }
  return (chunk) => {
    buffer = Buffer.concat([buffer, chunk])
    for (;;) {
      const header = line(0)
      if (header === null) return
      let at = header.next
      let complete = true
      for (let i = 0; i < Number(header.value); i++) {
        const length = line(at)
        if (length === null || length.next + Number(length.value) + 2 > buffer.length) {
          complete = false
          break
        }
        at = length.next + Number(length.value) + 2
      }
      if (!complete) return
      buffer = buffer.subarray(at)
      onCommand()
    }
  }
}

/** A key prefix no other test or run uses. */
export function uniquePrefix(): string {
  return `baton-test:${randomUUID()}`
}

/** A port nothing listens on right now (for a Redis that is not there, or one to start). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** A client that fails at once instead of retrying: these are tests, not a service. */
function connect(url: string): Redis {
  const client = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 500,
    retryStrategy: () => null,
  })
  // Without a listener a refused connection would be printed as an unhandled error event.
  client.on('error', () => {})
  return client
}

async function ping(url: string): Promise<boolean> {
  const client = connect(url)
  try {
    await client.connect()
    return (await client.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

async function keysUnder(client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys.sort()
}

// `npm run bench:soak`: does Baton keep anything it should not, across requests and config
// versions? One `baton serve` runs for BENCH_SOAK_ROUNDS rounds of BENCH_SOAK_SECONDS under
// everything that lives across requests at once:
//
// - wrk (50 connections) asks four endpoints with ever new keys: a response cache in memory in
//   front of Redis (`store: tiered`, bounded by `gateway.cache.maxSize`), a batched forEach, a
//   coalesced endpoint with a slow optional call that often times out, and a POST cached by body;
// - clients that hang up after 1–100 ms, mid-run or while waiting for another request's run;
// - an upstream that fails 3 % of its calls, and a Redis (its own) frozen or killed for 3 s in two
//   rounds of three;
// - invalidations through the webhook every 500 ms, and a reload (SIGHUP, the config alternating
//   between two versions) every 2 s.
//
// After each round the load stops, what is in flight ends, the response caches are emptied (through
// the webhook: what they hold depends on the round's last keys), and the driver asks the gateway
// itself, through the inspector (`--inspect` on a port of loopback), for a full garbage collection
// and then for its heap and its open handles. A gateway that keeps something per request grows
// round after round; one that does not stays level. The verdict compares the last two rounds with
// rounds 2–3 (the first round also warms up: JIT code, pools, the `#recent` bodies).
//
// Environment: BENCH_SOAK_ROUNDS (8), BENCH_SOAK_SECONDS (15), BENCH_REDIS_SERVER (/usr/bin/redis-server),
// BENCH_SOAK_SNAPSHOTS (a folder for heap snapshots after round 2 and the last; see bench/heapdiff.ts).
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, startServer, stopAll } from './processes.ts'
import type { Server } from './processes.ts'
import { postsBody, userBodies } from './upstream-data.ts'
import { findWrk, runWrk } from './wrk.ts'

const ROUNDS = wholeNumber('BENCH_SOAK_ROUNDS', 8, 3, 100)
const SECONDS = wholeNumber('BENCH_SOAK_SECONDS', 15, 2, 600)
const REDIS_SERVER = process.env.BENCH_REDIS_SERVER ?? '/usr/bin/redis-server'
// A folder: heap snapshots after round 2 and after the last, to compare with bench/heapdiff.ts.
const SNAPSHOTS = process.env.BENCH_SOAK_SNAPSHOTS || undefined
if (SNAPSHOTS !== undefined) mkdirSync(SNAPSHOTS, { recursive: true })

function wholeNumber(name: string, fallback: number, min: number, max: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!Number.isInteger(value) || value < min || value > max) {
    console.error(`${name}=${text}: expected a whole number from ${min} to ${max}`)
    process.exit(1)
  }
  return value
}

const wrk = findWrk()
if (wrk === undefined) {
  console.error('bench:soak needs wrk on PATH (Debian: apt-get install wrk)')
  process.exit(1)
}
// A Redis of its own, so that it can be frozen and killed: every third round from the second
// freezes it (SIGSTOP) for 3 s, every third from the third kills it and starts it again 3 s later.
if (!existsSync(REDIS_SERVER)) {
  console.error(
    `bench:soak needs redis-server at ${REDIS_SERVER} (Debian: apt-get install redis-server; or set BENCH_REDIS_SERVER)`,
  )
  process.exit(1)
}
const redisPort = await freePort()
const startRedis = (): Promise<Server> =>
  startServer(
    'redis',
    [REDIS_SERVER, '--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    process.env,
    {
      knownPort: redisPort,
    },
  )
let redis = await startRedis()
const redisUrl = `redis://127.0.0.1:${redisPort}`

// ---------------------------------------------------------------------------------------------
// The upstream: posts, users (one by one and in batches), a slow service and a search.

const users = new Map<string, unknown>([...userBodies].map(([id, body]) => [id, JSON.parse(String(body)) as unknown]))
const upstreamStats = { requests: 0, failed: 0 }
const upstream = createServer((req, res) => {
  upstreamStats.requests++
  const url = new URL(req.url ?? '/', 'http://upstream')
  const answer = (status: number, body: string | Buffer): void => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(body)
  }
  if (url.pathname === '/posts') return answer(200, postsBody)
  if (url.pathname === '/users') {
    const found = url.searchParams.getAll('id').flatMap((id) => (users.has(id) ? [users.get(id)] : []))
    return answer(200, JSON.stringify(found))
  }
  const user = /^\/users\/(\d+)$/.exec(url.pathname)
  if (user !== null) {
    if (Math.random() < 0.03) {
      upstreamStats.failed++
      return answer(500, '{"error":"flaky"}')
    }
    const body = userBodies.get(user[1] as string)
    return body === undefined ? answer(404, '{"error":"no such user"}') : answer(200, body)
  }
  if (url.pathname.startsWith('/slow/')) {
    // 20–400 ms: the call's timeout (150 ms) cuts about two thirds of them.
    const timer = setTimeout(() => answer(200, '{"slow":true}'), 20 + Math.random() * 380)
    res.once('close', () => clearTimeout(timer))
    return
  }
  if (url.pathname === '/search' && req.method === 'POST') {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => answer(200, JSON.stringify({ query: JSON.parse(body || 'null') as unknown, hits: [1, 2, 3] })))
    return
  }
  answer(404, '{"error":"not found"}')
})
await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`

// ---------------------------------------------------------------------------------------------
// The gateway: two versions of one config, alternated by the reloads.

const config = (version: 'A' | 'B'): string => `
version: 1
gateway:
  name: Soak (bench)
  host: 127.0.0.1
  port: 0
  accessLog: false
  redis: { url: "${redisUrl}", timeout: 100ms }
  cache: { maxSize: 8mb, invalidation: { token: soak } }
services:
  api: { url: "${upstreamUrl}", timeout: ${version === 'A' ? '1s' : '900ms'} }
  slow: { url: "${upstreamUrl}", timeout: 150ms, coalesce: false }
endpoints:
  GET /screen/{n}:
    cache: { ttl: 1s, staleWhileRevalidate: 1s, scope: public, store: tiered, tags: ["n:\${request.params.n}"] }
    calls:
      posts: { request: GET api /posts }
      authors:
        forEach: \${posts}
        as: post
        request: GET api /users/\${post.userId}
        into: user
        itemFallback: { name: unknown }
    response:
      version: ${version}
      n: \${request.params.n}
      posts: '\${authors.map(p, {"id": p.id, "author": p.user.name})}'
  GET /batched/{n}:
    calls:
      posts: { request: GET api /posts }
      authors:
        forEach: \${posts}
        as: post
        request: GET api /users
        query: { id: "\${ids}", n: "\${request.params.n}" }
        batch: { itemKey: "\${post.userId}", key: id, size: 4 }
        into: user
        itemFallback: { name: unknown }
    response: { version: ${version}, count: "\${size(authors)}" }
  GET /user/{id}:
    calls:
      user: { request: "GET api /users/\${request.params.id}" }
      extra: { request: "GET slow /slow/\${request.params.id}", required: false, fallback: null }
    response: { version: ${version}, user: "\${user}", extra: "\${extra}" }
  POST /search:
    cache: { ttl: 1s, scope: public }
    calls:
      found: { request: POST api /search, body: "\${request.body}" }
    response: "\${found}"
`
const dir = mkdtempSync(join(tmpdir(), 'baton-soak-'))
const file = join(dir, 'baton.yaml')
writeFileSync(file, config('A'))

// wrk: every request a new key, out of more than the cache can hold.
const script = join(dir, 'mix.lua')
writeFileSync(
  script,
  `
math.randomseed(os.time())
request = function()
  local pick = math.random(1, 10)
  local n = math.random(1, 100000)
  if pick <= 4 then return wrk.format("GET", "/screen/" .. n) end
  if pick <= 6 then return wrk.format("GET", "/batched/" .. n) end
  if pick <= 8 then return wrk.format("GET", "/user/" .. math.random(1, 12)) end
  return wrk.format("POST", "/search", { ["Content-Type"] = "application/json" }, '{"q":' .. n .. '}')
end
`,
)

const inspectPort = await freePort()
const baton = await startServer(
  'baton',
  [process.execPath, `--inspect=127.0.0.1:${inspectPort}`, 'bin/baton.js', 'serve', file, '--no-watch'],
  { ...process.env, BATON_GC: 'parallel' },
)
const base = `http://127.0.0.1:${baton.port}`

// ---------------------------------------------------------------------------------------------
// The inspector: a full GC, then what the process holds.

interface Sample {
  heapUsed: number
  external: number
  rss: number
  resources: Record<string, number>
}

/** Asks the gateway for its heap, and for a heap snapshot written to `snapshot` when given. */
async function inspect(snapshot?: string): Promise<Sample> {
  const targets = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as Array<{
    webSocketDebuggerUrl: string
  }>
  const target = targets[0]
  if (target === undefined) throw new Error('the gateway has no inspector target')
  const socket = new WebSocket(target.webSocketDebuggerUrl)
  await new Promise((resolve, reject) => {
    socket.addEventListener('open', resolve, { once: true })
    socket.addEventListener('error', reject, { once: true })
  })
  let id = 0
  const pending = new Map<number, (result: unknown) => void>()
  const chunks: string[] = []
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as {
      id?: number
      method?: string
      params?: { chunk?: string }
      result?: unknown
      error?: unknown
    }
    if (message.method === 'HeapProfiler.addHeapSnapshotChunk') chunks.push(message.params?.chunk ?? '')
    if (message.id === undefined) return
    pending.get(message.id)?.(message.error === undefined ? message.result : { error: message.error })
    pending.delete(message.id)
  })
  const send = (method: string, params: object = {}): Promise<unknown> =>
    new Promise((resolve) => {
      const n = ++id
      pending.set(n, resolve)
      socket.send(JSON.stringify({ id: n, method, params }))
    })
  try {
    // Twice: what the first frees may hold finalisers and weak references that the second collects.
    await send('HeapProfiler.collectGarbage')
    await send('HeapProfiler.collectGarbage')
    const evaluated = (await send('Runtime.evaluate', {
      expression: `JSON.stringify({ memory: process.memoryUsage(), resources: process.getActiveResourcesInfo() })`,
      returnByValue: true,
    })) as { result?: { value?: string } }
    if (snapshot !== undefined) {
      await send('HeapProfiler.takeHeapSnapshot', { reportProgress: false })
      writeFileSync(snapshot, chunks.join(''))
    }
    const value = evaluated.result?.value
    if (value === undefined) throw new Error(`the inspector did not evaluate: ${JSON.stringify(evaluated)}`)
    const { memory, resources } = JSON.parse(value) as { memory: NodeJS.MemoryUsage; resources: string[] }
    const counted: Record<string, number> = {}
    for (const resource of resources) counted[resource] = (counted[resource] ?? 0) + 1
    return { heapUsed: memory.heapUsed, external: memory.external, rss: memory.rss, resources: counted }
  } finally {
    socket.close()
  }
}

// ---------------------------------------------------------------------------------------------
// The rest of the load: clients that hang up, invalidations, reloads.

const stats = { aborted: 0, invalidations: 0, invalidationFailures: 0, reloads: 0 }

async function hangUps(until: number): Promise<void> {
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const path =
        Math.random() < 0.5
          ? `/user/${1 + Math.floor(Math.random() * 12)}`
          : `/screen/${Math.floor(Math.random() * 100000)}`
      const req = httpRequest(`${base}${path}`, { agent: false }, (res) => {
        res.resume()
        res.once('end', resolve)
        res.once('error', () => resolve())
      })
      req.once('error', () => resolve())
      req.end()
      setTimeout(
        () => {
          stats.aborted++
          req.destroy()
          resolve()
        },
        1 + Math.random() * 99,
      ).unref()
    })
  const worker = async (): Promise<void> => {
    while (Date.now() < until) await one()
  }
  await Promise.all(Array.from({ length: 10 }, worker))
}

async function invalidations(until: number): Promise<void> {
  while (Date.now() < until) {
    const tags = Math.random() < 0.1 ? ['endpoint:GET /screen/:n'] : [`n:${Math.floor(Math.random() * 100000)}`]
    try {
      const res = await fetch(`${base}/admin/cache/invalidate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer soak' },
        body: JSON.stringify({ tags }),
      })
      await res.arrayBuffer()
      if (res.ok) stats.invalidations++
      else stats.invalidationFailures++
    } catch {
      stats.invalidationFailures++
    }
    await sleep(500)
  }
}

async function emptyCaches(): Promise<void> {
  const res = await fetch(`${base}/admin/cache/invalidate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer soak' },
    body: JSON.stringify({ tags: ['endpoint:GET /screen/:n', 'endpoint:POST /search'] }),
  })
  if (!res.ok) throw new Error(`emptying the caches: ${res.status} ${await res.text()}`)
  await res.arrayBuffer()
}

const faults = { frozen: 0, killed: 0 }

/** Freezes or kills Redis a third of the way into the round, for 3 s. */
async function redisFault(round: number, until: number): Promise<void> {
  const fault = round % 3 === 2 ? 'freeze' : round % 3 === 0 ? 'kill' : null
  if (fault === null) return
  await sleep(Math.max(0, (until - Date.now()) / 3))
  if (fault === 'freeze') {
    faults.frozen++
    process.kill(redis.pid, 'SIGSTOP')
    await sleep(3000)
    process.kill(redis.pid, 'SIGCONT')
  } else {
    faults.killed++
    process.kill(redis.pid, 'SIGKILL')
    await sleep(3000)
    redis = await startRedis()
  }
}

async function reloads(until: number): Promise<void> {
  while (Date.now() + 2000 < until) {
    await sleep(2000)
    stats.reloads++
    writeFileSync(file, config(stats.reloads % 2 === 1 ? 'B' : 'A'))
    process.kill(baton.pid, 'SIGHUP')
  }
}

// ---------------------------------------------------------------------------------------------

interface Round {
  requests: number
  non2xx: number
  errors: number
  sample: Sample
}

const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1)
const rounds: Round[] = []
let failed = false
try {
  const before = await inspect()
  console.error(`before any load: heap ${mib(before.heapUsed)} MiB after GC, rss ${mib(before.rss)} MiB`)
  for (let round = 1; round <= ROUNDS; round++) {
    const until = Date.now() + SECONDS * 1000
    const [result] = await Promise.all([
      runWrk(wrk, { url: base, durationSeconds: SECONDS, connections: 50, threads: 1, timeoutSeconds: 5, script }),
      hangUps(until),
      invalidations(until),
      reloads(until),
      redisFault(round, until),
    ])
    // Let what is still in flight end (the slow calls, the background refreshes), empty the
    // response caches (what they hold depends on the round's last keys), then look.
    await sleep(1500)
    await emptyCaches()
    const snapshot =
      SNAPSHOTS !== undefined && (round === 2 || round === ROUNDS)
        ? join(SNAPSHOTS, `round-${round}.heapsnapshot`)
        : undefined
    const sample = await inspect(snapshot)
    if (snapshot !== undefined) console.error(`heap snapshot: ${snapshot}`)
    const e = result.socketErrors
    rounds.push({
      requests: result.requests,
      non2xx: result.non2xx,
      errors: e.connect + e.read + e.write + e.timeout,
      sample,
    })
    console.error(
      `round ${round}/${ROUNDS}: ${result.requests} requests (${result.non2xx} non-2xx, ${rounds.at(-1)?.errors ?? 0} socket errors); ` +
        `heap ${mib(sample.heapUsed)} MiB after GC (caches emptied), external ${mib(sample.external)} MiB, rss ${mib(sample.rss)} MiB; ` +
        `resources ${JSON.stringify(sample.resources)}`,
    )
  }
} catch (err) {
  failed = true
  console.error(`bench:soak: ${(err as Error).stack ?? String(err)}\n${baton.output()}`)
} finally {
  await stopAll()
  upstream.close()
  upstream.closeAllConnections()
  rmSync(dir, { recursive: true, force: true })
}
if (failed) process.exit(1)

// The verdict: growth from the median of rounds 2–3 to the median of the last two, in all and per
// request served in between.
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
const heaps = rounds.map((r) => r.sample.heapUsed)
const early = median(heaps.slice(1, 3))
const late = median(heaps.slice(-2))
const growth = late / early - 1
// What the heap grew by per request served in between (wrk's requests of rounds 3 to the last).
const servedAfter = rounds.slice(2).reduce((sum, r) => sum + r.requests, 0)
const perRequest = (late - early) / servedAfter
const resourcesLate = rounds.at(-1)?.sample.resources ?? {}
console.log(
  [
    `| Round | Requests (wrk) | non-2xx | Socket errors | Heap after GC, caches emptied | External | RSS | Open resources |`,
    `|---:|---:|---:|---:|---:|---:|---:|---|`,
    ...rounds.map(
      (r, i) =>
        `| ${i + 1} | ${r.requests} | ${r.non2xx} | ${r.errors} | ${mib(r.sample.heapUsed)} MiB | ${mib(r.sample.external)} MiB | ${mib(r.sample.rss)} MiB | ` +
        `${Object.entries(r.sample.resources)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')} |`,
    ),
  ].join('\n'),
)
console.log(
  `\n${ROUNDS} × ${SECONDS} s; besides wrk: ${stats.aborted} hang-ups, ${stats.invalidations} invalidations ` +
    `(${stats.invalidationFailures} failed), ${stats.reloads} reloads; upstream: ${upstreamStats.requests} requests, ` +
    `${upstreamStats.failed} failed on purpose; Redis frozen ${faults.frozen} times and killed ${faults.killed} times (3 s each).`,
)
console.log(
  `Heap after GC, caches emptied: ${mib(early)} MiB (rounds 2–3) → ${mib(late)} MiB (last two rounds): ` +
    `${(growth * 100).toFixed(1)} %, ${perRequest.toFixed(1)} bytes per request served in between; ` +
    `open resources at the end: ${JSON.stringify(resourcesLate)}.`,
)
if (growth > 0.1 || stats.invalidationFailures > 0) {
  console.log('Verdict: the heap grew by more than 10 %, or an invalidation failed: look for a leak.')
  process.exit(1)
}
console.log('Verdict: level.')

// Bulkhead isolation under load (`npm run bench:isolation`): the throughput and latency of an
// endpoint on a healthy service, alone and while another endpoint's service hangs and is
// hammered; plus how many requests the hanging service was ever sent (the bulkhead's cap) and
// the gateway's memory. Baton only: the comparison is Baton with itself.
import { readFileSync, writeFileSync } from 'node:fs'
import { stopAll, startServer } from './processes.ts'
import { findWrk, runWrk, type WrkResult } from './wrk.ts'

const rounds = Number(process.env.BENCH_ROUNDS ?? 3)
const seconds = Number(process.env.BENCH_DURATION ?? 5)
const node = process.execPath

function line(label: string, r: WrkResult): string {
  return `| ${label} | ${Math.round(r.requestsPerSecond).toLocaleString('en-US')} | ${r.p50Ms.toFixed(1)} ms | ${r.p99Ms.toFixed(1)} ms | ${r.non2xx + r.socketErrors.connect + r.socketErrors.read + r.socketErrors.write + r.socketErrors.timeout} |`
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN

async function main(): Promise<number> {
  const wrk = findWrk()
  if (wrk === undefined) {
    console.error('install wrk: apt-get install wrk')
    return 1
  }
  const upstream = await startServer('upstream', [node, 'bench/upstream.ts'], { ...process.env, PORT: '0' })
  const upstreamUrl = `http://127.0.0.1:${upstream.port}`
  const baton = await startServer(
    'baton',
    [node, 'bin/baton.js', 'serve', 'bench/isolation.yaml', '--port', '0', '--host', '127.0.0.1'],
    { ...process.env, UPSTREAM_URL: upstreamUrl },
  )
  const base = `http://127.0.0.1:${baton.port}`
  const fast = { url: `${base}/fast`, durationSeconds: seconds, connections: 50, threads: 1, timeoutSeconds: 2 }
  await runWrk(wrk, { ...fast, durationSeconds: 5 }) // warm-up
  const alone: WrkResult[] = []
  const hung: WrkResult[] = []
  const flooded: WrkResult[] = []
  const limited: WrkResult[] = []
  // `slowClients` clients on /slow, each waiting for an answer that never comes (wrk gives up after 10 s).
  const slow = (slowClients: number, path = '/slow'): Promise<WrkResult> =>
    runWrk(wrk, {
      url: `${base}${path}`,
      durationSeconds: seconds,
      connections: slowClients,
      threads: 1,
      timeoutSeconds: 10,
    })
  for (let r = 0; r < rounds; r++) {
    alone.push(await runWrk(wrk, fast))
    // 30 clients: the bulkhead's 20 slots and 10 queue places fill up and stay full.
    hung.push((await Promise.all([runWrk(wrk, fast), slow(30)]))[0])
    // 200 clients: 170 of them are turned away at once, again and again: a flood of cheap 503s that shares the CPU.
    flooded.push((await Promise.all([runWrk(wrk, fast), slow(200)]))[0])
    // The same flood on /slow-limited: turned away with 429 by the rate limit, before the body is read or a call is planned.
    limited.push((await Promise.all([runWrk(wrk, fast), slow(200, '/slow-limited')]))[0])
    console.log(
      `round ${r + 1}/${rounds}: /fast alone ${Math.round(alone.at(-1)!.requestsPerSecond)} req/s; beside a hung service ${Math.round(hung.at(-1)!.requestsPerSecond)} req/s; beside a flood ${Math.round(flooded.at(-1)!.requestsPerSecond)} req/s; beside a rate-limited flood ${Math.round(limited.at(-1)!.requestsPerSecond)} req/s`,
    )
  }
  const stats = JSON.parse(await (await fetch(`${upstreamUrl}/__stats`)).text()) as { hanging: { peak: number } }
  const rss = baton.peakRssMiB()
  const ratio = (runs: WrkResult[], of: (r: WrkResult) => number): string =>
    (median(runs.map(of)) / median(alone.map(of))).toFixed(2)
  const report = [
    '',
    '## Bulkhead isolation (`npm run bench:isolation`)',
    '',
    `GET /fast (one call to a healthy service) measured alone; beside 30 clients stuck on GET /slow, whose service never answers and sits behind \`bulkhead: { maxConcurrent: 20, maxQueued: 10 }\` (the bulkhead full, nothing turned away); beside 200 such clients (170 turned away with 503 at once, and back at once); and beside the same 200 clients on GET /slow-limited, the same endpoint behind \`rateLimit: { perEndpoint: 20/s }\` (turned away with 429 before the body is read, and back at once). wrk -t1 -c50 -d${seconds}s per run, ${rounds} rounds; ${new Date().toISOString()}.`,
    '',
    '| /fast | Requests/s | p50 | p99 | errors |',
    '|---|---:|---:|---:|---:|',
    ...alone.map((r, i) => line(`alone, round ${i + 1}`, r)),
    ...hung.map((r, i) => line(`beside a hung service, round ${i + 1}`, r)),
    ...flooded.map((r, i) => line(`beside a flood of rejected calls, round ${i + 1}`, r)),
    ...limited.map((r, i) => line(`beside a rate-limited flood, round ${i + 1}`, r)),
    '',
    `- Beside the hung service (medians, vs alone): throughput ${ratio(hung, (r) => r.requestsPerSecond)}×, p99 ${ratio(hung, (r) => r.p99Ms)}×.`,
    `- Beside the flood: throughput ${ratio(flooded, (r) => r.requestsPerSecond)}×, p99 ${ratio(flooded, (r) => r.p99Ms)}×. The rejected calls cost little each, but 200 clients that retry the moment they are turned away are CPU load on a one-process gateway.`,
    `- Beside the rate-limited flood: throughput ${ratio(limited, (r) => r.requestsPerSecond)}×, p99 ${ratio(limited, (r) => r.p99Ms)}×. A 429 from the edge is cheaper than a 503 from a bulkhead (no body, no plan), but clients that ignore Retry-After still cost a one-process gateway a share of its CPU; in front of such clients, connection limits at the load balancer are the remedy.`,
    `- Requests the hanging service ever held at once: ${stats.hanging.peak} (the bulkhead allows 20).`,
    `- Gateway peak RSS: ${rss === undefined ? 'n/a' : `${Math.round(rss)} MiB`}.`,
    '',
  ].join('\n')
  const file = 'bench/RESULTS.md'
  const current = readFileSync(file, 'utf8')
  const at = current.indexOf('\n## Bulkhead isolation')
  writeFileSync(file, (at === -1 ? current : current.slice(0, at)).trimEnd() + '\n' + report)
  console.log(report)
  return 0
}

try {
  process.exitCode = await main()
} finally {
  await stopAll()
}

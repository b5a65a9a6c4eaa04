// `npm run bench:reload`: 100 reloads during a load run. `baton serve` answers a screen of two calls
// while the config alternates between two versions that differ in the calls' paths and in the
// answer; wrk checks every answer (generation A must carry A's values, B B's) and counts the
// failures. Reloads are driven by SIGHUP every RELOAD_EVERY_MS after the file is rewritten.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startServer, stopAll } from './processes.ts'
import { findWrk, runWrk } from './wrk.ts'

const RELOADS = Number(process.env.BENCH_RELOADS ?? 100)
const RELOAD_EVERY_MS = Number(process.env.BENCH_RELOAD_EVERY_MS ?? 100)

const wrk = findWrk()
if (wrk === undefined) {
  console.error('bench:reload needs wrk on PATH (Debian: apt-get install wrk)')
  process.exit(1)
}

// The upstream: two bodies, one per version.
const upstream = createServer((req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(req.url?.startsWith('/b') === true ? '{"from":"B"}' : '{"from":"A"}')
})
await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`

const config = (v: 'A' | 'B'): string => `
version: 1
gateway: { name: Reload bench, host: 127.0.0.1, port: 0, accessLog: false }
services:
  s: { url: "${upstreamUrl}", timeout: ${v === 'A' ? '1s' : '2s'} }
endpoints:
  GET /screen:
    calls:
      first: { request: "GET s /${v.toLowerCase()}/1" }
      second: { request: "GET s /${v.toLowerCase()}/2" }
    response: { generation: "${v}", first: "\${first.from}", second: "\${second.from}" }
`
const dir = mkdtempSync(join(tmpdir(), 'baton-reload-bench-'))
const file = join(dir, 'baton.yaml')
writeFileSync(file, config('A'))

// Counts answers whose values are not all of one generation (a Lua check in wrk, per thread, summed at the end).
const script = join(dir, 'check.lua')
writeFileSync(
  script,
  `
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) mixed = 0; checked = 0 end
function response(status, headers, body)
  checked = checked + 1
  local g = string.match(body, '"generation":"(%a)"')
  local a = string.match(body, '"first":"(%a)"')
  local b = string.match(body, '"second":"(%a)"')
  if g == nil or a ~= g or b ~= g then mixed = mixed + 1 end
end
function done(summary, latency, requests)
  local m, c = 0, 0
  for _, t in ipairs(threads) do m = m + t:get("mixed"); c = c + t:get("checked") end
  io.write(string.format("CHECKED %d MIXED %d\\n", c, m))
end
`,
)

const baton = await startServer('baton', [process.execPath, 'bin/baton.js', 'serve', file, '--no-watch'], process.env)
const url = `http://127.0.0.1:${baton.port}/screen`
const seconds = Math.ceil((RELOADS * RELOAD_EVERY_MS) / 1000) + 2
const load = runWrk(wrk, { url, durationSeconds: seconds, connections: 50, threads: 1, timeoutSeconds: 2, script })
await sleep(1000)
for (let i = 0; i < RELOADS; i++) {
  writeFileSync(file, config(i % 2 === 0 ? 'B' : 'A'))
  process.kill(baton.pid, 'SIGHUP')
  await sleep(RELOAD_EVERY_MS)
}
const result = await load
const checks = /CHECKED (\d+) MIXED (\d+)/.exec(result.raw)
const metrics = await (await fetch(`http://127.0.0.1:${baton.port}/metrics`)).text()
const metric = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN)
const reloaded = metric('baton_config_reloads_total\\{result="success"\\}')
const failed = metric('baton_config_reloads_total\\{result="failure"\\}')
console.log(
  JSON.stringify(
    {
      reloadsAsked: RELOADS,
      reloaded,
      reloadFailures: failed,
      generation: metric('baton_config_generation'),
      requests: result.requests,
      requestsPerSecond: Math.round(result.requestsPerSecond),
      p99Ms: result.p99Ms,
      non2xx: result.non2xx,
      socketErrors: result.socketErrors,
      checked: Number(checks?.[1] ?? NaN),
      mixed: Number(checks?.[2] ?? NaN),
    },
    null,
    2,
  ),
)
await stopAll()
upstream.close()

// The load benchmark: Baton against a hand-written BFF doing the same work.
//
//   npm run bench
//
// Starts a fake upstream and every gateway of bench/targets.ts as child processes on
// 127.0.0.1, checks that all gateways give the same answers, then measures each
// scenario with wrk, alternating gateways round by round, and writes bench/RESULTS.md.
// Two regimes, one after the other: the Node fake upstream (bench/upstream.ts, "slow":
// it costs about as much CPU as the gateway) and nginx (bench/nginx.ts, "fast": the
// gateway is the bottleneck).
//
// Environment: BENCH_ROUNDS (6), BENCH_DURATION (5 s per round), BENCH_WARMUP (10 s),
// BENCH_CONNECTIONS (50), BENCH_THREADS (1), BENCH_TIMEOUT (2 s, wrk's request timeout),
// BENCH_UPSTREAM (node, nginx or both: the default), BENCH_SCENARIOS (e.g. "checkout"),
// BENCH_TARGETS (default: the targets not marked optional; the first one is the reference;
// "baseline,baseline-again" measures the noise of the machine), BENCH_OUTPUT
// (bench/RESULTS.md), BENCH_NODE_FLAGS (extra flags for the Node gateways, e.g. --cpu-prof),
// BENCH_PIN (cores for the gateways, e.g. 1: they run there alone, the upstream and wrk on the
// others; see bench/pin.ts), BENCH_LOG_DIR (a folder for everything each server writes, e.g.
// with BENCH_NODE_FLAGS=--trace-gc), BENCH_HEADER (a header line wrk sends with every request,
// e.g. "Accept-Encoding: gzip, deflate, br, zstd" as browsers send it).
// A target that does not apply to a scenario, or cannot run here
// (Tailcall not installed, a config Baton refuses), is skipped with a line saying why.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual } from 'node:util'
import { cpuTimes, freePort, startServer, stealPercent, stopAll } from './processes.ts'
import type { Server } from './processes.ts'
import { comparisons, machine, pairedRatios, ratios, renderResults, summarise } from './report.ts'
import type { Round, ScenarioResult, Settings, TargetResult } from './report.ts'
import { nginxMissing, startNginx } from './nginx.ts'
import { pinned, pinningFromEnv } from './pin.ts'
import { scenarios as allScenarios, targets as allTargets } from './targets.ts'
import type { Scenario, Target, TargetRequest, Upstream } from './targets.ts'
import { findWrk, runWrk } from './wrk.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
process.chdir(root)

function numberFromEnv(name: string, fallback: number, min: number, max: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  const value = Number(text.replace(/s$/, ''))
  if (!Number.isFinite(value) || value < min || value > max || !Number.isInteger(value)) {
    throw new Error(`${name}=${text}: expected a whole number from ${min} to ${max}`)
  }
  return value
}

// BENCH_HEADER: one header line, "Name: value", that wrk sends with every request.
function headerFromEnv(): string | null {
  const text = process.env.BENCH_HEADER?.trim()
  if (text === undefined || text === '') return null
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]*[^\r\n]+$/.test(text))
    throw new Error(`BENCH_HEADER=${text}: expected one header line, e.g. "Accept-Encoding: gzip, br"`)
  return text
}

// The items named in the environment variable, or by default all but the optional ones.
function selected<T extends { name: string; optional?: boolean }>(all: T[], envName: string): T[] {
  const text = process.env[envName]
  if (text === undefined || text.trim() === '') return all.filter((item) => item.optional !== true)
  const names = text
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '')
  const unknown = names.filter((name) => !all.some((item) => item.name === name))
  if (unknown.length > 0) {
    throw new Error(`${envName}: unknown ${unknown.join(', ')} (known: ${all.map((i) => i.name).join(', ')})`)
  }
  // In the order given: the first target is the one the others are compared with.
  return names.map((name) => all.find((item) => item.name === name)).filter((item) => item !== undefined)
}

function selectedUpstreams(): Upstream[] {
  const text = (process.env.BENCH_UPSTREAM ?? 'both').trim()
  if (text === 'both' || text === '') return ['node', 'nginx']
  if (text === 'node' || text === 'nginx') return [text]
  throw new Error(`BENCH_UPSTREAM=${text}: expected node, nginx or both`)
}

// The scenarios named in BENCH_SCENARIOS (all by default), in the regimes of BENCH_UPSTREAM.
function selectedScenarios(upstreams: Upstream[]): Scenario[] {
  const text = process.env.BENCH_SCENARIOS ?? ''
  const names = text
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '')
  const unknown = names.filter((name) => !allScenarios.some((s) => s.name === name))
  if (unknown.length > 0) {
    const known = [...new Set(allScenarios.map((s) => s.name))]
    throw new Error(`BENCH_SCENARIOS: unknown ${unknown.join(', ')} (known: ${known.join(', ')})`)
  }
  return allScenarios.filter((s) => upstreams.includes(s.upstream) && (names.length === 0 || names.includes(s.name)))
}

function log(message: string): void {
  process.stderr.write(message + '\n')
}

const describe = {
  run: (r: Round) =>
    `${Math.round(r.requestsPerSecond)} req/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms` +
    (r.cpuUsPerRequest === undefined ? '' : `  cpu ${r.cpuUsPerRequest.toFixed(0)} µs/req`) +
    (r.stealPercent === undefined ? '' : `  steal ${r.stealPercent.toFixed(0)}%`) +
    (r.valid ? '' : `  INVALID: ${r.non2xx} non-2xx, socket errors ${JSON.stringify(r.socketErrors)}`),
}

// --- checking that the gateways agree ------------------------------------------------

interface Answer {
  status: number
  contentType: string
  body: unknown
  text: string
}

async function ask(gateway: Gateway, scenario: Scenario): Promise<Answer> {
  const request = gateway.target.request
  const res = await fetch(
    `http://127.0.0.1:${gateway.server.port}${request?.path ?? scenario.path}`,
    request !== undefined
      ? { method: request.method, body: request.body, headers: request.headers, signal: AbortSignal.timeout(5000) }
      : {
          method: scenario.method,
          ...(scenario.body === undefined
            ? { headers: { ...scenario.headers } }
            : {
                body: JSON.stringify(scenario.body),
                headers: { 'content-type': 'application/json', ...scenario.headers },
              }),
          signal: AbortSignal.timeout(5000),
        },
  )
  const text = await res.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  // A peer that answers the screen in its own envelope (Tailcall's data.posts).
  if (body !== undefined && gateway.target.answer !== undefined) body = gateway.target.answer(body)
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', body, text }
}

/** A target started for one scenario. */
interface Gateway {
  target: Target
  server: Server
}

// The first place where two JSON values differ, e.g. `$.pricing.subtotal`.
function firstDifference(a: unknown, b: unknown, path = '$'): string | undefined {
  if (isDeepStrictEqual(a, b)) return undefined
  if (
    typeof a !== 'object' ||
    typeof b !== 'object' ||
    a === null ||
    b === null ||
    Array.isArray(a) !== Array.isArray(b)
  ) {
    return `${path}: ${JSON.stringify(a)?.slice(0, 200)} vs ${JSON.stringify(b)?.slice(0, 200)}`
  }
  if (Array.isArray(a) && Array.isArray(b) && a.length !== b.length) {
    return `${path}: array of ${a.length} vs array of ${b.length}`
  }
  const left = a as Record<string, unknown>
  const right = b as Record<string, unknown>
  for (const key of new Set([...Object.keys(left), ...Object.keys(right)])) {
    if (!(key in left)) return `${path}.${key}: missing vs ${JSON.stringify(right[key])?.slice(0, 200)}`
    if (!(key in right)) return `${path}.${key}: ${JSON.stringify(left[key])?.slice(0, 200)} vs missing`
    const inner = firstDifference(left[key], right[key], Array.isArray(a) ? `${path}[${key}]` : `${path}.${key}`)
    if (inner !== undefined) return inner
  }
  return `${path}: differ`
}

type UpstreamStats = Record<string, number>

async function upstreamStats(upstreamUrl: string): Promise<UpstreamStats> {
  const res = await fetch(`${upstreamUrl}/__stats`, { signal: AbortSignal.timeout(5000) })
  return (await res.json()) as UpstreamStats
}

// What one request to a gateway cost upstream, e.g. "5 calls (carts 1, calculate 2, ...)".
function describeCalls(before: UpstreamStats, after: UpstreamStats): { calls: number; text: string } {
  const parts: string[] = []
  let calls = 0
  let withoutId = 0
  for (const [route, value] of Object.entries(after)) {
    const delta = value - (before[route] ?? 0)
    if (route === 'withoutRequestId') withoutId = delta
    else if (delta > 0) {
      calls += delta
      parts.push(`${route} ${delta}`)
    }
  }
  const ids = withoutId === 0 ? 'all with x-request-id' : `**${withoutId} without x-request-id**`
  return { calls, text: `${calls} upstream calls (${parts.join(', ')}), ${ids}` }
}

/** Checks that every gateway answers like the first; returns what each one sent upstream
 * (counted by the Node upstream; nginx counts nothing). */
async function verify(scenario: Scenario, gateways: Gateway[], upstreamUrl: string): Promise<string[]> {
  const counting = scenario.upstream === 'node'
  const answers: Answer[] = []
  const upstreamCalls: string[] = []
  for (const gateway of gateways) {
    const { server } = gateway
    // A cold process may miss a 200 ms call timeout on its very first request; that is
    // worth a line, not a failed benchmark.
    const first = await ask(gateway, scenario).catch((err: unknown) => (err as Error).message)
    if (typeof first === 'string' || first.status !== 200) {
      log(
        `${server.name}: first request ${typeof first === 'string' ? `failed: ${first}` : `answered ${first.status}`}`,
      )
    }
    let answer: Answer
    try {
      if (counting) {
        const before = await upstreamStats(upstreamUrl)
        answer = await ask(gateway, scenario)
        const calls = describeCalls(before, await upstreamStats(upstreamUrl))
        upstreamCalls.push(calls.text)
        log(`${server.name}: ${calls.text}`)
      } else {
        answer = await ask(gateway, scenario)
        upstreamCalls.push('not counted (nginx)')
      }
    } catch (err) {
      throw new Error(
        `${scenario.name}: ${server.name} did not answer: ${(err as Error).message}\n${server.output()}`,
        { cause: err },
      )
    }
    if (answer.status !== 200 || answer.body === undefined || !answer.contentType.includes('application/json')) {
      throw new Error(
        `${scenario.name}: ${server.name} answered ${answer.status} (${answer.contentType}), ` +
          `expected 200 with JSON${gateway.target.answer === undefined ? '' : ' in its envelope'}:\n` +
          answer.text.slice(0, 2000),
      )
    }
    answers.push(answer)
  }
  const [reference, ...others] = answers
  const referenceServer = gateways[0]?.server
  if (reference === undefined || referenceServer === undefined) return upstreamCalls
  others.forEach((answer, i) => {
    const difference = firstDifference(reference.body, answer.body)
    const name = gateways[i + 1]?.server.name
    if (difference !== undefined) {
      throw new Error(
        `${scenario.name}: ${name} and ${referenceServer.name} give different JSON.\n` +
          `First difference (${referenceServer.name} vs ${name}): ${difference}\n` +
          `${referenceServer.name}: ${reference.text.slice(0, 1500)}\n${name}: ${answer.text.slice(0, 1500)}`,
      )
    }
  })
  log(
    `${scenario.name}: ${gateways.map((g) => g.server.name).join(', ')} give the same JSON ` +
      `(${JSON.stringify(reference.body).length} bytes)`,
  )
  return upstreamCalls
}

// --- measuring -----------------------------------------------------------------------

// A POST body needs a wrk Lua script; a long bracket quotes any JSON without escaping. A
// distinct scenario's script gives every request a header of its own.
function luaScript(dir: string, scenario: Scenario): string | undefined {
  if (
    scenario.method === 'GET' &&
    scenario.body === undefined &&
    scenario.headers === undefined &&
    scenario.distinct !== true
  )
    return undefined
  const body = scenario.body === undefined ? undefined : JSON.stringify(scenario.body)
  return writeLua(join(dir, `${scenario.name}-${scenario.upstream}.lua`), {
    method: scenario.method,
    ...(body === undefined ? {} : { body }),
    headers: { ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...scenario.headers },
    distinct: scenario.distinct === true,
  })
}

function writeLua(
  file: string,
  request: { method: string; body?: string; headers: Record<string, string>; distinct: boolean },
): string {
  const lines = [`wrk.method = "${request.method}"`]
  if (request.body !== undefined) {
    let level = '='
    while (request.body.includes(`]${level}]`)) level += '='
    lines.push(`wrk.body = [${level}[${request.body}]${level}]`)
  }
  for (const [name, value] of Object.entries(request.headers)) lines.push(`wrk.headers["${name}"] = "${value}"`)
  if (request.distinct) {
    lines.push(
      'local n = 0',
      'request = function()',
      '  n = n + 1',
      '  wrk.headers["x-n"] = tostring(n)',
      '  return wrk.format()',
      'end',
    )
  }
  writeFileSync(file, lines.join('\n') + '\n')
  return file
}

function assertRunning(servers: Server[]): void {
  for (const server of servers) {
    if (server.exited !== undefined) {
      throw new Error(`${server.name} stopped during the benchmark (${server.exited}):\n${server.output()}`)
    }
  }
}

async function benchScenario(
  scenario: Scenario,
  targets: Target[],
  upstreamUrl: string,
  settings: Settings,
  wrk: string,
  scriptDir: string,
): Promise<ScenarioResult> {
  log(`\n== ${scenario.title} ==`)
  const servers: Server[] = []
  const gateways: Gateway[] = []
  const skipped: { name: string; reason: string }[] = []
  const commands = new Map<Target, string[]>()
  try {
    for (const target of targets) {
      if (target.appliesTo !== undefined && !target.appliesTo(scenario)) continue
      const ctx = { upstreamUrl, port: target.givenPort === true ? await freePort() : 0 }
      const reason = target.unavailable?.(scenario, ctx)
      if (reason !== undefined) {
        log(`${target.name}: skipped: ${reason}`)
        skipped.push({ name: target.name, reason })
        continue
      }
      const argv = target.command(scenario, ctx)
      commands.set(target, argv)
      const server = await startServer(
        `${target.name} (${scenario.name})`,
        pinned(settings.pin?.gateway, argv),
        { ...process.env, ...withUpstream(target.env, upstreamUrl), UPSTREAM_URL: upstreamUrl },
        target.givenPort === true ? { knownPort: ctx.port } : {},
      )
      log(`${target.name}: pid ${server.pid}, port ${server.port}`)
      servers.push(server)
      gateways.push({ target, server })
    }
    const upstreamCalls = await verify(scenario, gateways, upstreamUrl)

    const scenarioScript = luaScript(scriptDir, scenario)
    const measure = async ({ server, target }: Gateway, durationSeconds: number): Promise<Round> => {
      const request: TargetRequest | undefined = target.request
      const script =
        request === undefined
          ? scenarioScript
          : scenario.distinct === true
            ? writeLua(join(scriptDir, `${target.name}-${scenario.name}.lua`), { ...request, distinct: true })
            : request.script
      const machineBefore = cpuTimes()
      const cpuBefore = server.cpuSeconds()
      const result = await runWrk(wrk, {
        url: `http://127.0.0.1:${server.port}${request?.path ?? scenario.path}`,
        durationSeconds,
        connections: settings.connections,
        threads: settings.threads,
        timeoutSeconds: settings.timeoutSeconds,
        ...(script === undefined ? {} : { script }),
        ...(settings.pin === null ? {} : { cores: settings.pin.load }),
        ...(settings.header === null ? {} : { header: settings.header }),
      })
      const cpuAfter = server.cpuSeconds()
      const round: Round = {
        ...result,
        cpuUsPerRequest:
          cpuBefore === undefined || cpuAfter === undefined || result.requests === 0
            ? undefined
            : ((cpuAfter - cpuBefore) * 1e6) / result.requests,
        stealPercent: stealPercent(machineBefore, cpuTimes()),
      }
      assertRunning(servers)
      // Let the sockets of this run close before the next one starts.
      await sleep(1000)
      return round
    }

    const results: TargetResult[] = []
    for (const [i, gateway] of gateways.entries()) {
      const warmup = await measure(gateway, settings.warmupSeconds)
      log(`warm-up  ${gateway.server.name}: ${describe.run(warmup)}`)
      results.push({
        name: gateway.target.name,
        command: (commands.get(gateway.target) ?? []).map((arg) => (arg === process.execPath ? 'node' : arg)).join(' '),
        runs: [],
        warmup,
        peakRssMiB: undefined,
        upstreamCalls: upstreamCalls[i] ?? 'unknown',
        reference: gateway.target.reference === true,
      })
    }
    for (let round = 1; round <= settings.rounds; round++) {
      for (const [i, gateway] of gateways.entries()) {
        const run = await measure(gateway, settings.durationSeconds)
        results[i]?.runs.push(run)
        log(`round ${round}/${settings.rounds}  ${gateway.server.name}: ${describe.run(run)}`)
      }
    }
    servers.forEach((server, i) => {
      const result = results[i]
      if (result !== undefined) result.peakRssMiB = server.peakRssMiB()
    })
    return { scenario, targets: results, skipped }
  } finally {
    await Promise.all(servers.map((server) => server.stop()))
  }
}

// --- main ----------------------------------------------------------------------------

async function main(): Promise<number> {
  const wrk = findWrk()
  if (wrk === undefined) {
    console.error('install wrk: apt-get install wrk')
    return 1
  }
  const settings: Settings = {
    rounds: numberFromEnv('BENCH_ROUNDS', 6, 1, 20),
    durationSeconds: numberFromEnv('BENCH_DURATION', 5, 1, 300),
    warmupSeconds: numberFromEnv('BENCH_WARMUP', 10, 1, 60),
    connections: numberFromEnv('BENCH_CONNECTIONS', 50, 1, 1000),
    threads: numberFromEnv('BENCH_THREADS', 1, 1, 16),
    timeoutSeconds: numberFromEnv('BENCH_TIMEOUT', 2, 1, 60),
    pin: pinningFromEnv(),
    header: headerFromEnv(),
  }
  if (settings.connections < settings.threads) throw new Error('BENCH_CONNECTIONS must be at least BENCH_THREADS')
  const upstreams = selectedUpstreams()
  const scenarios = selectedScenarios(upstreams)
  const targets = selected(allTargets, 'BENCH_TARGETS')
  const output = resolve(process.env.BENCH_OUTPUT ?? 'bench/RESULTS.md')
  if (upstreams.includes('nginx')) {
    const missing = nginxMissing()
    if (missing !== undefined) throw new Error(`BENCH_UPSTREAM=nginx: ${missing}`)
  }
  const runs = scenarios.reduce(
    (sum, s) => sum + targets.filter((t) => t.appliesTo === undefined || t.appliesTo(s)).length,
    0,
  )
  const perRun = settings.rounds * (settings.durationSeconds + 1) + settings.warmupSeconds + 1
  log(
    `wrk ${wrk}; ${scenarios.length} scenario(s), ${runs} gateway run(s) in all, ` +
      `about ${Math.ceil((runs * perRun) / 60)} min`,
  )

  const scriptDir = mkdtempSync(join(tmpdir(), 'baton-bench-'))
  const results: ScenarioResult[] = []
  try {
    for (const regime of upstreams) {
      const inRegime = scenarios.filter((s) => s.upstream === regime)
      if (inRegime.length === 0) continue
      const upstream =
        regime === 'node'
          ? await startServer(
              'upstream',
              pinned(settings.pin?.load, [process.execPath, 'bench/upstream.ts', '--port', '0']),
              process.env,
            )
          : await startNginx(settings.pin?.load)
      const upstreamUrl = `http://127.0.0.1:${upstream.port}`
      log(`\nupstream (${regime}): pid ${upstream.pid}, ${upstreamUrl}`)
      try {
        for (const scenario of inRegime) {
          results.push(await benchScenario(scenario, targets, upstreamUrl, settings, wrk, scriptDir))
          assertRunning([upstream])
        }
      } finally {
        await upstream.stop()
      }
    }
  } finally {
    rmSync(scriptDir, { recursive: true, force: true })
  }

  const markdown = renderResults(machine(wrk), settings, results)
  writeFileSync(output, markdown + '\n')
  log('')
  for (const { scenario, targets: measured } of results) {
    const label = `${scenario.name} (${scenario.upstream})`
    for (const target of measured) {
      const s = summarise(target.runs)
      log(
        `${label} ${target.name}: ` +
          (s === undefined
            ? 'no valid run'
            : `${Math.round(s.requestsPerSecond)} req/s, p50 ${s.p50Ms.toFixed(2)} ms, p99 ${s.p99Ms.toFixed(2)} ms` +
              (s.cpuUsPerRequest === undefined ? '' : `, CPU ${s.cpuUsPerRequest.toFixed(0)} µs/req`)),
      )
    }
    for (const [target, reference] of comparisons(measured)) {
      const s = summarise(target.runs)
      const base = summarise(reference.runs)
      if (s === undefined || base === undefined) continue
      const r = ratios(s, base)
      log(
        `${label} ${target.name}/${reference.name}: throughput ${r.throughput.toFixed(2)}×, ` +
          `p50 ${r.p50.toFixed(2)}×, p99 ${r.p99.toFixed(2)}×` +
          (r.cpu === undefined ? '' : `, CPU per request ${r.cpu.toFixed(2)}×`),
      )
      const paired = pairedRatios(target.runs, reference.runs)
      if (paired !== undefined) {
        log(
          `${label} ${target.name}/${reference.name} round by round: throughput ${paired.throughput.toFixed(2)}×, ` +
            `p50 ${paired.p50.toFixed(2)}×, p99 ${paired.p99.toFixed(2)}×` +
            (paired.cpu === undefined ? '' : `, CPU per request ${paired.cpu.toFixed(2)}×`),
        )
      }
    }
  }
  log(`wrote ${output}`)
  const invalid = results.some((r) => r.targets.some((t) => t.runs.some((run) => !run.valid)))
  if (invalid) log('some rounds had errors or non-2xx answers: see the table')
  return invalid ? 1 : 0
}

let stopping = false
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.on(signal, () => {
    if (stopping) return
    stopping = true
    log(`\n${signal}: stopping the servers`)
    void stopAll().finally(() => process.exit(code))
  })
}

try {
  process.exitCode = await main()
} catch (err) {
  console.error(`bench: ${err instanceof Error ? err.message : String(err)}`)
  process.exitCode = 1
} finally {
  await stopAll()
}

/** Target env values may name the upstream's URL as {UPSTREAM_URL} (it is known only once it listens). */
function withUpstream(env: Record<string, string>, upstreamUrl: string): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v.replaceAll('{UPSTREAM_URL}', upstreamUrl)]))
}

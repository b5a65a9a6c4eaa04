// Turns the measurements into bench/RESULTS.md.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { totalmem } from 'node:os'
import type { Pinning } from './pin.ts'
import type { Scenario } from './targets.ts'
import type { WrkResult } from './wrk.ts'

export interface Settings {
  rounds: number
  durationSeconds: number
  warmupSeconds: number
  connections: number
  threads: number
  timeoutSeconds: number
  /** BENCH_PIN: the gateways' cores and everything else's; null when the scheduler decides. */
  pin: Pinning | null
  /** BENCH_HEADER: a header line wrk sends with every request; null for none. */
  header: string | null
}

/** One wrk run, with what the machine and the gateway did meanwhile. */
export interface Round extends WrkResult {
  /** CPU time the gateway process used per request, in microseconds. */
  cpuUsPerRequest: number | undefined
  /** Share of the machine's CPU time stolen by the hypervisor during the run. */
  stealPercent: number | undefined
}

export interface TargetResult {
  name: string
  command: string
  runs: Round[]
  warmup: Round
  peakRssMiB: number | undefined
  /** What one request cost upstream, measured during the check. */
  upstreamCalls: string
  /** The others are compared with it too (baseline-naive). */
  reference: boolean
}

export interface ScenarioResult {
  scenario: Scenario
  targets: TargetResult[]
  /** Targets selected but not run, and why (not installed, config refused). */
  skipped: { name: string; reason: string }[]
}

/** The pairs to compare, [target, reference]: every target with the first one, then with
 * each target marked as a reference. */
export function comparisons(targets: TargetResult[]): [TargetResult, TargetResult][] {
  const [first, ...rest] = targets
  if (first === undefined) return []
  const pairs = rest.map((target): [TargetResult, TargetResult] => [target, first])
  for (const reference of rest.filter((t) => t.reference)) {
    for (const target of targets) {
      if (target !== reference && target !== first) pairs.push([target, reference])
    }
  }
  return pairs
}

export interface Summary {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  cpuUsPerRequest: number | undefined
  validRuns: number
}

// Who we compare with, and how close we must be.
export const goals = { throughput: 0.9, p99: 1.2 }

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? (sorted[middle] ?? NaN) : ((sorted[middle - 1] ?? NaN) + (sorted[middle] ?? NaN)) / 2
}

/** Medians over the valid runs; undefined if no run was valid. */
export function summarise(runs: Round[]): Summary | undefined {
  const valid = runs.filter((run) => run.valid)
  if (valid.length === 0) return undefined
  const cpu = valid.flatMap((run) => (run.cpuUsPerRequest === undefined ? [] : [run.cpuUsPerRequest]))
  return {
    requestsPerSecond: median(valid.map((run) => run.requestsPerSecond)),
    p50Ms: median(valid.map((run) => run.p50Ms)),
    p99Ms: median(valid.map((run) => run.p99Ms)),
    cpuUsPerRequest: cpu.length === 0 ? undefined : median(cpu),
    validRuns: valid.length,
  }
}

export interface Ratios {
  throughput: number
  p50: number
  p99: number
  cpu: number | undefined
}

export function ratios(target: Summary, baseline: Summary): Ratios {
  return {
    throughput: target.requestsPerSecond / baseline.requestsPerSecond,
    p50: target.p50Ms / baseline.p50Ms,
    p99: target.p99Ms / baseline.p99Ms,
    cpu:
      target.cpuUsPerRequest === undefined || baseline.cpuUsPerRequest === undefined
        ? undefined
        : target.cpuUsPerRequest / baseline.cpuUsPerRequest,
  }
}

/** Medians of the ratios of rounds run back to back: drift in the machine's speed that
 * is slower than a round cancels out. Undefined if no round pair is valid on both sides. */
export function pairedRatios(target: Round[], baseline: Round[]): Ratios | undefined {
  const pairs: Ratios[] = []
  target.forEach((run, i) => {
    const base = baseline[i]
    if (base === undefined || !run.valid || !base.valid) return
    pairs.push({
      throughput: run.requestsPerSecond / base.requestsPerSecond,
      p50: run.p50Ms / base.p50Ms,
      p99: run.p99Ms / base.p99Ms,
      cpu:
        run.cpuUsPerRequest === undefined || base.cpuUsPerRequest === undefined
          ? undefined
          : run.cpuUsPerRequest / base.cpuUsPerRequest,
    })
  })
  if (pairs.length === 0) return undefined
  const cpu = pairs.flatMap((pair) => (pair.cpu === undefined ? [] : [pair.cpu]))
  return {
    throughput: median(pairs.map((pair) => pair.throughput)),
    p50: median(pairs.map((pair) => pair.p50)),
    p99: median(pairs.map((pair) => pair.p99)),
    cpu: cpu.length === 0 ? undefined : median(cpu),
  }
}

export interface Machine {
  cpus: string
  cpuModel: string
  memory: string
  node: string
  wrk: string
  date: string
  /** The commit measured, and whether src/ had uncommitted changes. */
  commit: string
}

function tryRun(command: string, args: string[]): string | undefined {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()
  } catch (err) {
    // `wrk --version` prints its banner and exits 1.
    const out = (err as { stdout?: unknown }).stdout
    return typeof out === 'string' && out.trim() !== '' ? out.trim() : undefined
  }
}

function commitOf(): string {
  const head = tryRun('git', ['rev-parse', '--short', 'HEAD'])
  if (head === undefined) return 'unknown'
  const dirty = tryRun('git', ['status', '--porcelain', '--', 'src', 'bin', 'bench', 'package.json'])
  return dirty === undefined || dirty === '' ? head : `${head} with uncommitted changes`
}

export function machine(wrk: string): Machine {
  let cpuModel = 'unknown'
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpuModel
  } catch {
    // not Linux
  }
  return {
    cpus: tryRun('nproc', []) ?? 'unknown',
    cpuModel,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    node: process.version,
    wrk: /wrk (\S+)/.exec(tryRun(wrk, ['--version']) ?? '')?.[1] ?? 'unknown',
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    commit: commitOf(),
  }
}

const fmt = {
  rps: (n: number) => Math.round(n).toLocaleString('en-US'),
  ms: (n: number) => (n < 10 ? n.toFixed(2) + ' ms' : n.toFixed(1) + ' ms'),
  ratio: (n: number) => n.toFixed(2) + '×',
  mib: (n: number | undefined) => (n === undefined ? '–' : n.toFixed(0) + ' MiB'),
  us: (n: number | undefined) => (n === undefined ? '–' : n.toFixed(0) + ' µs'),
}

function runLabel(run: Round): string {
  if (run.valid) return fmt.rps(run.requestsPerSecond)
  const e = run.socketErrors
  const errors = e.connect + e.read + e.write + e.timeout
  return `${fmt.rps(run.requestsPerSecond)} (invalid: ${run.non2xx} non-2xx, ${errors} socket errors)`
}

function requestLine(scenario: Scenario): string {
  const body = scenario.body === undefined ? '' : ` \`${JSON.stringify(scenario.body)}\``
  return `\`${scenario.method} ${scenario.path}\`${body}`
}

function scenarioSection(result: ScenarioResult): string[] {
  const { scenario, targets } = result
  const lines = [
    `## ${scenario.title}`,
    '',
    `${requestLine(scenario)}: ${scenario.description}`,
    '',
    '| Gateway | Requests/s | p50 | p99 | CPU per request | Peak RSS | Requests/s per round |',
    '|---|---:|---:|---:|---:|---:|---|',
  ]
  const summaries = targets.map((target) => summarise(target.runs))
  targets.forEach((target, i) => {
    const s = summaries[i]
    const perRound = target.runs.map(runLabel).join(', ')
    lines.push(
      s === undefined
        ? `| ${target.name} | no valid run | | | | ${fmt.mib(target.peakRssMiB)} | ${perRound} |`
        : `| ${target.name} | ${fmt.rps(s.requestsPerSecond)} | ${fmt.ms(s.p50Ms)} | ${fmt.ms(s.p99Ms)} | ` +
            `${fmt.us(s.cpuUsPerRequest)} | ${fmt.mib(target.peakRssMiB)} | ${perRound} |`,
    )
  })
  if (scenario.upstream === 'node') {
    lines.push('', 'Upstream work for one request, counted by the fake upstream during the check:', '')
    for (const target of targets) lines.push(`- ${target.name}: ${target.upstreamCalls}`)
  }
  for (const { name, reason } of result.skipped) lines.push('', `Not measured: ${name} (${reason}).`)
  const pairs = comparisons(targets)
  for (const reference of [...new Set(pairs.map(([, reference]) => reference))]) {
    const baseSummary = summarise(reference.runs)
    lines.push(
      '',
      `| Ratio to ${reference.name} | Throughput (goal ≥ ${goals.throughput}×) | p50 | p99 (goal ≤ ${goals.p99}×) | CPU per request |`,
      '|---|---:|---:|---:|---:|',
    )
    for (const [target] of pairs.filter(([, r]) => r === reference)) {
      const s = summarise(target.runs)
      if (s === undefined || baseSummary === undefined) {
        lines.push(`| ${target.name} | n/a | n/a | n/a | n/a |`)
        continue
      }
      const r = ratios(s, baseSummary)
      const throughput = `${fmt.ratio(r.throughput)} ${r.throughput >= goals.throughput ? 'met' : '**missed**'}`
      const p99 = `${fmt.ratio(r.p99)} ${r.p99 <= goals.p99 ? 'met' : '**missed**'}`
      lines.push(
        `| ${target.name} | ${throughput} | ${fmt.ratio(r.p50)} | ${p99} | ` +
          `${r.cpu === undefined ? '–' : fmt.ratio(r.cpu)} |`,
      )
      const paired = pairedRatios(target.runs, reference.runs)
      if (paired !== undefined) {
        lines.push(
          `| ${target.name}, round by round | ${fmt.ratio(paired.throughput)} | ${fmt.ratio(paired.p50)} | ` +
            `${fmt.ratio(paired.p99)} | ${paired.cpu === undefined ? '–' : fmt.ratio(paired.cpu)} |`,
        )
      }
    }
  }
  const steal = targets.flatMap((t) =>
    t.runs.flatMap((run) => (run.stealPercent === undefined ? [] : [run.stealPercent])),
  )
  if (steal.length > 0) {
    lines.push(
      '',
      `CPU stolen by the hypervisor during the rounds: ${Math.min(...steal).toFixed(0)}–` +
        `${Math.max(...steal).toFixed(0)} % of the machine.`,
    )
  }
  const invalid = targets.flatMap((t) => t.runs.filter((run) => !run.valid).map(() => t.name))
  if (invalid.length > 0) {
    lines.push(
      '',
      `**${invalid.length} invalid round(s)** (${[...new Set(invalid)].join(', ')}): ` +
        'left out of the medians; see the driver output.',
    )
  }
  lines.push('')
  return lines
}

export function renderResults(m: Machine, settings: Settings, results: ScenarioResult[]): string {
  // Each target once, with the command of its first scenario.
  const seen = new Map<string, string>()
  for (const t of results.flatMap((r) => r.targets)) if (!seen.has(t.name)) seen.set(t.name, t.command)
  const targetLines = [...seen].map(([name, command]) => `  - ${name}: \`${command}\``)
  const alternation = [...seen.keys()].join(', ')
  return [
    '# Load benchmark results',
    '',
    'Written by `npm run bench` (bench/run.ts). Baton against a hand-written BFF doing the',
    'same work (bench/baseline.ts: fastify 5 + undici 8), on the same machine, in the same session.',
    '',
    '## Machine',
    '',
    '| | |',
    '|---|---|',
    `| CPUs (nproc) | ${m.cpus} |`,
    `| CPU | ${m.cpuModel} |`,
    `| Memory | ${m.memory} |`,
    `| Node.js | ${m.node} |`,
    `| wrk | ${m.wrk} |`,
    `| Date | ${m.date} |`,
    `| Code | ${m.commit} |`,
    '',
    '## Method',
    '',
    settings.pin === null
      ? "- Separate processes on 127.0.0.1, all sharing the machine's CPUs: the fake upstream"
      : `- Separate processes on 127.0.0.1, pinned (BENCH_PIN, taskset): each gateway on CPU ${settings.pin.gateway}, alone; the fake upstream`,
    '  (bench/upstream.ts: node:http, every body serialised at start-up; in the fast regime',
    settings.pin === null
      ? '  nginx, bench/nginx.ts: the same bodies as static files, one worker), wrk, and one process'
      : `  nginx, bench/nginx.ts: the same bodies as static files, one worker) and wrk on CPU ${settings.pin.load}; one process`,
    '  per gateway:',
    ...targetLines,
    '- Before measuring, every gateway must answer each scenario with 200 and the same JSON as',
    `  ${results[0]?.targets[0]?.name ?? 'the baseline'} (deep-equal, key order ignored; Tailcall's data.posts); the driver stops otherwise.`,
    `- wrk \`-t${settings.threads} -c${settings.connections} -d${settings.durationSeconds}s ` +
      `--timeout ${settings.timeoutSeconds}s --latency` +
      `${settings.header === null ? '' : ` -H '${settings.header}'`}\`, keep-alive connections.`,
    `- Per scenario: one ${settings.warmupSeconds}-second warm-up run per gateway (not counted; V8 needs`,
    '  about 8 s of this load to reach its steady CPU cost per request), then ' +
      `${settings.rounds} rounds alternating ${alternation}, so that drift in the machine's speed hits all alike.`,
    '- Figures are medians over the rounds; the goals are judged on the ratio of those medians.',
    '  "Round by round" is the median of the ratios of rounds run back to back, which cancels',
    "  drift in the machine's speed. A round with socket errors or non-2xx answers is",
    "  invalid and left out of the medians. CPU per request is the gateway process's CPU time",
    '  (user + system, all threads) during a round divided by the requests wrk completed; it does',
    "  not include the upstream or wrk. Peak RSS is the gateway process's VmHWM at the end.",
    `- Goals: throughput ≥ ${goals.throughput}× the baseline, p99 ≤ ${goals.p99}× the baseline.`,
    '',
    '## What moved the figures',
    '',
    "- **V8 allocation-site pretenuring** (found with `--trace-gc`): once Baton's start-up had",
    '  run its config tooling (zod, yaml, the compiler; importing any large module does it), V8',
    '  began allocating per-request objects straight into the old generation. Every scavenge then',
    '  took ~20 ms instead of ~2 ms, the heap grew by ~11 MB per scavenge until a mark-compact,',
    "  and checkout p99 was 1.3–1.7× the baseline's. `bin/baton.js` turns pretenuring off",
    "  (`--no-allocation-site-pretenuring`, set before the rest loads): a gateway's per-request",
    "  objects die young. Scavenges went back to 1–3 ms and p99 to the baseline's.",
    '- Fewer async layers and allocations per call, and identical call bodies serialised once per',
    "  request, brought CPU per request from 1.15× to about 1.0× the baseline's.",
    '- Noise: two identical servers measured with 3 × 10 s rounds came out 0.81× and 1.19× apart;',
    '  6 × 5 s alternating rounds after a 10 s warm-up keep them within a few percent.',
    '',
    ...results.flatMap(scenarioSection),
  ].join('\n')
}

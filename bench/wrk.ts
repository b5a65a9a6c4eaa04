// Runs wrk and reads its report.
import { spawn } from 'node:child_process'
import { pinned } from './pin.ts'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { trackChild } from './processes.ts'

export interface WrkOptions {
  url: string
  durationSeconds: number
  connections: number
  threads: number
  /** Seconds after which wrk counts a request as a timeout (a socket error). */
  timeoutSeconds: number
  /** A Lua script, e.g. to send a POST body. */
  script?: string
  /** A header line sent with every request (BENCH_HEADER), e.g. a browser's Accept-Encoding. */
  header?: string
  /** Cores to run wrk on (taskset's list), from BENCH_PIN. */
  cores?: string
}

export interface WrkResult {
  requests: number
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  non2xx: number
  socketErrors: { connect: number; read: number; write: number; timeout: number }
  /** False if any request failed: such a run measures errors, not the gateway. */
  valid: boolean
  raw: string
}

/** The wrk binary on PATH, or undefined. */
export function findWrk(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, 'wrk')
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not in this directory
    }
  }
  return undefined
}

const timeUnits: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** wrk prints times as 812.00us, 1.23ms, 2.01s or 1.00m; returns milliseconds. */
export function parseTime(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim())
  const unit = match?.[2]
  if (match === null || unit === undefined) throw new Error(`wrk: unreadable time "${text}"`)
  return Number(match[1]) * (timeUnits[unit] ?? NaN)
}

function captured(raw: string, pattern: RegExp, what: string): string {
  const value = pattern.exec(raw)?.[1]
  if (value === undefined) throw new Error(`wrk: no ${what} in its output:\n${raw}`)
  return value
}

export function parseWrk(raw: string): WrkResult {
  const requestsPerSecond = Number(captured(raw, /^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec'))
  const requests = Number(captured(raw, /^\s*(\d+) requests in /m, 'request count'))
  const p50Ms = parseTime(captured(raw, /^\s*50%\s+(\S+)/m, '50% latency (run wrk with --latency)'))
  const p99Ms = parseTime(captured(raw, /^\s*99%\s+(\S+)/m, '99% latency (run wrk with --latency)'))
  const non2xx = Number(/^\s*Non-2xx or 3xx responses:\s+(\d+)/m.exec(raw)?.[1] ?? 0)
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw)
  const socketErrors = {
    connect: Number(errors?.[1] ?? 0),
    read: Number(errors?.[2] ?? 0),
    write: Number(errors?.[3] ?? 0),
    timeout: Number(errors?.[4] ?? 0),
  }
  const errorCount = socketErrors.connect + socketErrors.read + socketErrors.write + socketErrors.timeout
  return {
    requests,
    requestsPerSecond,
    p50Ms,
    p99Ms,
    non2xx,
    socketErrors,
    valid: non2xx === 0 && errorCount === 0 && requests > 0,
    raw,
  }
}

export async function runWrk(wrk: string, options: WrkOptions): Promise<WrkResult> {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${options.durationSeconds}s`,
    `--timeout`,
    `${options.timeoutSeconds}s`,
    '--latency',
    ...(options.script === undefined ? [] : ['-s', options.script]),
    ...(options.header === undefined ? [] : ['-H', options.header]),
    options.url,
  ]
  const [command, ...argv] = pinned(options.cores, [wrk, ...args])
  const child = spawn(command as string, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
  trackChild(child)
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })
  // wrk stops itself after the duration; this only catches a wrk that hangs.
  const killer = setTimeout(() => child.kill('SIGKILL'), (options.durationSeconds + 30) * 1000)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (exitCode) => resolve(exitCode))
  }).finally(() => clearTimeout(killer))
  if (code !== 0) throw new Error(`wrk ${args.join(' ')} failed (exit ${code}):\n${stderr}${stdout}`)
  return parseWrk(stdout)
}

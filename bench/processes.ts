// Child processes of the benchmark: each server runs in its own process, announces its
// port with a JSON line on stdout (or is given one: nginx, Tailcall), and is stopped by the
// driver however the driver ends.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

const tailLines = 40

export interface Server {
  readonly name: string
  readonly port: number
  readonly pid: number
  /** Set once the process has exited, with its exit code or signal. */
  readonly exited: string | undefined
  /** The last lines it wrote on stdout and stderr, for error messages. */
  output(): string
  /** Peak resident memory in MiB (VmHWM), if the process is still running. */
  peakRssMiB(): number | undefined
  /** CPU time used so far (user + system, all threads), in seconds. */
  cpuSeconds(): number | undefined
  /** SIGTERM, then SIGKILL if it has not exited after 3 s. */
  stop(): Promise<void>
}

const live = new Set<ChildProcess>()

// Last resort: whatever happens to the driver, leave no server running.
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL')
})

export function trackChild(child: ChildProcess): void {
  live.add(child)
  child.once('exit', () => live.delete(child))
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((child) => stopChild(child)))
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
  await exited
  clearTimeout(timer)
}

function pushTail(tail: string[], line: string): void {
  tail.push(line.length > 500 ? line.slice(0, 500) + '…' : line)
  if (tail.length > tailLines) tail.shift()
}

// The first JSON line with a numeric `port`: `{"port":N}` from the bench servers, or a
// pino line such as `{"level":30,"event":"listening","port":N,...}` from Baton.
function portOf(line: string): number | undefined {
  if (!line.startsWith('{')) return undefined
  try {
    const value: unknown = JSON.parse(line)
    if (typeof value === 'object' && value !== null && 'port' in value) {
      const port = (value as { port: unknown }).port
      if (typeof port === 'number' && Number.isInteger(port) && port > 0) return port
    }
  } catch {
    // Not JSON: an ordinary log line.
  }
  return undefined
}

// Linux reports CPU time in clock ticks, 100 per second on every common kernel.
const ticksPerSecond = 100

function processCpuSeconds(pid: number | undefined): number | undefined {
  try {
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14 and stime 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond
  } catch {
    return undefined
  }
}

/** Share of the machine's CPU time stolen by the hypervisor, from two readings of
 * `cpuTimes()`. */
export function stealPercent(before: number[] | undefined, after: number[] | undefined): number | undefined {
  if (before === undefined || after === undefined) return undefined
  const delta = after.map((value, i) => value - (before[i] ?? 0))
  const total = delta.reduce((sum, value) => sum + value, 0)
  return total > 0 ? (100 * (delta[7] ?? 0)) / total : undefined
}

/** The machine-wide CPU counters of /proc/stat (user, nice, system, idle, iowait, irq,
 * softirq, steal, ...). */
export function cpuTimes(): number[] | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? ''
    return line.trim().split(/\s+/).slice(1).map(Number)
  } catch {
    return undefined
  }
}

/** A TCP port that was free a moment ago, for servers that must be told their port. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return address.port
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

// Polls until something accepts connections on the port, or until told to stop.
async function listeningOn(port: number, stopped: () => boolean): Promise<number> {
  while (!stopped() && !(await accepts(port))) await sleep(50)
  return port
}

/** Starts argv in cwd and resolves once it has printed its port, or, given `knownPort`,
 * once that port accepts connections. */
export async function startServer(
  name: string,
  argv: string[],
  env: NodeJS.ProcessEnv,
  { readyTimeoutMs = 20_000, knownPort }: { readyTimeoutMs?: number; knownPort?: number } = {},
): Promise<Server> {
  const [command, ...args] = argv
  if (command === undefined) throw new Error(`${name}: empty command`)
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  trackChild(child)
  // BENCH_LOG_DIR: every line each server writes goes to a file of its own too (--trace-gc runs, say).
  const logDir = process.env.BENCH_LOG_DIR
  if (logDir !== undefined && logDir !== '') {
    mkdirSync(logDir, { recursive: true })
    const file = `${name.replace(/[^\w.-]+/g, '-').replace(/-$/, '')}.${String(child.pid)}.log`
    const log = createWriteStream(join(logDir, file))
    child.stdout.pipe(log, { end: false })
    child.stderr.pipe(log, { end: false })
  }
  const tail: string[] = []
  let exited: string | undefined
  let resolvePort: (port: number) => void = () => {}
  const portPromise = new Promise<number>((resolve) => {
    resolvePort = resolve
  })

  // Keep reading both pipes for the whole run: a server that logs every request would
  // otherwise block on a full pipe and look slow.
  let pending = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk: string) => {
    pending += chunk
    let newline: number
    while ((newline = pending.indexOf('\n')) !== -1) {
      const line = pending.slice(0, newline).trim()
      pending = pending.slice(newline + 1)
      if (line === '') continue
      pushTail(tail, line)
      const port = portOf(line)
      if (port !== undefined) resolvePort(port)
    }
  })
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk: string) => {
    for (const line of chunk.split('\n')) if (line.trim() !== '') pushTail(tail, `[stderr] ${line}`)
  })
  const exit = new Promise<never>((_, reject) => {
    child.once('error', (err) => {
      exited = `error: ${err.message}`
      reject(new Error(`${name}: could not start ${command}: ${err.message}`))
    })
    child.once('exit', (code, signal) => {
      exited = signal === null ? `exit code ${code}` : `signal ${signal}`
      reject(new Error(`${name} exited (${exited}) before printing its port:\n${tail.join('\n')}`))
    })
  })
  exit.catch(() => {}) // only observed while waiting for the port
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            knownPort === undefined
              ? `${name} printed no JSON line with a "port" within ${readyTimeoutMs} ms:\n${tail.join('\n')}`
              : `${name} did not listen on port ${knownPort} within ${readyTimeoutMs} ms:\n${tail.join('\n')}`,
          ),
        ),
      readyTimeoutMs,
    )
  })
  let port: number
  let settled = false
  try {
    const ready = knownPort === undefined ? portPromise : listeningOn(knownPort, () => settled)
    port = await Promise.race([ready, exit, timeout])
  } catch (err) {
    await stopChild(child)
    throw err
  } finally {
    settled = true
    clearTimeout(timer)
  }

  const server: Server = {
    name,
    port,
    pid: child.pid ?? -1,
    get exited() {
      return exited
    },
    output: () => tail.join('\n'),
    peakRssMiB: () => {
      try {
        const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
        const kib = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]
        return kib === undefined ? undefined : Number(kib) / 1024
      } catch {
        return undefined
      }
    },
    cpuSeconds: () => processCpuSeconds(child.pid),
    stop: () => stopChild(child),
  }
  return server
}

/**
 * The `baton` command as a separate process, as a user (or an orchestrator sending signals)
 * runs it: spawned, its output collected, waited for until it listens, killed when the test ends.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface CliOptions {
  /** The command; default: this repository's bin/baton.js run by this test's Node. */
  command?: string
  cwd?: string
  env?: NodeJS.ProcessEnv
}

export interface Cli {
  readonly child: ChildProcessByStdio<null, Readable, Readable>
  /** Everything written to stdout so far. */
  readonly stdout: string
  readonly stderr: string
  /** The stdout lines that are JSON objects (the log of `baton serve`), parsed. */
  json(): Record<string, unknown>[]
  /** Resolves once stdout matches; rejects when the process ends first, or after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>
  /** Resolves once the process has ended and its output is all read. */
  readonly exited: Promise<Exit>
  kill(signal?: NodeJS.Signals): void
}

/** Something that runs a cleanup when the test ends (a TestContext). */
interface Cleanup {
  after(fn: () => unknown): void
}

/** `text` as baton.yaml in a folder of its own, removed after the test; returns the file's path. */
export function configFile(t: Cleanup, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-test-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'baton.yaml')
  writeFileSync(file, text)
  return file
}

/** Spawns `baton …args`; it is killed (SIGKILL) when the test ends, if it is still running. */
export function spawnCli(t: Cleanup, args: readonly string[], options: CliOptions = {}): Cli {
  const [command, prefix] =
    options.command === undefined ? [process.execPath, ['bin/baton.js']] : [options.command, [] as string[]]
  const child = spawn(command, [...prefix, ...args], {
    cwd: options.cwd ?? ROOT,
    env: options.env ?? { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  let ended: Exit | null = null
  const waiters = new Set<() => void>()
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString()
    for (const w of waiters) w()
  })
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString()
  })
  const exited = new Promise<Exit>((resolve) => {
    child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
      ended = { code, signal }
      for (const w of waiters) w()
      resolve(ended)
    })
  })
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return {
    child,
    get stdout() {
      return stdout
    },
    get stderr() {
      return stderr
    },
    json() {
      const out: Record<string, unknown>[] = []
      for (const line of stdout.split('\n')) {
        if (!line.startsWith('{')) continue
        try {
          out.push(JSON.parse(line) as Record<string, unknown>)
        } catch {
          // a line cut short: not a log line yet
        }
      }
      return out
    },
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise<RegExpExecArray>((resolve, reject) => {
        const check = (): void => {
          const m = pattern.exec(stdout)
          if (m !== null) {
            done()
            resolve(m)
          } else if (ended !== null) {
            done()
            reject(
              new Error(`baton ${args.join(' ')} ended (${describe(ended)}) before printing ${pattern}${output()}`),
            )
          }
        }
        const timer = setTimeout(() => {
          done()
          reject(new Error(`baton ${args.join(' ')} did not print ${pattern} within ${timeoutMs}ms${output()}`))
        }, timeoutMs)
        const done = (): void => {
          clearTimeout(timer)
          waiters.delete(check)
        }
        waiters.add(check)
        check()
      })
    },
    exited,
    kill(signal = 'SIGTERM') {
      child.kill(signal)
    },
  }

  function output(): string {
    return `\nstdout:\n${stdout}\nstderr:\n${stderr}`
  }
}

/**
 * Spawns `baton serve|dev …` and waits for it to listen: the `{"event":"listening",…}` line of
 * `baton serve`, or the "… listening on URL" line of `baton dev`. `url` includes the basePath.
 */
export async function startCli(
  t: Cleanup,
  args: readonly string[],
  options: CliOptions & { timeoutMs?: number } = {},
): Promise<{ cli: Cli; url: string; port: number }> {
  const cli = spawnCli(t, args, options)
  // Up to the end of the line (or of the JSON string): a chunk may end in the middle of the port.
  const m = await cli.waitFor(/listening on (http:\/\/[^\s:"]+:(\d+)[^\s"]*)["\n]/, options.timeoutMs)
  return { cli, url: m[1] as string, port: Number(m[2]) }
}

function describe(exit: Exit): string {
  return exit.signal === null ? `exit code ${exit.code}` : `signal ${exit.signal}`
}

/** The `baton` command line. Each command returns its exit code; nothing here calls process.exit. */
import { Command, InvalidArgumentError, Option } from 'commander'
import { jsonSchema } from '../config/schema.ts'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { ConfigError } from '../errors.ts'
import type { Release } from '../server/gateway.ts'
import { loadConfig } from '../config/load.ts'
import { compileConfig } from '../plan/compile.ts'
import { invalidateEverywhere } from '../cache/caches.ts'
import { alertRules } from './alerts.ts'
import { init } from './init.ts'
import { devToken } from './devtoken.ts'
import { check, checkGithub, checkJson, type Format, renderDiagnostics, summary } from './check.ts'
import { planJson, renderPlan } from './plan.ts'
import { EXIT, serve } from './serve.ts'
import { serveWorkers } from './cluster.ts'
import { availableParallelism } from 'node:os'
import { closest } from '../util/suggest.ts'
import type { CanaryPlan, GatewayPlan } from '../plan/types.ts'
import { resolve } from 'node:path'

/** This package's version, read from its package.json (beside src/ in a checkout, beside dist/ when installed). */
const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version

export async function main(argv: readonly string[]): Promise<number> {
  let code = 0
  const program = new Command('baton')
    .description('Declarative API orchestration: one config file becomes a Backend-for-Frontend.')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride()

  program
    .command('init')
    .argument('[dir]', 'folder to write baton.yaml in', '.')
    .description('write a starter config that baton dev serves at once')
    .action(async (dir: string) => {
      try {
        console.log(await init(dir))
      } catch (err) {
        console.error(`baton init: ${(err as Error).message}`)
        code = 1
      }
    })

  program
    .command('check')
    .argument('<file>', 'config file (YAML or JSON)')
    .description('validate a config: every error at once, with file:line:col and a hint')
    .addOption(
      new Option('--format <format>', 'text (for people), json (one object on stdout), github (annotations)')
        .choices(['text', 'json', 'github'])
        .default('text'),
    )
    .action(async (file: string, opts: { format: Format }) => {
      const result = await check(file, 'check')
      if (opts.format !== 'text') {
        const out = opts.format === 'json' ? checkJson(file, result) : checkGithub(file, result)
        if (out !== '') console.log(out)
        if (result.plan === undefined) code = 1
        return
      }
      if (result.diagnostics.length > 0) console.error(renderDiagnostics(result.diagnostics, process.stderr))
      if (result.plan === undefined) {
        console.error(summary(file, result))
        code = 1
        return
      }
      console.log(summary(file, result))
    })

  program
    .command('plan')
    .argument('<file>', 'config file')
    .description("print each endpoint's call sequence: order, service call, required, timeout, fallback")
    .addOption(
      new Option('--format <format>', 'text (the template tables), json (the same tables as data)')
        .choices(['text', 'json'])
        .default('text'),
    )
    .action(async (file: string, opts: { format: 'text' | 'json' }) => {
      const result = await check(file, 'check')
      if (result.plan === undefined) {
        if (opts.format === 'json') console.log(checkJson(file, result))
        else console.error(renderDiagnostics(result.diagnostics, process.stderr))
        code = 1
        return
      }
      console.log(opts.format === 'json' ? planJson(result.plan) : renderPlan(result.plan))
    })

  program
    .command('serve')
    .argument('<file>', 'config file')
    .description('run the gateway against the real services')
    .addOption(new Option('-p, --port <port>', 'port (overrides gateway.port)').env('PORT').argParser(port))
    .addOption(new Option('-H, --host <host>', 'interface (overrides gateway.host)').env('BATON_HOST'))
    .addOption(
      new Option(
        '--log-level <level>',
        'debug, info (a line per request), warn, error or silent (overrides gateway.logLevel)',
      )
        .env('BATON_LOG_LEVEL')
        .argParser(level),
    )
    .option('--no-access-log', 'no log line per request (overrides gateway.accessLog)')
    .option('--no-watch', 'do not reload when the config file (or a file it names) changes')
    .option('--workers <n>', 'processes sharing the port: a number, or auto (one per core); default 1', workers)
    .option('--canary <file>', "a candidate config served beside this one (instead of the config's canary.config)")
    .option('--weight <percent>', "the candidate's share of the requests, e.g. 10 (instead of canary.weight)", weight)
    .action(
      async (
        file: string,
        opts: {
          port?: number
          host?: string
          logLevel?: string
          accessLog: boolean
          watch: boolean
          workers?: number
          canary?: string
          weight?: number
        },
      ) => {
        if (opts.weight !== undefined && opts.canary === undefined) {
          console.error("baton serve: --weight goes with --canary FILE (or the config's canary.weight)")
          code = EXIT.USAGE
          return
        }
        const { canary: candidateFile, weight: share, ...given } = opts
        const reload = reloaderOf(file, 'serve', undefined, candidateFile, share)
        let release: Release
        try {
          release = await reload()
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err
          console.error(renderDiagnostics(err.diagnostics, process.stderr))
          code = 1
          return
        }
        const result = { plan: release.plan }
        const { workers: n = 1, ...rest } = given
        const serving = { ...rest, reload, candidate: release.candidate ?? null, warnings: release.warnings ?? [] }
        code = n === 1 ? await serve(result.plan, serving) : await serveWorkers(result.plan, serving, n)
      },
    )

  program
    .command('dev')
    .argument('<file>', 'config file')
    .description("run the gateway with every service's mock: routes, no backend needed")
    .addOption(new Option('-p, --port <port>', 'port (overrides gateway.port)').env('PORT').argParser(port))
    .addOption(new Option('-H, --host <host>', 'interface').env('BATON_HOST').default('127.0.0.1'))
    .option('--down <services>', 'comma-separated services that answer 503', list, [])
    .addOption(
      new Option('--log-level <level>', 'debug, info, warn, error or silent').env('BATON_LOG_LEVEL').argParser(level),
    )
    .option(
      '--slow <service=ms...>',
      'delay a service that has mock: routes, e.g. --slow cart=3000 (repeatable, or comma-separated)',
      slow,
      new Map<string, number>(),
    )
    .option('--rate-limits', "apply the config's rate limits (off under baton dev unless given)")
    .option('--no-watch', 'do not reload when the config file (or a file it names) changes')
    .action(
      async (
        file: string,
        opts: {
          port?: number
          host: string
          down: string[]
          slow: Map<string, number>
          logLevel?: string
          rateLimits?: boolean
          watch: boolean
        },
      ) => {
        // One stand-in JWT secret for the whole run: the token printed at start stays valid across reloads.
        const devSecret = randomBytes(32).toString('base64url')
        const result = await check(file, 'dev', devSecret)
        if (result.plan === undefined) {
          console.error(renderDiagnostics(result.diagnostics, process.stderr))
          code = 1
          return
        }
        const reload = reloaderOf(file, 'dev', devSecret)
        let candidate: GatewayPlan | null
        try {
          candidate = (await reload()).candidate ?? null
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err
          console.error(renderDiagnostics(err.diagnostics, process.stderr))
          code = 1
          return
        }
        // A usage error is the one line printed: the config's warnings would bury it.
        const misuse = devMisuse(result.plan, opts.down, [...opts.slow.keys()])
        if (misuse !== null) {
          console.error(`baton dev: ${misuse}`)
          code = EXIT.USAGE
          return
        }
        if (result.diagnostics.length > 0) console.error(renderDiagnostics(result.diagnostics, process.stderr))
        const token = await devToken(result.plan)
        const { rateLimits, ...rest } = opts
        code = await serve(result.plan, {
          ...rest,
          pretty: true,
          mocks: { down: new Set(opts.down), slow: opts.slow },
          rateLimits: rateLimits === true,
          reload,
          candidate,
          ...(token === null ? {} : { devToken: token }),
        })
      },
    )

  program
    .command('alerts')
    .argument('<file>', 'config file')
    .description('write Prometheus alerting rules for the alert thresholds in the config')
    .option('-o, --output <file>', 'write the rules to this file instead of stdout')
    .action(async (file: string, opts: { output?: string }) => {
      const loaded = await loadConfig(file)
      const result = compileConfig(loaded, { mode: 'check' })
      if (result.plan === undefined || loaded.config === undefined) {
        console.error(renderDiagnostics(result.diagnostics, process.stderr))
        code = 1
        return
      }
      const rules = alertRules(result.plan)
      if (opts.output === undefined) process.stdout.write(rules)
      else await writeFile(opts.output, rules)
    })

  program
    .command('canary')
    .argument('<action>', 'promote (the candidate serves everyone) or abort (the stable version does)', canaryAction)
    .argument('<file>', 'config file (for the admin port, or the main port and gateway.admin.token)')
    .option('--url <url>', 'base URL of the gateway to tell (default: 127.0.0.1 on the port the config says)')
    .description('end the running canary of a gateway: promote it or abort it (its admin endpoint)')
    .action(async (action: 'promote' | 'abort', file: string, opts: { url?: string }) => {
      const result = await check(file, 'serve')
      if (result.plan === undefined) {
        console.error(renderDiagnostics(result.diagnostics, process.stderr))
        code = 1
        return
      }
      const plan = result.plan
      const port = plan.metrics?.port ?? plan.port
      const base = opts.url ?? `http://127.0.0.1:${port}`
      const viaAdminPort = opts.url === undefined && plan.metrics?.port !== undefined
      if (!viaAdminPort && plan.adminToken === null && opts.url === undefined) {
        console.error(
          'baton canary: the config has no admin port (gateway.metrics.port) and no gateway.admin.token: the gateway serves no admin endpoint to call',
        )
        code = 1
        return
      }
      try {
        const res = await fetch(`${base.replace(/\/$/, '')}/admin/canary/${action}`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(plan.adminToken === null || viaAdminPort ? {} : { authorization: `Bearer ${plan.adminToken}` }),
          },
          body: '{}',
          signal: AbortSignal.timeout(5000),
        })
        if (res.status === 200) console.log(`canary ${action === 'promote' ? 'promoted' : 'aborted'} at ${base}`)
        else {
          console.error(`baton canary: ${res.status} from ${base}: ${await res.text()}`)
          code = 1
        }
      } catch (err) {
        console.error(`baton canary: cannot reach ${base}: ${(err as Error).message}`)
        code = 1
      }
    })

  program
    .command('invalidate')
    .argument('<file>', 'config file (for gateway.redis)')
    .argument('<tags...>', 'tags to drop, e.g. product:42 "path:/v1/products/42"')
    .description('drop cached answers by tag, in Redis and on every running instance (Redis pub/sub)')
    .action(async (file: string, tags: string[]) => {
      const result = await check(file, 'serve')
      if (result.plan === undefined) {
        console.error(renderDiagnostics(result.diagnostics, process.stderr))
        code = 1
        return
      }
      try {
        const { dropped, channel } = await invalidateEverywhere(result.plan, tags)
        console.log(
          `dropped ${dropped} cached answer${dropped === 1 ? '' : 's'} in Redis for ${tags.join(', ')}; every instance was told (channel ${channel})`,
        )
      } catch (err) {
        console.error(`baton invalidate: ${(err as Error).message}`)
        code = 1
      }
    })

  program
    .command('schema')
    .description('print the JSON Schema of the config file, for editors')
    .action(() => {
      console.log(JSON.stringify(jsonSchema(), null, 2))
    })

  // An empty variable (PORT= in a shell or an env file) is no variable, as with `process.env.PORT || …`:
  // the config's value is used, not a port of 0 (a random one) or a host of ''.
  for (const option of program.commands.flatMap((command) => command.options)) {
    if (option.envVar !== undefined && process.env[option.envVar]?.trim() === '') delete process.env[option.envVar]
  }
  try {
    await program.parseAsync([...argv])
  } catch (err) {
    const exit = (err as { exitCode?: number }).exitCode
    // Commander's errors (an unknown option, a bad value, a missing argument) are usage errors; --help and --version are 0.
    if (typeof exit === 'number') return exit === 0 ? 0 : EXIT.USAGE
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      console.error(`baton: cannot read ${(err as NodeJS.ErrnoException).path ?? 'the file'}: no such file`)
      return 1
    }
    throw err
  }
  return code
}

/**
 * Reads and compiles the config file (at start, and again for a reload), and the candidate its
 * canary names; throws a ConfigError when either has errors.
 */
function reloaderOf(
  file: string,
  mode: 'serve' | 'dev',
  devSecret?: string,
  candidateFile?: string,
  share?: number,
): () => Promise<Release> {
  return async () => {
    const result = await check(file, mode, devSecret)
    if (result.plan === undefined) throw new ConfigError(result.diagnostics)
    let plan = result.plan
    // --canary / --weight: as if the config said so (its other canary settings, or the defaults, apply).
    if (candidateFile !== undefined) {
      plan = {
        ...plan,
        canary: {
          ...(plan.canary ?? DEFAULT_CANARY),
          config: resolve(candidateFile),
          ...(share === undefined ? {} : { weight: share / 100 }),
        },
      }
    }
    // A config that compiles has warnings only.
    const canary = plan.canary
    if (canary === null) return { plan, warnings: result.diagnostics }
    const candidate = await check(canary.config, mode, devSecret)
    if (candidate.plan === undefined) throw new ConfigError(candidate.diagnostics)
    return { plan, candidate: candidate.plan, warnings: [...result.diagnostics, ...candidate.diagnostics] }
  }
}

/** A canary given by --canary alone: the config's defaults (README "Canary releases"), 10 % by chance. */
const DEFAULT_CANARY: CanaryPlan = {
  config: '',
  weight: 0.1,
  sticky: null,
  header: 'x-baton-canary',
  guard: { window: 60_000, minRequests: 50, errorRate: 0.05, p99: 0.5 },
}

function weight(value: string): number {
  const n = Number(value.replace(/%$/, ''))
  if (!Number.isFinite(n) || n < 0 || n > 100) throw new InvalidArgumentError('a percentage from 0 to 100, e.g. 10')
  return n
}

/**
 * What is wrong with `--down` / `--slow` (one line), or null: each must name a service, and
 * `--slow` one with mock: routes (a service without them is called at its real URL, which
 * baton dev cannot slow down; `--down` works for any service: a stand-in answers 503).
 */
export function devMisuse(plan: GatewayPlan, down: readonly string[], slowed: readonly string[]): string | null {
  const names = plan.services.map((s) => s.name)
  const mocked = plan.services.filter((s) => s.mock !== null).map((s) => s.name)
  const problems: string[] = []
  for (const [option, given] of [
    ['--down', down],
    ['--slow', slowed],
  ] as const) {
    for (const name of given) {
      const service = plan.services.find((s) => s.name === name)
      if (service === undefined) {
        const near = closest(name, names)
        problems.push(
          `${option}: unknown service '${name}'${near === undefined ? '' : ` (did you mean '${near}'?)`}; services: ${names.join(', ')}`,
        )
      } else if (option === '--slow' && service.mock === null) {
        problems.push(
          `--slow: '${name}' has no mock: routes, its calls go to ${service.origin}${service.pathPrefix}, which baton dev cannot slow down; services with mocks: ${mocked.join(', ') || 'none'}`,
        )
      }
    }
  }
  return problems.length === 0 ? null : problems.join('; ')
}

function canaryAction(value: string): 'promote' | 'abort' {
  if (value !== 'promote' && value !== 'abort') throw new InvalidArgumentError('promote or abort')
  return value
}

function port(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('a port is a number from 0 to 65535')
  return n
}

function workers(value: string): number {
  if (value === 'auto') return availableParallelism()
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new InvalidArgumentError('a number from 1 to 1024, or auto')
  return n
}

function level(value: string): string {
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(value))
    throw new InvalidArgumentError('one of debug, info, warn, error, silent')
  return value
}

function list(value: string, previous: string[]): string[] {
  return [
    ...previous,
    ...value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  ]
}

function slow(value: string, previous: Map<string, number>): Map<string, number> {
  const out = new Map(previous)
  for (const part of value.split(',')) {
    const m = /^([\w-]+)=(\d+)(ms)?$/.exec(part.trim())
    if (m === null) throw new InvalidArgumentError(`'${part}' is not service=ms, e.g. cart=3000`)
    out.set(m[1] as string, Number(m[2]))
  }
  return out
}

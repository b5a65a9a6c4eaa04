/**
 * Baton as a user gets it: `npm pack` of this repository (which builds dist/ first), the tarball
 * installed into an empty project, then used there as a library (JavaScript and TypeScript) and as
 * the `baton` command.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { startCli } from './helpers/cli.ts'
import { json, startStub, type Stub } from './helpers/stub.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version

/**
 * The environment of every command: this test's Node first on the PATH (npm, tsc and the installed
 * `baton` start with `#!/usr/bin/env node`), and none of the variables an outer `npm test` sets
 * about this repository, so the npm run in the empty project sees that project only.
 */
const ENV: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries({
    ...process.env,
    PATH: [dirname(process.execPath), process.env.PATH ?? ''].join(delimiter),
    NO_COLOR: '1',
    FORCE_COLOR: '0',
  }).filter(([k]) => !/^(npm_package_|npm_lifecycle_|npm_config_local_prefix$|init_cwd$)/i.test(k)),
)

interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs a command to its end without blocking this process (the stub server must keep answering). */
async function run(command: string, args: string[], cwd: string, timeout: number): Promise<Run> {
  const child = spawn(command, args, { cwd, env: ENV, stdio: ['ignore', 'pipe', 'pipe'], timeout })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null]
  return { code, signal, stdout, stderr }
}

function ok(r: Run, what: string): Run {
  assert.ok(
    r.code === 0,
    `${what} failed (code ${r.code}, signal ${r.signal})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`,
  )
  return r
}

/** The consumer's config: one service (the stub), one endpoint with one call. */
function config(stubUrl: string): string {
  return `version: 1
gateway:
  name: Package test
  host: 127.0.0.1
services:
  users:
    url: ${stubUrl}
    timeout: 2s
endpoints:
  GET /users/{id}:
    calls:
      user:
        request: GET users /users/\${request.params.id}
    response:
      id: "\${user.id}"
      name: "\${user.name}"
`
}

const LIBRARY_SCRIPT = `import { compileFile, createGateway } from 'baton'

const { plan } = await compileFile('baton.yaml')
const gateway = createGateway(plan)
const { url } = await gateway.listen({ port: 0 })
const res = await fetch(url + '/users/42')
console.log(JSON.stringify({ status: res.status, body: await res.json() }))
await gateway.close()
`

const TYPED_SCRIPT = `import { ConfigError, compileFile, createGateway, type Diagnostic, type Gateway, type GatewayPlan } from 'baton'

const { plan, diagnostics }: { plan: GatewayPlan; diagnostics: Diagnostic[] } = await compileFile('baton.yaml')
const gateway: Gateway = createGateway(plan, { accessLog: false })
const address: { port: number; url: string } = await gateway.listen({ port: 0 })
console.log(address.url, diagnostics.length, plan.endpoints[0]?.route, new ConfigError([]).diagnostics)
await gateway.close()
// @ts-expect-error a plan is no string: the types are real, not any
const wrong: string = plan
console.log(wrong)
`

describe('the npm package, installed into an empty project', { timeout: 600_000 }, () => {
  let work = ''
  let project = ''
  let tarball = ''
  let stub: Stub | undefined

  before(
    async () => {
      work = mkdtempSync(join(tmpdir(), 'baton-package-'))
      const upstream = await startStub()
      stub = upstream
      upstream.route('GET /users/:id', (req) =>
        json({ id: req.params.id, name: 'Ada Lovelace', email: 'ada@example.com' }),
      )

      const packs = join(work, 'pack')
      mkdirSync(packs)
      ok(await run('npm', ['pack', '--pack-destination', packs], ROOT, 240_000), 'npm pack')
      const tgz = readdirSync(packs).filter((f) => f.endsWith('.tgz'))
      assert.deepEqual(tgz, [`baton-${VERSION}.tgz`])
      tarball = join(packs, tgz[0] as string)

      project = join(work, 'app')
      mkdirSync(project)
      writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
      writeFileSync(join(project, 'baton.yaml'), config(upstream.url))
      // @types/node as a TypeScript user has it, in the version this repository compiles against.
      const typesNode = (
        JSON.parse(readFileSync(join(ROOT, 'node_modules/@types/node/package.json'), 'utf8')) as { version: string }
      ).version
      ok(
        await run(
          'npm',
          ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, `@types/node@${typesNode}`],
          project,
          300_000,
        ),
        'npm install',
      )
    },
    { timeout: 560_000 },
  )

  after(async () => {
    await stub?.close()
    if (work !== '') rmSync(work, { recursive: true, force: true })
  })

  it('the tarball holds the build, the command, the schema, README and LICENSE, and no other part of the repository', async () => {
    const list = ok(await run('tar', ['-tzf', tarball], work, 30_000), 'tar -tzf')
      .stdout.split('\n')
      .filter((l) => l !== '' && !l.endsWith('/'))
      .map((l) => l.replace(/^package\//, ''))
    for (const file of [
      'package.json',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
      'bin/baton.js',
      'schema/baton.schema.json',
      'README.md',
      'docs/first-bff.md',
      'LICENSE',
    ])
      assert.ok(list.includes(file), `${file} is missing from the tarball: ${list.join(', ')}`)
    for (const dir of ['test/', 'bench/', '.ci/', 'src/', 'examples/', 'scripts/', 'node_modules/'])
      assert.deepEqual(
        list.filter((f) => f.startsWith(dir)),
        [],
        `nothing under ${dir} belongs in the tarball`,
      )
    const other = list.filter(
      (f) =>
        ![
          'package.json',
          'README.md',
          'LICENSE',
          'bin/baton.js',
          'schema/baton.schema.json',
          // The README links it: a reader of the installed package finds it too.
          'docs/first-bff.md',
        ].includes(f) && !/^dist\/.+(?<!\.test)\.(js|d\.ts)$/.test(f),
    )
    assert.deepEqual(
      other,
      [],
      'only dist/ (no tests), bin/baton.js, the schema, README.md, docs/first-bff.md, LICENSE and package.json',
    )
  })

  it("`import { createGateway, compileFile } from 'baton'` compiles a config and serves it", async () => {
    writeFileSync(join(project, 'library.js'), LIBRARY_SCRIPT)
    const r = ok(await run(process.execPath, ['library.js'], project, 60_000), 'node library.js')
    assert.equal(r.stdout, '{"status":200,"body":{"id":"42","name":"Ada Lovelace"}}\n')
    assert.equal(r.stderr, '')
    assert.equal(stub?.requestsTo('GET /users/:id').at(-1)?.url, '/users/42')
  })

  it("its types resolve: a TypeScript file importing 'baton' type-checks (strict, nodenext, no skipLibCheck)", async () => {
    writeFileSync(join(project, 'typed.ts'), TYPED_SCRIPT)
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          module: 'nodenext',
          target: 'es2024',
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          types: ['node'],
        },
        files: ['typed.ts'],
      }),
    )
    ok(await run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], project, 120_000), 'tsc --noEmit')
  })

  it('`baton check` and `baton --version` run from node_modules/.bin', async () => {
    const baton = join(project, 'node_modules/.bin/baton')
    const check = ok(await run(baton, ['check', 'baton.yaml'], project, 60_000), 'baton check')
    assert.equal(check.stdout, 'baton.yaml: ok — 1 service, 1 endpoint, 1 call\n')
    const version = ok(await run(baton, ['--version'], project, 60_000), 'baton --version')
    assert.equal(version.stdout, `${VERSION}\n`)
  })

  it('`baton serve baton.yaml --port 0` listens, answers, and exits on SIGTERM', async (t) => {
    const { cli, port } = await startCli(t, ['serve', 'baton.yaml', '--port', '0'], {
      command: join(project, 'node_modules/.bin/baton'),
      cwd: project,
      env: ENV,
      timeoutMs: 30_000,
    })
    // The first line says where it listens, for whoever started it.
    const first = JSON.parse(cli.stdout.slice(0, cli.stdout.indexOf('\n'))) as { event?: string; port?: number }
    assert.deepEqual([first.event, first.port], ['listening', port], `the first line: ${cli.stdout}`)
    assert.ok(port > 0)
    const res = await fetch(`http://127.0.0.1:${port}/users/7`)
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { id: '7', name: 'Ada Lovelace' })

    cli.kill('SIGTERM')
    assert.deepEqual(await cli.exited, { code: 0, signal: null }, `stderr: ${cli.stderr}`)
    assert.equal(cli.json().at(-1)?.event, 'stopped')
  })
})

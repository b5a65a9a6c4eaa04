/**
 * The command line and the environment (12-factor): PORT, BATON_HOST and BATON_LOG_LEVEL set
 * what the config says unless a flag says otherwise; a bad value is a usage error (exit 2).
 * Also the standard series every Node service exposes, and baton_build_info.
 */
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { ROOT, configFile as configIn, spawnCli, startCli } from './helpers/cli.ts'
import { get } from './helpers/gateway.ts'
import { freePort } from './helpers/redis.ts'

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version

function configFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-env-'))
  const file = join(dir, 'baton.yaml')
  writeFileSync(
    file,
    `version: 1
gateway: { name: Env, port: 1, logLevel: error }
endpoints:
  GET /hello:
    response: { hello: world }
`,
  )
  return file
}

describe('the environment', () => {
  test('PORT and BATON_HOST replace the config; a flag replaces BATON_LOG_LEVEL', async (t) => {
    const port = await freePort()
    const env = { ...process.env, PORT: String(port), BATON_HOST: '127.0.0.1', BATON_LOG_LEVEL: 'error' }
    // The config says port 1 and logLevel error, the environment says error: the flag's info wins, so it logs "listening".
    const { cli, url } = await startCli(t, ['serve', configFile(), '--log-level', 'info'], { env })
    assert.equal(url, `http://127.0.0.1:${port}`)
    assert.deepEqual((await get(`${url}/hello`)).body, { hello: 'world' })
    cli.kill('SIGTERM')
    assert.equal((await cli.exited).code, 0)
  })

  test('a PORT that is no port: exit 2, saying where it came from', async (t) => {
    const cli = spawnCli(t, ['serve', configFile()], { env: { ...process.env, PORT: 'eighty' } })
    assert.equal((await cli.exited).code, 2)
    assert.match(cli.stderr, /value 'eighty' from env 'PORT' is invalid\. a port is a number from 0 to 65535/)
  })

  test("an empty PORT is no PORT: the config's port is used, not a random one", async (t) => {
    const port = await freePort()
    const file = configFile()
    writeFileSync(file, readFileSync(file, 'utf8').replace('port: 1,', `port: ${port},`))
    const env = { ...process.env, PORT: '', BATON_HOST: '127.0.0.1' }
    const { cli, url } = await startCli(t, ['serve', file, '--log-level', 'info'], { env })
    assert.equal(url, `http://127.0.0.1:${port}`)
    cli.kill('SIGTERM')
    assert.equal((await cli.exited).code, 0)
  })

  test("the config's warnings are logged: at start, before listening, and after a reload that brings new ones", async (t) => {
    const file = configIn(
      t,
      `version: 1
gateway: { name: Warned, host: 127.0.0.1, port: 0 }
endpoints:
  GET /hello:
    cache: { ttl: 300, scope: public }
    response: { hello: world }
`,
    )
    const { cli } = await startCli(t, ['serve', file])
    const lines = cli.json()
    const warned = lines.findIndex((l) => l.event === 'config_warning')
    assert.ok(warned !== -1 && warned < lines.findIndex((l) => l.event === 'listening'), cli.stdout)
    assert.deepEqual(
      [lines[warned]?.level, lines[warned]?.code, lines[warned]?.at],
      ['warn', 'BATON_CACHE_UNIT', `${file}:5:19`],
    )
    assert.match(String(lines[warned]?.msg), /ttl: 300 is 300 ms: a bare number is milliseconds/)

    writeFileSync(file, readFileSync(file, 'utf8').replace('ttl: 300,', 'ttl: 300s, staleIfError: 60,'))
    cli.kill('SIGHUP')
    await cli.waitFor(/"event":"reloaded"[^\n]*\n[^\n]*"event":"config_warning"/)
    const after = cli.json().filter((l) => l.event === 'config_warning')
    assert.deepEqual(
      after.map((l) => [l.code, l.at]),
      [
        ['BATON_CACHE_UNIT', `${file}:5:19`],
        ['BATON_CACHE_UNIT', `${file}:5:39`],
      ],
    )
    cli.kill('SIGTERM')
    assert.equal((await cli.exited).code, 0)
  })

  test('baton --version is the package version', async (t) => {
    const cli = spawnCli(t, ['--version'])
    assert.equal((await cli.exited).code, 0)
    assert.equal(cli.stdout, `${VERSION}\n`)
  })
})

describe('standard series', () => {
  test('process_* and nodejs_* from prom-client, and baton_build_info with the version', async (t) => {
    const port = await freePort()
    const { cli, url } = await startCli(t, [
      'serve',
      configFile(),
      '--port',
      String(port),
      '--host',
      '127.0.0.1',
      '--log-level',
      'info',
    ])
    const text = await (await fetch(`${url}/metrics`)).text()
    assert.ok(text.includes(`baton_build_info{version="${VERSION}",node="${process.version}"} 1`), 'baton_build_info')
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
    ])
      assert.match(text, new RegExp(`^${name}(\\{[^}]*\\})? `, 'm'), name)
    assert.doesNotMatch(text, /^nodejs_active_handles_total/m)
    cli.kill('SIGTERM')
    assert.equal((await cli.exited).code, 0)
  })
})

describe('baton init', () => {
  test('writes a starter that checks clean and that baton dev serves at once, partial when the optional service is down', async (t) => {
    const dir = join(mkdtempSync(join(tmpdir(), 'baton-init-')), 'my-bff')
    const init = spawnCli(t, ['init', dir])
    assert.equal((await init.exited).code, 0, init.stderr)
    assert.match(init.stdout, /^wrote .*my-bff\/baton\.yaml: one screen/)
    const file = join(dir, 'baton.yaml')
    assert.match(readFileSync(file, 'utf8'), /^# yaml-language-server: \$schema=/)
    const check = spawnCli(t, ['check', file])
    assert.equal((await check.exited).code, 0, check.stderr)
    assert.equal(check.stderr, '', 'no warnings')

    const { cli, url } = await startCli(t, ['dev', file, '--port', '0'])
    const home = await get(`${url}/home/42`)
    assert.equal(home.status, 200)
    assert.deepEqual(home.body, {
      user: { id: '42', name: 'Ada Lovelace' },
      recommendations: [
        { sku: 'LAMP-1', title: 'Desk lamp' },
        { sku: 'CHAIR-2', title: 'Chair' },
      ],
    })
    cli.kill('SIGTERM')
    await cli.exited
    const down = await startCli(t, ['dev', file, '--port', '0', '--down', 'recommendations'])
    const partial = await get(`${down.url}/home/42`)
    assert.equal(partial.status, 200)
    assert.equal(partial.headers['baton-degraded'], 'recommendations')
    assert.deepEqual((partial.body as { recommendations: unknown }).recommendations, [])
    down.cli.kill('SIGTERM')
    await down.cli.exited

    const again = spawnCli(t, ['init', dir])
    assert.equal((await again.exited).code, 1)
    assert.match(again.stderr, /already exists; it was left as it is/)
  })
})

describe('--format for programs and CI', () => {
  const broken = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-format-'))
    const file = join(dir, 'baton.yaml')
    writeFileSync(
      file,
      'version: 1\ngateway: { name: X }\nendpoints:\n  GET /a:\n    calls:\n      a: { request: "GET nope /x" }\n',
    )
    return file
  }

  test('baton check --format json: one object with every diagnostic and its place; exit 1 on errors', async (t) => {
    const file = broken()
    const cli = spawnCli(t, ['check', file, '--format', 'json'])
    assert.equal((await cli.exited).code, 1)
    const out = JSON.parse(cli.stdout) as { ok: boolean; errors: number; diagnostics: Record<string, unknown>[] }
    assert.equal(out.ok, false)
    assert.equal(out.errors, 1)
    assert.deepEqual(
      { ...out.diagnostics[0], hint: undefined },
      {
        severity: 'error',
        code: 'BATON_UNKNOWN_SERVICE',
        message: "no service named 'nope'",
        path: ['endpoints', 'GET /a', 'calls', 'a', 'request'],
        file,
        line: 6,
        col: 26,
        hint: undefined,
      },
    )
  })

  test('baton check --format github: a workflow annotation per diagnostic', async (t) => {
    const file = broken()
    const cli = spawnCli(t, ['check', file, '--format', 'github'])
    assert.equal((await cli.exited).code, 1)
    assert.match(
      cli.stdout,
      new RegExp(
        `^::error file=${file.replaceAll(':', '%3A')},line=6,col=26,title=BATON_UNKNOWN_SERVICE::no service named 'nope'`,
      ),
    )
  })

  test('baton plan --format json: the template tables as data', async (t) => {
    const cli = spawnCli(t, ['plan', configFile(), '--format', 'json'])
    assert.equal((await cli.exited).code, 0, cli.stderr)
    const out = JSON.parse(cli.stdout) as { name: string; tables: { table: string; rows: Record<string, string>[] }[] }
    assert.equal(out.name, 'Env')
    assert.deepEqual(out.tables.find((x) => x.table === 'Caching strategy')?.rows, [
      { Endpoint: 'GET /hello', 'Cache Layer': 'No cache', TTL: 'N/A', Invalidation: 'N/A' },
    ])
  })
})

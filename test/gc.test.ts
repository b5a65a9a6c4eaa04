/**
 * `baton serve` on a single core restarts itself in place with V8's single-threaded GC
 * (bin/baton.js): the same pid, the same arguments, still serving and still draining on SIGTERM.
 * Observed from outside, as an operator would: the process's command line in /proc.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { ROOT, spawnCli, startCli } from './helpers/cli.ts'
import { json, startStub } from './helpers/stub.ts'

const taskset = (() => {
  try {
    execFileSync('taskset', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
})()
const BIN = join(ROOT, 'bin/baton.js')
const skip =
  process.platform !== 'linux' ? 'Linux only (/proc, taskset)' : taskset ? false : 'needs taskset (util-linux)'

async function serve(
  t: TestContext,
  { pinned, gc }: { pinned: boolean; gc?: string },
): Promise<{ argv: string[]; spawnedPid: number; port: number; stop: () => Promise<number | null> }> {
  const stub = await startStub()
  t.after(() => stub.close())
  stub.route('GET /items/:id', json({ id: 1 }))
  const dir = mkdtempSync(join(tmpdir(), 'baton-gc-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'baton.yaml')
  writeFileSync(
    file,
    `version: 1
gateway: { name: GC test, host: 127.0.0.1 }
services:
  items: { url: "${stub.url}", timeout: 2s }
endpoints:
  GET /items/{id}:
    calls:
      item: { request: "GET items /items/\${request.params.id}" }
    response: "\${item}"
`,
  )
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' }
  delete env.BATON_GC
  if (gc !== undefined) env.BATON_GC = gc
  const args = ['serve', file, '--port', '0']
  const { cli, port } = await startCli(
    t,
    pinned ? ['-c', '0', process.execPath, 'bin/baton.js', ...args] : ['bin/baton.js', ...args],
    { command: pinned ? 'taskset' : process.execPath, env },
  )
  const res = await fetch(`http://127.0.0.1:${port}/items/1`)
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), { id: 1 })
  assert.equal(stub.requests.length, 1)
  // taskset execs node in its own process, so the pid spawned is the gateway's.
  const spawnedPid = cli.child.pid as number
  const argv = readFileSync(`/proc/${spawnedPid}/cmdline`, 'utf8')
    .split('\0')
    .filter((arg) => arg !== '')
  return {
    argv,
    spawnedPid,
    port,
    stop: async () => {
      cli.kill('SIGTERM')
      const exit = await cli.exited
      assert.match(cli.stdout, /"event":"stopped"/)
      return exit.code
    },
  }
}

describe('garbage collection for the cores the server has', { skip }, () => {
  test('on one core (taskset), serve restarts itself in place with --single-threaded-gc: same pid, same arguments, serves, drains', async (t) => {
    const { argv, stop } = await serve(t, { pinned: true })
    assert.equal(argv[0], process.execPath)
    assert.equal(argv[1], '--single-threaded-gc')
    // process.argv[1] as Node resolved it
    assert.deepEqual(argv.slice(2, 4), [BIN, 'serve'])
    assert.deepEqual(argv.slice(-2), ['--port', '0'])
    assert.equal(await stop(), 0)
  })

  test('BATON_GC=parallel keeps V8 default on one core', async (t) => {
    const { argv, stop } = await serve(t, { pinned: true, gc: 'parallel' })
    assert.equal(argv.includes('--single-threaded-gc'), false)
    assert.deepEqual(argv.slice(0, 3), [process.execPath, 'bin/baton.js', 'serve'])
    assert.equal(await stop(), 0)
  })

  test(
    'with several cores the default is left alone; BATON_GC=single asks for it anyway',
    { skip: availableParallelism() < 2 ? 'one core here' : false },
    async (t) => {
      const parallel = await serve(t, { pinned: false })
      assert.equal(parallel.argv.includes('--single-threaded-gc'), false)
      assert.equal(await parallel.stop(), 0)
      const single = await serve(t, { pinned: false, gc: 'single' })
      assert.deepEqual(single.argv.slice(0, 4), [process.execPath, '--single-threaded-gc', BIN, 'serve'])
      assert.equal(await single.stop(), 0)
    },
  )

  test('BATON_GC with another value is a usage error naming it (exit 2)', async (t) => {
    const cli = spawnCli(t, ['serve', 'examples/checkout/baton.yaml'], { env: { ...process.env, BATON_GC: 'fast' } })
    assert.deepEqual(await cli.exited, { code: 2, signal: null })
    assert.equal(cli.stderr, 'baton serve: BATON_GC=fast: expected auto, single or parallel\n')
    assert.equal(cli.stdout, '')
  })
})

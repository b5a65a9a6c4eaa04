#!/usr/bin/env node
// Plain JavaScript on purpose: this file must run on any Node.js to tell the user,
// in one line, which version Baton needs before anything else can fail.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  console.error(
    `baton: Node.js >= 22.19 is required (this is ${process.version}); run it through npm scripts or npx, which use the project's Node 24.`,
  )
  process.exit(1)
}
// A server given a single core (taskset, a cgroup quota, a one-CPU container) collects garbage
// on that core alone: V8's parallel and concurrent GC threads then only take turns with the
// JavaScript thread, and every young-generation pause grows (measured, bench/RESULTS.md: p99
// 57 ms → 33 ms with --single-threaded-gc on posts-distinct, same throughput). V8 takes GC flags
// only at start-up (setting them later crashes it), so the server restarts itself, in place
// (same pid, same stdio, same arguments), with the flag. BATON_GC=parallel keeps V8's default;
// BATON_GC=single asks for it on any machine; a GC flag given to node explicitly is left alone.
const command = process.argv[2]
if ((command === 'serve' || command === 'dev') && typeof process.execve === 'function') {
  const gc = process.env.BATON_GC || 'auto'
  if (gc !== 'auto' && gc !== 'single' && gc !== 'parallel') {
    console.error(`baton ${command}: BATON_GC=${gc}: expected auto, single or parallel`)
    process.exit(2)
  }
  const explicit = process.execArgv.some((flag) => /^--(no-)?single-threaded(-gc)?$/.test(flag))
  if (!explicit && (gc === 'single' || (gc === 'auto' && (await cores()) <= 1))) {
    process.execve(
      process.execPath,
      [process.execPath, '--single-threaded-gc', ...process.execArgv, ...process.argv.slice(1)],
      process.env,
    )
  }
}
/**
 * The cores this process may use: its CPU affinity (taskset, cpuset), and the cgroup's CPU
 * quota when there is one (a container's --cpus, a Kubernetes CPU limit), rounded up.
 */
async function cores() {
  const { availableParallelism } = await import('node:os')
  const { readFileSync } = await import('node:fs')
  const read = (file) => {
    try {
      return readFileSync(file, 'utf8').trim()
    } catch {
      return null
    }
  }
  let quota = null
  const v2 = read('/sys/fs/cgroup/cpu.max') // "max 100000" or "150000 100000"
  if (v2 !== null) {
    const [max, period] = v2.split(/\s+/)
    if (max !== 'max') quota = Number(max) / Number(period)
  } else {
    const max = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')) // -1: none
    const period = Number(read('/sys/fs/cgroup/cpu/cpu.cfs_period_us'))
    if (max > 0 && period > 0) quota = max / period
  }
  const affinity = availableParallelism()
  return quota !== null && Number.isFinite(quota) && quota > 0 ? Math.min(affinity, Math.ceil(quota)) : affinity
}
// Measured (bench/RESULTS.md): once the config tooling (zod, yaml) has run at start-up, V8's
// allocation-site pretenuring starts placing per-request objects straight into the old
// generation; every scavenge then takes ~20 ms instead of ~2 ms and p99 latency suffers.
// A gateway's per-request objects die young, so pretenuring only hurts here.
const v8 = await import('node:v8')
v8.setFlagsFromString('--no-allocation-site-pretenuring')
// A repository checkout runs the sources directly (Node strips the types); an installed package,
// where Node refuses to strip types under node_modules, runs the build in dist/ (`npm run build`).
const { existsSync } = await import('node:fs')
const sources = new URL('../src/cli/main.ts', import.meta.url)
const { main } = await import(existsSync(sources) ? sources.href : '../dist/cli/main.js')
process.exitCode = await main(process.argv)

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

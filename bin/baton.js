#!/usr/bin/env node
// Plain JavaScript on purpose: this file must run on any Node.js to tell the user,
// in one line, which version Baton needs before anything else can fail.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  console.error(`baton: Node.js >= 22.19 is required (this is ${process.version}); run it through npm scripts or npx, which use the project's Node 24.`)
  process.exit(1)
}
const { main } = await import('../src/cli/main.ts')
process.exitCode = await main(process.argv)

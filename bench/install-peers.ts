// Installs the peers the benchmark compares Baton with (Tailcall), outside the repository,
// with the shared anchors' script: npm run bench:install-peers.
//
// BENCH_TAILCALL_DIR (default /work/tailcall) is where Tailcall goes; BENCH_ANCHORS names
// the anchors' directory if it is not ../shared/anchors beside the repository.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { anchors, tailcallDir } from './peers.ts'

if (anchors === undefined) {
  console.error(
    'bench:install-peers: no tailcall.sh in ../shared/anchors beside the repository' +
      (process.env.BENCH_ANCHORS === undefined ? '' : ` or in BENCH_ANCHORS (${process.env.BENCH_ANCHORS})`) +
      '; set BENCH_ANCHORS to the directory that holds tailcall.sh and posts.lua',
  )
  process.exit(1)
}
const result = spawnSync(join(anchors, 'tailcall.sh'), ['install', tailcallDir], { stdio: 'inherit' })
if (result.error !== undefined) console.error(`bench:install-peers: ${result.error.message}`)
process.exit(result.status ?? 1)

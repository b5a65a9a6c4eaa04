// The peers the benchmark measures Baton against, which live outside the repository:
// Tailcall, installed and started by the shared anchors' script (tailcall.sh, with wrk's
// query in posts.lua). Nothing here is needed by `npm test`; the bench skips a peer that
// is not installed, saying why.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

/** How a target is asked for a scenario's screen, when not as the scenario says. */
export interface TargetRequest {
  method: 'GET' | 'POST'
  path: string
  body: string
  headers: Record<string, string>
  /** wrk's Lua script that sends this request. */
  script: string
}

/** The directory of the peers' scripts (tailcall.sh, posts.lua): BENCH_ANCHORS, else
 * ../shared/anchors beside this checkout, else beside the main checkout of a git worktree. */
export function anchorsDir(): string | undefined {
  const fromEnv = process.env.BENCH_ANCHORS
  const candidates =
    fromEnv !== undefined && fromEnv !== '' ? [fromEnv] : [resolve(root, '../shared/anchors'), besideMainCheckout()]
  return candidates.find((dir) => dir !== undefined && existsSync(join(dir, 'tailcall.sh')))
}

// In a git worktree, ../shared/anchors beside the main checkout (the one holding .git).
function besideMainCheckout(): string | undefined {
  try {
    const common = execFileSync('git', ['rev-parse', '--path-format=absolute', '--git-common-dir'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim()
    return resolve(dirname(common), '../shared/anchors')
  } catch {
    return undefined // not a git checkout
  }
}

export const anchors = anchorsDir()
export const tailcallDir = process.env.BENCH_TAILCALL_DIR ?? '/work/tailcall'
const tailcallBinary = join(tailcallDir, 'node_modules/@tailcallhq/core-linux-x64-gnu/bin/tailcall')

export function tailcallMissing(): string | undefined {
  if (anchors === undefined) {
    return 'no tailcall.sh in ../shared/anchors beside the repository or in BENCH_ANCHORS'
  }
  if (!existsSync(tailcallBinary)) {
    return `Tailcall is not installed in ${tailcallDir} (npm run bench:install-peers, or set BENCH_TAILCALL_DIR)`
  }
  return undefined
}

// Tailcall's query, from the anchors' wrk script, so that the check sends what wrk sends.
export function tailcallRequest(): TargetRequest | undefined {
  if (anchors === undefined) return undefined
  const script = join(anchors, 'posts.lua')
  if (!existsSync(script)) return undefined
  const lua = readFileSync(script, 'utf8')
  const body = /^wrk\.body\s*=\s*'(.*)'\s*$/m.exec(lua)?.[1]
  if (body === undefined) throw new Error(`${script}: no wrk.body = '...' line`)
  return { method: 'POST', path: '/graphql', body, headers: { 'content-type': 'application/json' }, script }
}

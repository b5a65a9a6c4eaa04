// BENCH_PIN: gives the gateway under test CPU cores of its own.
//
// On a small machine the gateway, the upstream and wrk share the same cores, and the scheduler
// decides who runs where: a multi-threaded gateway takes whichever core wrk and nginx leave free,
// a single-threaded one waits for its own. Measured that way, CPU per request moves by ±20 %
// between runs of the same code, and p99 measures preemption as much as the gateway.
// BENCH_PIN=1 (a core list as taskset takes it: "1", "2-3") runs every gateway on those cores and
// the upstream and wrk on all the others, so each gateway gets the same cores, alone.
import { execFileSync } from 'node:child_process'
import { availableParallelism } from 'node:os'

export interface Pinning {
  /** taskset's core list for the gateways, and for everything else. */
  readonly gateway: string
  readonly load: string
}

/** The pinning BENCH_PIN asks for, or null when it is not set. Throws when it cannot be done here. */
export function pinningFromEnv(): Pinning | null {
  const text = (process.env.BENCH_PIN ?? '').trim()
  if (text === '' || text === '0' || text === 'off') return null
  const cores = availableParallelism()
  const gateway = coreList(text, cores)
  const load = [...Array(cores).keys()].filter((c) => !gateway.includes(c))
  if (load.length === 0) throw new Error(`BENCH_PIN=${text}: leaves no core for the upstream and wrk (${cores} cores)`)
  try {
    execFileSync('taskset', ['--version'], { stdio: 'ignore' })
  } catch {
    throw new Error('BENCH_PIN needs taskset (util-linux): apt-get install util-linux')
  }
  return { gateway: gateway.join(','), load: load.join(',') }
}

/** argv run on the given cores. */
export function pinned(pin: string | undefined, argv: string[]): string[] {
  return pin === undefined ? argv : ['taskset', '-c', pin, ...argv]
}

function coreList(text: string, cores: number): number[] {
  const list = new Set<number>()
  for (const part of text.split(',')) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part.trim())
    if (match === null) throw new Error(`BENCH_PIN=${text}: expected cores as taskset lists them, e.g. 1 or 2-3`)
    const from = Number(match[1])
    const to = match[2] === undefined ? from : Number(match[2])
    for (let c = from; c <= to; c++) {
      if (c >= cores) throw new Error(`BENCH_PIN=${text}: this machine has cores 0 to ${cores - 1}`)
      list.add(c)
    }
  }
  return [...list].sort((a, b) => a - b)
}

// Compares two V8 heap snapshots (.heapsnapshot, as the inspector or Chrome's DevTools write them):
// what grew between them, by kind of object, in count and in bytes (self size).
//
//   node bench/heapdiff.ts BEFORE.heapsnapshot AFTER.heapsnapshot [TOP]
//
// `npm run bench:soak` writes such a pair with BENCH_SOAK_SNAPSHOTS=DIR.
import { readFileSync } from 'node:fs'

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } }
  nodes: number[]
  strings: string[]
}

interface Tally {
  count: number
  bytes: number
}

/** Objects by kind: the constructor's name for objects, the node type for the rest (strings, code, …). */
function tally(file: string): Map<string, Tally> {
  const heap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot
  const fields = heap.snapshot.meta.node_fields
  const width = fields.length
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const sizeAt = fields.indexOf('self_size')
  const types = heap.snapshot.meta.node_types[0]
  const kinds = new Map<string, Tally>()
  for (let i = 0; i < heap.nodes.length; i += width) {
    const type = types[heap.nodes[i + typeAt] as number] ?? '?'
    const name = heap.strings[heap.nodes[i + nameAt] as number] ?? '?'
    const kind = type === 'object' || type === 'closure' ? `${type} ${name}` : `(${type})`
    const t = kinds.get(kind) ?? { count: 0, bytes: 0 }
    t.count++
    t.bytes += heap.nodes[i + sizeAt] as number
    kinds.set(kind, t)
  }
  return kinds
}

const [beforeFile, afterFile, topText] = process.argv.slice(2)
if (beforeFile === undefined || afterFile === undefined) {
  console.error('usage: node bench/heapdiff.ts BEFORE.heapsnapshot AFTER.heapsnapshot [TOP]')
  process.exit(2)
}
const top = Number(topText ?? 25)
const before = tally(beforeFile)
const after = tally(afterFile)
const rows = [...new Set([...before.keys(), ...after.keys()])].map((kind) => {
  const b = before.get(kind) ?? { count: 0, bytes: 0 }
  const a = after.get(kind) ?? { count: 0, bytes: 0 }
  return { kind, count: a.count - b.count, bytes: a.bytes - b.bytes, total: a.bytes }
})
const sum = (m: Map<string, Tally>): number => [...m.values()].reduce((s, t) => s + t.bytes, 0)
console.log(`self size: ${(sum(before) / 1048576).toFixed(1)} MiB → ${(sum(after) / 1048576).toFixed(1)} MiB`)
console.log('\nGrew the most, in bytes (Δ bytes, Δ count, bytes after, kind):')
for (const r of rows.sort((x, y) => y.bytes - x.bytes).slice(0, top)) {
  console.log(
    `${String(r.bytes).padStart(10)} ${String(r.count).padStart(8)} ${String(r.total).padStart(10)}  ${r.kind}`,
  )
}

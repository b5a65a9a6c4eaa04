// The layering of src/, checked: each folder imports only from the folders below it, and no
// module imports itself back through others. A new import that breaks a rule fails here,
// naming the file and the import.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src')

/** Lowest first. A folder may import from its own layer's folders only where said below, and from every layer under it. */
const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'util'],
  ['expr'],
  ['config', 'policies'],
  ['plan'],
  ['store'],
  ['upstream'],
  ['runtime', 'edge', 'cache'],
  ['observability'],
  ['server'],
  ['cli'],
  ['index.ts'],
]

function layerOf(file: string): number {
  const top = file.split('/')[0] as string
  const at = LAYERS.findIndex((names) => names.includes(top))
  assert.notEqual(at, -1, `${file}: src/${top} is in no layer of test/architecture.test.ts; add it`)
  return at
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sources(path)
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [relative(SRC, path)] : []
  })
}

/** Relative imports and re-exports of a module (type-only ones too), as paths under src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(SRC, file), 'utf8')
  const specifiers = [
    ...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g),
  ]
  return specifiers.map((m) => relative(SRC, resolve(join(SRC, dirname(file)), (m[1] ?? m[2]) as string)))
}

const files = sources(SRC)
const graph = new Map(files.map((f) => [f, importsOf(f)]))

test('the import parser sees the imports (a check that cannot see any would pass for nothing)', () => {
  assert.ok(files.length > 50)
  assert.ok(graph.get('runtime/execute.ts')?.includes('upstream/pipeline.ts'))
  assert.ok(graph.get('index.ts')?.includes('server/gateway.ts'))
})

test('no folder imports from a folder above it (runtime/ knows nothing of observability/, edge/ nothing of server/)', () => {
  const wrong: string[] = []
  for (const [file, imports] of graph) {
    for (const target of imports) {
      const same = file.split('/')[0] === target.split('/')[0]
      if (!same && layerOf(target) >= layerOf(file)) wrong.push(`${file} imports ${target}`)
    }
  }
  assert.deepEqual(wrong, [])
})

test('no import cycles between modules', () => {
  const cycles: string[] = []
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (file: string): void => {
    state.set(file, 'open')
    stack.push(file)
    for (const target of graph.get(file) ?? []) {
      if (state.get(target) === 'open') cycles.push([...stack.slice(stack.indexOf(target)), target].join(' → '))
      else if (!state.has(target) && graph.has(target)) visit(target)
    }
    stack.pop()
    state.set(file, 'done')
  }
  for (const file of files) if (!state.has(file)) visit(file)
  assert.deepEqual(cycles, [])
})

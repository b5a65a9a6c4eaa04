// Summarises a V8 CPU profile (node --cpu-prof) by self time: where the samples fell, per
// file (Baton's own files one by one, each npm package as one, Node's internals by module)
// and per function. Used to see what Baton's own code costs beside the hand-written BFF.
//
//   node bench/cpuprofile.ts PROFILE.cpuprofile [TOP=25]
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const root = fileURLToPath(new URL('..', import.meta.url))

// Where a function lives, at the grain worth reading: a Baton file, a package, a Node module.
function placeOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)'
  const path = url.startsWith('file://') ? fileURLToPath(url) : url
  const inPackages = path.lastIndexOf('node_modules/')
  if (inPackages !== -1) {
    const [scope, name] = path.slice(inPackages + 'node_modules/'.length).split('/')
    return `npm:${scope?.startsWith('@') === true ? `${scope}/${name}` : scope}`
  }
  if (path.startsWith('node:')) return path
  return path.startsWith(root) ? path.slice(root.length) : path
}

const [file, topText] = process.argv.slice(2)
if (file === undefined) {
  console.error('usage: node bench/cpuprofile.ts PROFILE.cpuprofile [TOP]')
  process.exit(2)
}
const top = Number(topText ?? 25)
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(profile.nodes.map((node) => [node.id, node]))

const selfByNode = new Map<number, number>()
profile.samples.forEach((id, i) => selfByNode.set(id, (selfByNode.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))

const byPlace = new Map<string, number>()
const byFunction = new Map<string, number>()
let total = 0
let idle = 0
for (const [id, micros] of selfByNode) {
  const frame = byId.get(id)?.callFrame
  if (frame === undefined) continue
  if (frame.functionName === '(idle)') {
    idle += micros
    continue
  }
  total += micros
  const place = placeOf(frame.url, frame.functionName)
  byPlace.set(place, (byPlace.get(place) ?? 0) + micros)
  const name = `${frame.functionName || '(anonymous)'} ${place}${frame.url === '' ? '' : `:${frame.lineNumber + 1}`}`
  byFunction.set(name, (byFunction.get(name) ?? 0) + micros)
}

const percent = (micros: number) => ((100 * micros) / total).toFixed(1).padStart(5) + ' %'
const print = (title: string, entries: Map<string, number>) => {
  console.log(`\n${title}`)
  for (const [name, micros] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${percent(micros)}  ${name}`)
  }
}
console.log(
  `${(total / 1e6).toFixed(1)} s busy, ${(idle / 1e6).toFixed(1)} s idle (self time of the busy samples below)`,
)
print('By file', byPlace)
print('By function', byFunction)
const baton = [...byPlace].filter(([place]) => place.startsWith('src/')).reduce((sum, [, micros]) => sum + micros, 0)
console.log(`\nBaton's own files (src/): ${percent(baton).trim()}`)

/** "Did you mean" for unknown names, functions and methods. */

/** Names people carry over from JavaScript, mapped to ours. */
const HABITS: ReadonlyMap<string, string> = new Map([
  ['length', 'size'], ['len', 'size'], ['count', 'size'],
  ['includes', 'contains'], ['indexOf', 'contains'],
  ['toLowerCase', 'lowerAscii'], ['lower', 'lowerAscii'], ['lowercase', 'lowerAscii'],
  ['toUpperCase', 'upperAscii'], ['upper', 'upperAscii'], ['uppercase', 'upperAscii'],
  ['some', 'exists'], ['any', 'exists'], ['every', 'all'],
  ['replaceAll', 'replace'], ['sort', 'sortBy'], ['distinct', 'unique'],
  ['parseInt', 'int'], ['parseFloat', 'number'], ['toString', 'string'],
])

/**
 * The closest candidate within a few edits (a swap of two letters counts as one), if any.
 * A JavaScript habit, even misspelt ("lenght"), leads to our name for it.
 */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  const known = new Set(candidates)
  const spellings = new Map<string, string>()
  for (const candidate of known) spellings.set(candidate.toLowerCase(), candidate)
  for (const [habit, ours] of HABITS) if (known.has(ours) && !known.has(habit)) spellings.set(habit.toLowerCase(), ours)
  const lower = name.toLowerCase()
  let best: string | undefined
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1
  for (const [spelling, candidate] of spellings) {
    const distance = editDistance(lower, spelling)
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

/** "did you mean 'x'? known …: a, b, c" */
export function suggestion(name: string, candidates: readonly string[], what: string): string | undefined {
  const match = closest(name, candidates)
  const known = candidates.length > 0 ? `known ${what}: ${[...candidates].sort().join(', ')}` : undefined
  if (match === undefined) return known
  return known === undefined ? `did you mean '${match}'?` : `did you mean '${match}'? ${known}`
}

/** Optimal string alignment distance. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return Infinity
  const rows: number[][] = []
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i]
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j)
        continue
      }
      const above = rows[i - 1] as number[]
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let value = Math.min((above[j] as number) + 1, (row[j - 1] as number) + 1, (above[j - 1] as number) + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        value = Math.min(value, ((rows[i - 2] as number[])[j - 2] as number) + 1)
      }
      row.push(value)
    }
    rows.push(row)
  }
  return (rows[a.length] as number[])[b.length] as number
}

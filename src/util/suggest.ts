/** "Did you mean …?" for a misspelt name: the closest candidate within a few edits. */

/**
 * The closest candidate within a few edits (a swap of two letters counts as one), if any.
 * `aliases` maps other spellings (habits from other languages) to a candidate.
 */
export function closest(
  word: string,
  candidates: Iterable<string>,
  aliases?: ReadonlyMap<string, string>,
): string | undefined {
  const known = new Set(candidates)
  const spellings = new Map<string, string>()
  for (const candidate of known) spellings.set(candidate.toLowerCase(), candidate)
  if (aliases !== undefined) {
    for (const [alias, ours] of aliases)
      if (known.has(ours) && !known.has(alias)) spellings.set(alias.toLowerCase(), ours)
  }
  const lower = word.toLowerCase()
  let best: string | undefined
  let bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1
  for (const [spelling, candidate] of spellings) {
    const d = editDistance(lower, spelling)
    if (d < bestDistance) {
      best = candidate
      bestDistance = d
    }
  }
  return best
}

/** "did you mean 'x'?", or the list of candidates when it is short and nothing is close. */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  const list = [...candidates]
  const match = closest(word, list)
  if (match !== undefined) return `did you mean '${match}'?`
  return list.length > 0 && list.length <= 12 ? `expected one of: ${list.join(', ')}` : undefined
}

/** Optimal string alignment distance. */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return Infinity
  let before: number[] = []
  let above: number[] = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row: number[] = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let value = Math.min((above[j] as number) + 1, (row[j - 1] as number) + 1, (above[j - 1] as number) + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        value = Math.min(value, (before[j - 2] as number) + 1)
      row.push(value)
    }
    before = above
    above = row
  }
  return above[b.length] as number
}

/** "Did you mean" for unknown names, functions and methods. */
import { closest } from '../util/suggest.ts'

/** Names people carry over from JavaScript, mapped to ours. */
const HABITS: ReadonlyMap<string, string> = new Map([
  ['length', 'size'],
  ['len', 'size'],
  ['count', 'size'],
  ['includes', 'contains'],
  ['indexOf', 'contains'],
  ['toLowerCase', 'lowerAscii'],
  ['lower', 'lowerAscii'],
  ['lowercase', 'lowerAscii'],
  ['toUpperCase', 'upperAscii'],
  ['upper', 'upperAscii'],
  ['uppercase', 'upperAscii'],
  ['some', 'exists'],
  ['any', 'exists'],
  ['every', 'all'],
  ['replaceAll', 'replace'],
  ['sort', 'sortBy'],
  ['distinct', 'unique'],
  ['parseInt', 'int'],
  ['parseFloat', 'number'],
  ['toString', 'string'],
])

/** "did you mean 'x'? known …: a, b, c" */
export function suggestion(name: string, candidates: readonly string[], what: string): string | undefined {
  const match = closest(name, candidates, HABITS)
  const known = candidates.length > 0 ? `known ${what}: ${[...candidates].sort().join(', ')}` : undefined
  if (match === undefined) return known
  return known === undefined ? `did you mean '${match}'?` : `did you mean '${match}'? ${known}`
}

import { ExpressionSyntaxError } from './errors.ts'

export type TokenType = 'number' | 'string' | 'name' | 'punct' | 'end'

export interface Token {
  readonly type: TokenType
  /** The name or punctuator; for literals, the source text as written. */
  readonly text: string
  /** The decoded value of a number or string literal. */
  readonly value?: number | string
  readonly start: number
}

export interface Scan {
  /** Always ends with an 'end' token. */
  readonly tokens: Token[]
  /** Index of the closing `}` (template mode) or source.length; -1 when a template part never closes. */
  readonly end: number
}

const TWO_CHAR = new Set(['??', '||', '&&', '==', '!=', '<=', '>='])
const ONE_CHAR = new Set('?:<>+-*/%!.[](){},')
const ESCAPES: ReadonlyMap<string, string> = new Map([
  ['n', '\n'],
  ['t', '\t'],
  ['r', '\r'],
  ['b', '\b'],
  ['f', '\f'],
  ['\\', '\\'],
  ['/', '/'],
  ["'", "'"],
  ['"', '"'],
])
const MISTAKES: ReadonlyMap<string, string> = new Map([
  ['=', "use '==' to compare"],
  ['|', "use '||'"],
  ['&', "use '&&'"],
  ['$', '`${` starts an interpolation in a template; inside an expression, write the name directly'],
])

const isDigit = (c: number): boolean => c >= 48 && c <= 57
const isNameStart = (c: number): boolean => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95
const isNamePart = (c: number): boolean => isNameStart(c) || isDigit(c)
const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13

/**
 * Splits `source` into tokens from `start`. In template mode the scan stops at the `}` that
 * closes the `${`, counting the braces of map literals; string literals are scanned whole,
 * so a `}` inside one never ends the part.
 */
export function tokenize(source: string, start: number, template: boolean): Scan {
  const tokens: Token[] = []
  const length = source.length
  let braces = 0
  let i = start
  for (;;) {
    while (i < length && isSpace(source.charCodeAt(i))) i++
    if (i >= length) {
      if (template) return { tokens, end: -1 }
      tokens.push({ type: 'end', text: '', start: length })
      return { tokens, end: length }
    }
    const c = source.charCodeAt(i)
    if (isDigit(c)) {
      i = scanNumber(source, i, tokens)
    } else if (c === 34 || c === 39) {
      i = scanString(source, i, tokens)
    } else if (isNameStart(c)) {
      let j = i + 1
      while (j < length && isNamePart(source.charCodeAt(j))) j++
      tokens.push({ type: 'name', text: source.slice(i, j), start: i })
      i = j
    } else {
      const two = source.slice(i, i + 2)
      const one = source[i] as string
      if (TWO_CHAR.has(two)) {
        tokens.push({ type: 'punct', text: two, start: i })
        i += 2
      } else if (ONE_CHAR.has(one)) {
        if (one === '{') braces++
        else if (one === '}') {
          if (template && braces === 0) {
            tokens.push({ type: 'end', text: '', start: i })
            return { tokens, end: i }
          }
          braces--
        }
        tokens.push({ type: 'punct', text: one, start: i })
        i++
      } else {
        throw new ExpressionSyntaxError(`unexpected character ${JSON.stringify(one)}`, i, MISTAKES.get(one))
      }
    }
  }
}

/** JSON number syntax, without the sign (unary minus is an operator). */
function scanNumber(source: string, start: number, tokens: Token[]): number {
  let i = start
  const at = (k: number): number => source.charCodeAt(k)
  if (at(i) === 48) {
    i++
    if (isDigit(at(i))) throw new ExpressionSyntaxError('numbers cannot start with 0', start)
  } else {
    while (isDigit(at(i))) i++
  }
  // "1." followed by a name is a member access, as in JSON there is no "1." number.
  if (at(i) === 46 && isDigit(at(i + 1))) {
    i += 2
    while (isDigit(at(i))) i++
  }
  if (at(i) === 101 || at(i) === 69) {
    i++
    if (at(i) === 43 || at(i) === 45) i++
    if (!isDigit(at(i))) throw new ExpressionSyntaxError('invalid number: exponent has no digits', start)
    while (isDigit(at(i))) i++
  }
  if (isNamePart(at(i)))
    throw new ExpressionSyntaxError(`invalid number ${JSON.stringify(source.slice(start, i + 1))}`, start)
  const text = source.slice(start, i)
  const value = Number(text)
  if (!Number.isFinite(value)) throw new ExpressionSyntaxError(`number ${text} is out of range`, start)
  tokens.push({ type: 'number', text, value, start })
  return i
}

function scanString(source: string, start: number, tokens: Token[]): number {
  const quote = source.charCodeAt(start)
  let value = ''
  let chunk = start + 1
  let i = chunk
  for (;;) {
    if (i >= source.length) throw new ExpressionSyntaxError('unterminated string', start)
    const c = source.charCodeAt(i)
    if (c === quote) break
    if (c !== 92) {
      i++
      continue
    }
    value += source.slice(chunk, i)
    const escape = source[i + 1]
    if (escape === 'u') {
      const hex = source.slice(i + 2, i + 6)
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new ExpressionSyntaxError('invalid \\u escape: expected 4 hex digits', i)
      value += String.fromCharCode(parseInt(hex, 16))
      i += 6
    } else {
      const decoded = escape === undefined ? undefined : ESCAPES.get(escape)
      if (decoded === undefined) {
        throw new ExpressionSyntaxError(
          `invalid escape ${JSON.stringify('\\' + (escape ?? ''))}`,
          i,
          'known escapes: \\n \\t \\r \\b \\f \\\\ \\/ \\\' \\" \\uXXXX',
        )
      }
      value += decoded
      i += 2
    }
    chunk = i
  }
  value += source.slice(chunk, i)
  tokens.push({ type: 'string', text: source.slice(start, i + 1), value, start })
  return i + 1
}

/**
 * Global functions. They are strict about their arguments: null or a wrong type throws
 * (has, type and bool excepted), unlike member access and methods, which navigate missing
 * data forgivingly.
 */
import { ExpressionEvalError } from './errors.ts'
import { describe, isMap, kindOf } from './values.ts'

export interface Builtin {
  readonly minArgs: number
  readonly maxArgs: number
  /** `at` is the offset of the call, for error messages. */
  readonly call: (at: number, ...args: unknown[]) => unknown
}

/** Linear-time: every quantifier is followed by a different, mandatory character class. */
const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/

function fail(message: string, at: number): never {
  throw new ExpressionEvalError(message, at)
}

function needNumber(name: string, value: unknown, at: number): number {
  if (typeof value === 'number') return value
  return fail(`${name}() needs a number, got ${describe(value)}`, at)
}

function needList(name: string, value: unknown, at: number): unknown[] {
  if (Array.isArray(value)) return value
  return fail(`${name}() needs a list, got ${describe(value)}`, at)
}

function needMap(name: string, value: unknown, at: number): Record<string, unknown> {
  if (isMap(value)) return value
  return fail(`${name}() needs a map, got ${describe(value)}`, at)
}

/** Never -0: it would print as "0" in JSON but as "-0" nowhere else, so avoid the surprise. */
const noNegativeZero = (n: number): number => (n === 0 ? 0 : n)

/** Length in Unicode code points, so an emoji counts as one character. */
export function codePointLength(text: string): number {
  let length = text.length
  for (let i = 0; i < text.length - 1; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        length--
        i++
      }
    }
  }
  return length
}

/** Shared by size(x) and x.size(). */
export function size(at: number, value: unknown): number {
  if (typeof value === 'string') return codePointLength(value)
  if (Array.isArray(value)) return value.length
  if (isMap(value)) return Object.keys(value).length
  return fail(`size() needs a string, list or map, got ${describe(value)}`, at)
}

function toNumber(name: string, at: number, value: unknown): number {
  if (typeof value === 'number') return value
  if (typeof value === 'string') {
    const text = value.trim()
    if (DECIMAL.test(text)) {
      const parsed = Number(text)
      if (Number.isFinite(parsed)) return parsed
    }
    return fail(
      `${name}() cannot parse ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)} as a number`,
      at,
    )
  }
  return fail(`${name}() needs a number or a numeric string, got ${describe(value)}`, at)
}

/** Half away from zero; the nudge by one epsilon makes round(1.005, 2) give 1.01 despite binary floating point. */
function round(at: number, value: unknown, digits: unknown = 0): number {
  const x = needNumber('round', value, at)
  if (typeof digits !== 'number' || !Number.isInteger(digits) || digits < 0 || digits > 15) {
    return fail(
      `round() digits must be an integer from 0 to 15, got ${typeof digits === 'number' ? digits : describe(digits)}`,
      at,
    )
  }
  const factor = 10 ** digits
  const scaled = Math.abs(x) * factor
  return noNegativeZero((Math.sign(x) * Math.round(scaled * (1 + Number.EPSILON))) / factor)
}

/** min/max over one list or over two or more arguments; all numbers or all strings. */
function extreme(name: string, wantLess: boolean, at: number, args: unknown[]): unknown {
  const values = args.length === 1 ? needList(name, args[0], at) : args
  if (values.length === 0) return fail(`${name}() of an empty list`, at)
  let best = values[0]
  const type = typeof best
  if (type !== 'number' && type !== 'string')
    return fail(`${name}() needs numbers or strings, got ${describe(best)}`, at)
  for (let i = 1; i < values.length; i++) {
    const value = values[i]
    if (typeof value !== type) return fail(`${name}() cannot compare ${describe(best)} and ${describe(value)}`, at)
    if (wantLess ? (value as number) < (best as number) : (value as number) > (best as number)) best = value
  }
  return best
}

function string(at: number, value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value
    case 'number':
    case 'boolean':
      return String(value)
    case 'object':
      if (value !== null) return JSON.stringify(value)
  }
  return fail(`string() needs a value, got ${describe(value)} (use x ?? "" for a default)`, at)
}

function fixed(minArgs: number, maxArgs: number, call: Builtin['call']): Builtin {
  return { minArgs, maxArgs, call }
}

/** has() is a macro, compiled apart; it is listed here only for arity checks and hints. */
export const FUNCTIONS: ReadonlyMap<string, Builtin> = new Map([
  ['size', fixed(1, 1, size)],
  ['has', fixed(1, 1, () => undefined)],
  ['string', fixed(1, 1, string)],
  ['number', fixed(1, 1, (at, value) => toNumber('number', at, value))],
  ['int', fixed(1, 1, (at, value) => noNegativeZero(Math.trunc(toNumber('int', at, value))))],
  ['bool', fixed(1, 1, (_at, value) => Boolean(value))],
  ['abs', fixed(1, 1, (at, value) => Math.abs(needNumber('abs', value, at)))],
  ['floor', fixed(1, 1, (at, value) => noNegativeZero(Math.floor(needNumber('floor', value, at))))],
  ['ceil', fixed(1, 1, (at, value) => noNegativeZero(Math.ceil(needNumber('ceil', value, at))))],
  ['round', fixed(1, 2, round)],
  ['min', fixed(1, Infinity, (at, ...args) => extreme('min', true, at, args))],
  ['max', fixed(1, Infinity, (at, ...args) => extreme('max', false, at, args))],
  [
    'sum',
    fixed(1, 1, (at, value) => {
      let total = 0
      for (const item of needList('sum', value, at)) total += needNumber('sum', item, at)
      if (!Number.isFinite(total)) fail('sum() is not a finite number', at)
      return total
    }),
  ],
  ['keys', fixed(1, 1, (at, value) => Object.keys(needMap('keys', value, at)))],
  ['values', fixed(1, 1, (at, value) => Object.values(needMap('values', value, at)))],
  ['type', fixed(1, 1, (at, value) => kindOf(value) ?? fail(`type() of an unsupported ${typeof value} value`, at))],
])

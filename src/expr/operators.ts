/**
 * Arithmetic and comparison are strict: `+` joins two numbers, two strings or two lists;
 * `- * / %` and `-x` take numbers; `< <= > >=` compare numbers with numbers or strings with
 * strings. Anything else throws, as does a result that is not a finite number.
 */
import { ExpressionEvalError } from './errors.ts'
import { describe, listContains } from './values.ts'

const hasOwn = Object.hasOwn

function finite(result: number, at: number): number {
  if (Number.isFinite(result)) return result
  throw new ExpressionEvalError(`the result is not a finite number (${result})`, at)
}

function mismatch(operator: string, a: unknown, b: unknown, at: number): ExpressionEvalError {
  return new ExpressionEvalError(`cannot apply '${operator}' to ${describe(a)} and ${describe(b)}`, at)
}

export function add(a: unknown, b: unknown, at: number): unknown {
  if (typeof a === 'number' && typeof b === 'number') return finite(a + b, at)
  if (typeof a === 'string' && typeof b === 'string') return a + b
  if (Array.isArray(a) && Array.isArray(b)) return a.concat(b)
  throw new ExpressionEvalError(`cannot add ${describe(a)} and ${describe(b)}`, at)
}

export function subtract(a: unknown, b: unknown, at: number): number {
  if (typeof a === 'number' && typeof b === 'number') return finite(a - b, at)
  throw mismatch('-', a, b, at)
}

export function multiply(a: unknown, b: unknown, at: number): number {
  if (typeof a === 'number' && typeof b === 'number') return finite(a * b, at)
  throw mismatch('*', a, b, at)
}

export function divide(a: unknown, b: unknown, at: number): number {
  if (typeof a !== 'number' || typeof b !== 'number') throw mismatch('/', a, b, at)
  if (b === 0) throw new ExpressionEvalError('division by zero', at)
  return finite(a / b, at)
}

/** The sign follows the dividend, as in JavaScript: -7 % 3 == -1. */
export function remainder(a: unknown, b: unknown, at: number): number {
  if (typeof a !== 'number' || typeof b !== 'number') throw mismatch('%', a, b, at)
  if (b === 0) throw new ExpressionEvalError('modulo by zero', at)
  return finite(a % b, at)
}

export function negate(a: unknown, at: number): number {
  if (typeof a === 'number') return -a
  throw new ExpressionEvalError(`cannot negate ${describe(a)}`, at)
}

function comparable(a: unknown, b: unknown): boolean {
  const type = typeof a
  return (type === 'number' || type === 'string') && typeof b === type
}

function incomparable(a: unknown, b: unknown, at: number): ExpressionEvalError {
  return new ExpressionEvalError(`cannot compare ${describe(a)} and ${describe(b)}`, at)
}

export function less(a: unknown, b: unknown, at: number): boolean {
  if (comparable(a, b)) return (a as number) < (b as number)
  throw incomparable(a, b, at)
}

export function lessOrEqual(a: unknown, b: unknown, at: number): boolean {
  if (comparable(a, b)) return (a as number) <= (b as number)
  throw incomparable(a, b, at)
}

export function greater(a: unknown, b: unknown, at: number): boolean {
  if (comparable(a, b)) return (a as number) > (b as number)
  throw incomparable(a, b, at)
}

export function greaterOrEqual(a: unknown, b: unknown, at: number): boolean {
  if (comparable(a, b)) return (a as number) >= (b as number)
  throw incomparable(a, b, at)
}

/**
 * `x in list` (deep equality) or `key in map` (own key). A missing container is forgiving
 * (false); a string is not a container here, substrings are `s.contains(x)`.
 */
export function isIn(value: unknown, container: unknown, at: number): boolean {
  if (Array.isArray(container)) return listContains(container, value)
  if (container === null || container === undefined) return false
  if (typeof container === 'object') {
    if (typeof value === 'string') return hasOwn(container, value)
    throw new ExpressionEvalError(`'in' on a map needs a string key, got ${describe(value)}`, at)
  }
  const hint = typeof container === 'string' ? ' (for a substring, use s.contains(x))' : ''
  throw new ExpressionEvalError(`'in' needs a list or a map on its right, got ${describe(container)}${hint}`, at)
}

/**
 * The value model: JSON values (null, boolean, number, string, list, map), plus undefined
 * for missing data. Reads go through own properties only, so nothing inherited (constructor,
 * toString, __proto__, array methods) is ever reachable from an expression.
 */

import { ExpressionEvalError } from './errors.ts'

const hasOwn = Object.hasOwn

export type Kind = 'null' | 'bool' | 'number' | 'string' | 'list' | 'map'

/** Names that an expression may never write as a member: compile error. Read dynamically, they give undefined. */
export const FORBIDDEN_NAMES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

export function kindOf(value: unknown): Kind | undefined {
  if (value === null || value === undefined) return 'null'
  switch (typeof value) {
    case 'boolean':
      return 'bool'
    case 'number':
      return 'number'
    case 'string':
      return 'string'
    case 'object':
      return Array.isArray(value) ? 'list' : 'map'
    default:
      return undefined
  }
}

/** The kind of a value, for error messages; keeps undefined apart so a missing field is visible. */
export function describe(value: unknown): string {
  return value === undefined ? 'undefined' : (kindOf(value) ?? typeof value)
}

export function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Primitive values can be shared between evaluations; lists and maps are built afresh. */
export function isPrimitive(value: unknown): boolean {
  return value === null || (typeof value !== 'object' && typeof value !== 'function')
}

/** Every name a JSON value can inherit (Object.prototype's and Array.prototype's, `length` among them). */
const INHERITED: ReadonlySet<string> = new Set([
  ...Object.getOwnPropertyNames(Object.prototype),
  ...Object.getOwnPropertyNames(Array.prototype),
])

/** True when no JSON value inherits `name`: `ownField` may read it. */
export function isOwnOnlyName(name: string): boolean {
  return !INHERITED.has(name)
}

/**
 * `field` for a name no JSON value inherits (`isOwnOnlyName`): a plain read finds an own
 * property or nothing, so the ownership check is left out (it costs as much as the read).
 */
export function ownField(value: unknown, name: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[name] : undefined
}

/**
 * A statically written field. Lists have no named fields: their only own non-index property
 * is `length`, which is hidden so that `items.length` is undefined like any other missing
 * field (size(items) is the way to count).
 */
export function field(value: unknown, name: string): unknown {
  if (typeof value !== 'object' || value === null || !hasOwn(value, name)) return undefined
  if (name === 'length' && Array.isArray(value)) return undefined
  return (value as Record<string, unknown>)[name]
}

/**
 * Whether `field(value, name)` is defined, or `index(value, key)` for has(a[k]); never throws.
 */
export function hasEntry(value: unknown, key: unknown): boolean {
  if (Array.isArray(value))
    return (
      typeof key === 'number' && Number.isInteger(key) && key >= 0 && key < value.length && value[key] !== undefined
    )
  if (typeof value !== 'object' || value === null || typeof key !== 'string' || FORBIDDEN_NAMES.has(key)) return false
  return hasOwn(value, key) && (value as Record<string, unknown>)[key] !== undefined
}

/** `value[key]`: lists take an integer, maps a string; a missing key or a null key is undefined. */
export function index(value: unknown, key: unknown, at: number): unknown {
  if (Array.isArray(value)) {
    if (typeof key === 'number') {
      if (!Number.isInteger(key)) throw new ExpressionEvalError(`a list index must be an integer, got ${key}`, at)
      return key >= 0 && key < value.length ? value[key] : undefined
    }
    if (key === null || key === undefined) return undefined
    throw new ExpressionEvalError(`a list index must be an integer, got ${describe(key)}`, at)
  }
  if (typeof value !== 'object' || value === null) return undefined
  if (typeof key === 'string') {
    return FORBIDDEN_NAMES.has(key) || !hasOwn(value, key) ? undefined : (value as Record<string, unknown>)[key]
  }
  if (key === null || key === undefined) return undefined
  throw new ExpressionEvalError(`a map key must be a string, got ${describe(key)}`, at)
}

/** JSON value equality: lists and maps by content, null equals undefined, a map entry holding undefined counts as absent. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (a === null || a === undefined || b === null || b === undefined)
    return (a === null || a === undefined) && (b === null || b === undefined)
  if (typeof a !== 'object' || typeof b !== 'object') return false
  const list = Array.isArray(a)
  if (list !== Array.isArray(b)) return false
  if (list) {
    const other = b as unknown[]
    if (a.length !== other.length) return false
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], other[i])) return false
    return true
  }
  const left = a as Record<string, unknown>
  const right = b as Record<string, unknown>
  let count = 0
  for (const key of Object.keys(left)) {
    const value = left[key]
    if (value === undefined) continue
    count++
    if (!hasOwn(right, key) || !deepEqual(value, right[key])) return false
  }
  for (const key of Object.keys(right)) if (right[key] !== undefined) count--
  return count === 0
}

export function listContains(list: readonly unknown[], value: unknown): boolean {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return list.includes(value)
  for (const item of list) if (deepEqual(item, value)) return true
  return false
}

/** How a value is written into a template string or joined: null and undefined become "". */
export function toText(value: unknown): string {
  if (typeof value === 'string') return value
  if (value === null || value === undefined) return ''
  if (typeof value === 'object') return JSON.stringify(value)
  return String(value)
}

/** Sets an entry so that even the key "__proto__" becomes an own data property, never the prototype. */
export function setEntry(map: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__')
    Object.defineProperty(map, key, { value, writable: true, enumerable: true, configurable: true })
  else map[key] = value
}

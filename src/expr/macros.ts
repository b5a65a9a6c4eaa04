/**
 * CEL-style list macros: `list.map(x, expr)`, `list.map(x, pred, expr)`, `filter`, `exists`,
 * `all`, `find`, `sortBy`. The variable lives in `slots[slot]`, a slot the compiler gave to
 * this macro alone, so nested macros never clobber each other and no lookup by name happens
 * per element. On null or undefined a macro gives undefined (forgiving, like member access);
 * on anything else that is not a list it throws.
 */
import type { Fn } from './code.ts'
import { ExpressionEvalError } from './errors.ts'
import { describe } from './values.ts'

export type MacroName = 'map' | 'filter' | 'exists' | 'all' | 'find' | 'sortBy'

/** Argument counts, the variable included. */
export const MACROS: ReadonlyMap<string, { readonly minArgs: number; readonly maxArgs: number }> = new Map([
  ['map', { minArgs: 2, maxArgs: 3 }],
  ['filter', { minArgs: 2, maxArgs: 2 }],
  ['exists', { minArgs: 2, maxArgs: 2 }],
  ['all', { minArgs: 2, maxArgs: 2 }],
  ['find', { minArgs: 2, maxArgs: 2 }],
  ['sortBy', { minArgs: 2, maxArgs: 2 }],
])

function listOf(name: string, value: unknown, at: number): unknown[] | undefined {
  if (Array.isArray(value)) return value
  if (value === null || value === undefined) return undefined
  throw new ExpressionEvalError(`${name}() needs a list, got ${describe(value)}`, at)
}

/** `bodies` are the compiled arguments after the variable: one, or two for map(x, pred, expr). */
export function macroFn(name: MacroName, list: Fn, slot: number, bodies: readonly Fn[], at: number): Fn {
  const body = bodies[0] as Fn
  const search =
    (want: boolean, found: (item: unknown) => unknown, none: unknown): Fn =>
    (ctx, slots) => {
      const items = listOf(name, list(ctx, slots), at)
      if (items === undefined) return undefined
      for (const item of items) {
        slots[slot] = item
        if (Boolean(body(ctx, slots)) === want) return found(item)
      }
      return none
    }
  switch (name) {
    case 'map':
      if (bodies.length === 2) {
        const project = bodies[1] as Fn
        return (ctx, slots) => {
          const items = listOf(name, list(ctx, slots), at)
          if (items === undefined) return undefined
          const out: unknown[] = []
          for (const item of items) {
            slots[slot] = item
            if (body(ctx, slots)) out.push(project(ctx, slots))
          }
          return out
        }
      }
      return (ctx, slots) => {
        const items = listOf(name, list(ctx, slots), at)
        if (items === undefined) return undefined
        const out: unknown[] = []
        for (const item of items) {
          slots[slot] = item
          out.push(body(ctx, slots))
        }
        return out
      }
    case 'filter':
      return (ctx, slots) => {
        const items = listOf(name, list(ctx, slots), at)
        if (items === undefined) return undefined
        const out: unknown[] = []
        for (const item of items) {
          slots[slot] = item
          if (body(ctx, slots)) out.push(item)
        }
        return out
      }
    // exists, all and find all stop at the first element whose condition is `want`.
    case 'exists':
      return search(true, () => true, false)
    case 'all':
      return search(false, () => false, true)
    case 'find':
      return search(true, (item) => item, null)
    case 'sortBy':
      return (ctx, slots) => {
        const items = listOf(name, list(ctx, slots), at)
        if (items === undefined) return undefined
        const keys: unknown[] = []
        for (const item of items) {
          slots[slot] = item
          keys.push(body(ctx, slots))
        }
        const type = typeof keys[0]
        for (const key of keys) {
          if (type !== 'number' && type !== 'string')
            throw new ExpressionEvalError(`sortBy() keys must be numbers or strings, got ${describe(key)}`, at)
          if (typeof key !== type)
            throw new ExpressionEvalError(
              `sortBy() keys must be all numbers or all strings, got ${type} and ${describe(key)}`,
              at,
            )
        }
        // Array.prototype.sort is stable, so equal keys keep their order.
        const order = items.map((_, i) => i)
        order.sort((i, j) => {
          const a = keys[i] as number
          const b = keys[j] as number
          return a < b ? -1 : a > b ? 1 : 0
        })
        return order.map((i) => items[i])
      }
  }
}

/**
 * Closures for static member chains such as `request.body.cartId`. Chains of one to three
 * names, by far the most common, get a closure each with the reads written out; longer
 * chains loop.
 */
import type { Fn } from './code.ts'
import { field, isOwnOnlyName, ownField } from './values.ts'

/** The reader for a chain: the cheaper one when none of its names is one a JSON value could inherit. */
function readerOf(names: readonly string[]): typeof field {
  return names.every(isOwnOnlyName) ? ownField : field
}

/** `base.a.b…`, where base is a root accessor or any compiled expression. */
export function pathFn(base: Fn, names: readonly string[]): Fn {
  const [a, b, c] = names as [string, string, string]
  const read = readerOf(names)
  switch (names.length) {
    case 0:
      return base
    case 1:
      return (ctx, slots) => read(base(ctx, slots), a)
    case 2:
      return (ctx, slots) => read(read(base(ctx, slots), a), b)
    case 3:
      return (ctx, slots) => read(read(read(base(ctx, slots), a), b), c)
    default:
      return (ctx, slots) => {
        let value = base(ctx, slots)
        for (let i = 0; i < names.length; i++) value = read(value, names[i] as string)
        return value
      }
  }
}

/** `x.a.b…` where x is a macro variable held in `slots[slot]`. */
export function slotPathFn(slot: number, names: readonly string[]): Fn {
  const [a, b, c] = names as [string, string, string]
  const read = readerOf(names)
  switch (names.length) {
    case 0:
      return (_ctx, slots) => slots[slot]
    case 1:
      return (_ctx, slots) => read(slots[slot], a)
    case 2:
      return (_ctx, slots) => read(read(slots[slot], a), b)
    case 3:
      return (_ctx, slots) => read(read(read(slots[slot], a), b), c)
    default:
      return pathFn((_ctx, slots) => slots[slot], names)
  }
}

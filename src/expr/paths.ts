/**
 * Closures for static member chains such as `request.body.cartId`. Chains of one to three
 * names, by far the most common, get a closure each with the reads written out; longer
 * chains loop.
 */
import type { Fn } from './code.ts'
import { field } from './values.ts'

/** `base.a.b…`, where base is a root accessor or any compiled expression. */
export function pathFn(base: Fn, names: readonly string[]): Fn {
  const [a, b, c] = names as [string, string, string]
  switch (names.length) {
    case 0:
      return base
    case 1:
      return (ctx, slots) => field(base(ctx, slots), a)
    case 2:
      return (ctx, slots) => field(field(base(ctx, slots), a), b)
    case 3:
      return (ctx, slots) => field(field(field(base(ctx, slots), a), b), c)
    default:
      return (ctx, slots) => {
        let value = base(ctx, slots)
        for (let i = 0; i < names.length; i++) value = field(value, names[i] as string)
        return value
      }
  }
}

/** `x.a.b…` where x is a macro variable held in `slots[slot]`. */
export function slotPathFn(slot: number, names: readonly string[]): Fn {
  const [a, b, c] = names as [string, string, string]
  switch (names.length) {
    case 0:
      return (_ctx, slots) => slots[slot]
    case 1:
      return (_ctx, slots) => field(slots[slot], a)
    case 2:
      return (_ctx, slots) => field(field(slots[slot], a), b)
    case 3:
      return (_ctx, slots) => field(field(field(slots[slot], a), b), c)
    default:
      return pathFn((_ctx, slots) => slots[slot], names)
  }
}

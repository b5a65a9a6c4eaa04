import type { EvalContext, Reference } from './types.ts'

/**
 * A compiled node. Inside an expression, closures also receive the slots holding macro
 * variables; an expression without macros never reads them, so its closure is handed out
 * as the Evaluator as is.
 */
export type Fn = (ctx: EvalContext, slots: unknown[]) => unknown

export interface Code {
  readonly fn: Fn
  /** Reads a root: depends on the request, so it cannot run at compile time. */
  readonly usesRoot: boolean
  /** Lowest macro-variable slot read and not bound inside this node; Infinity when none. */
  readonly freeSlot: number
  /** Present when the node folded to a primitive at compile time. */
  readonly constant?: { readonly value: unknown }
  /** Present while the node is a chain of static fields on a root or a macro variable. */
  readonly chain?: Chain
  /** The reference this node extends, while it is a static chain on a root. */
  readonly reference?: Reference
}

export interface Chain {
  /** The root accessor or the expression the names apply to; unused when slot >= 0. */
  readonly base: Fn
  /** The macro variable's slot, or -1. */
  readonly slot: number
  readonly names: readonly string[]
}

/** Depends on nothing known only at run time, so it can be evaluated at compile time. */
export function isPure(code: Code): boolean {
  return !code.usesRoot && code.freeSlot === Infinity
}

export function constantCode(value: unknown): Code {
  return { fn: () => value, usesRoot: false, freeSlot: Infinity, constant: { value } }
}

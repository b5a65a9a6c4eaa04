/** Helpers for the expression tests: compile against a plain data object whose keys are the roots. */
import { compileExpression } from './compiler.ts'
import type { CompileOptions, EvalContext } from './types.ts'

export function rootsOf(data: Record<string, unknown>): CompileOptions {
  const names = Object.keys(data)
  return {
    resolveRoot: (name) =>
      Object.hasOwn(data, name) ? (ctx: EvalContext) => (ctx as Record<string, unknown>)[name] : undefined,
    knownRoots: names,
  }
}

/** Compiles `source` with the keys of `data` as roots and evaluates it on `data`. */
export function evaluate(source: string, data: Record<string, unknown> = {}): unknown {
  return compileExpression(source, rootsOf(data)).evaluate(data)
}

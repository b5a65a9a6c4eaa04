/**
 * Compiles config values (bodies, responses, fallbacks, query and header values) into
 * evaluators. Strings go through the expression compiler; objects and lists become builders
 * that make fresh containers per evaluation; fully constant subtrees are built once.
 */
import {
  compileExpression,
  compileTemplate,
  type CompileOptions,
  type Evaluator,
  ExpressionSyntaxError,
  type Reference,
} from '../expr/index.ts'
import type { ConfigPath } from '../config/source.ts'
import type { Diagnostics } from './diagnostics.ts'

export interface TemplateScope extends CompileOptions {
  /** Sees every reference of every expression compiled in this scope (to derive dependencies and check names). */
  onReference(ref: Reference, path: ConfigPath, source: string): void
}

const constant =
  (value: unknown): Evaluator =>
  () =>
    value

/** A JSON value whose strings may contain ${…}. Returns null (and records diagnostics) when it does not compile. */
export function compileValue(
  value: unknown,
  path: ConfigPath,
  scope: TemplateScope,
  diagnostics: Diagnostics,
): { evaluate: Evaluator; isConstant: boolean } {
  if (typeof value === 'string') {
    const compiled = compileString(value, path, scope, diagnostics, undefined)
    if (compiled === null) return { evaluate: constant(null), isConstant: true }
    if (compiled.isConstant) {
      const v = compiled.evaluate({})
      return { evaluate: constant(v ?? null), isConstant: true }
    }
    const evaluate = compiled.evaluate
    return { evaluate: (ctx) => evaluate(ctx) ?? null, isConstant: false }
  }
  if (Array.isArray(value)) {
    const items = value.map((item, i) => compileValue(item, [...path, i], scope, diagnostics))
    if (items.every((i) => i.isConstant)) return { evaluate: constant(value), isConstant: true }
    const evaluators = items.map((i) => i.evaluate)
    return {
      evaluate: (ctx) => {
        const out = new Array<unknown>(evaluators.length)
        for (let i = 0; i < evaluators.length; i++) out[i] = (evaluators[i] as Evaluator)(ctx)
        return out
      },
      isConstant: false,
    }
  }
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value)
    const fields = keys.map((k) =>
      compileValue((value as Record<string, unknown>)[k], [...path, k], scope, diagnostics),
    )
    if (fields.every((f) => f.isConstant)) return { evaluate: constant(value), isConstant: true }
    const evaluators = fields.map((f) => f.evaluate)
    // A key "__proto__" written in a config must stay a plain key, never a prototype assignment.
    if (keys.includes('__proto__')) {
      return {
        evaluate: (ctx) => {
          const out: Record<string, unknown> = {}
          for (let i = 0; i < keys.length; i++) {
            Object.defineProperty(out, keys[i] as string, {
              value: (evaluators[i] as Evaluator)(ctx),
              enumerable: true,
              writable: true,
              configurable: true,
            })
          }
          return out
        },
        isConstant: false,
      }
    }
    return {
      evaluate: (ctx) => {
        const out: Record<string, unknown> = {}
        for (let i = 0; i < keys.length; i++) out[keys[i] as string] = (evaluators[i] as Evaluator)(ctx)
        return out
      },
      isConstant: false,
    }
  }
  return { evaluate: constant(value ?? null), isConstant: true }
}

/** A string with ${…} parts; `encode` applies to interpolated values (URL paths). */
export function compileString(
  source: string,
  path: ConfigPath,
  scope: TemplateScope,
  diagnostics: Diagnostics,
  encode: ((v: string) => string) | undefined,
): { evaluate: Evaluator; isConstant: boolean } | null {
  try {
    const compiled = compileTemplate(source, encode === undefined ? scope : { ...scope, encode })
    for (const ref of compiled.references) scope.onReference(ref, path, source)
    return compiled
  } catch (err) {
    report(err, source, path, diagnostics)
    return null
  }
}

/** A condition: `${…}`, a bare expression, or a boolean. */
export function compileCondition(
  value: string | boolean,
  path: ConfigPath,
  scope: TemplateScope,
  diagnostics: Diagnostics,
): Evaluator | null {
  if (typeof value === 'boolean') return constant(value)
  const trimmed = value.trim()
  const bare = trimmed.startsWith('${') && trimmed.endsWith('}') ? null : trimmed
  if (bare === null) return compileString(value, path, scope, diagnostics, undefined)?.evaluate ?? null
  try {
    const compiled = compileExpression(bare, scope)
    for (const ref of compiled.references) scope.onReference(ref, path, value)
    return compiled.evaluate
  } catch (err) {
    report(err, value, path, diagnostics)
    return null
  }
}

function report(err: unknown, source: string, path: ConfigPath, diagnostics: Diagnostics): void {
  if (err instanceof ExpressionSyntaxError) {
    diagnostics.error('BATON_EXPRESSION', `${err.message} in '${source}'`, path, { offset: err.offset, hint: err.hint })
    return
  }
  throw err
}

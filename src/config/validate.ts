/** Schema validation: zod issues turned into diagnostics with positions, hints and "did you mean". */
import type { z } from 'zod'
import type { Diagnostic } from '../errors.ts'
import { didYouMean } from '../util/suggest.ts'
import { type Config, configSchema } from './schema.ts'
import type { ConfigSource } from './source.ts'

/**
 * Returns the diagnostics and, whenever it can, a config: when the file has schema errors,
 * the offending keys are dropped (defaults apply) so that the compiler can still report the
 * semantic errors in the rest of the file. `valid` tells whether the file itself passed.
 */
export function validate(
  source: ConfigSource,
  raw: unknown,
): { config?: Config; valid: boolean; diagnostics: Diagnostic[] } {
  let result = configSchema.safeParse(raw, { reportInput: true })
  if (result.success) return { config: result.data, valid: true, diagnostics: [] }
  const diagnostics = result.error.issues.flatMap((issue) => toDiagnostics(source, issue))
  diagnostics.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0))
  const copy = structuredClone(raw)
  for (let attempt = 0; attempt < 5 && !result.success; attempt++) {
    for (const issue of result.error.issues) drop(copy, issue)
    result = configSchema.safeParse(copy)
  }
  return result.success ? { config: result.data, valid: false, diagnostics } : { valid: false, diagnostics }
}

/** Removes what an issue complains about: unknown keys, or the invalid value (its whole entry when a required key is missing). */
function drop(root: unknown, issue: z.core.$ZodIssue): void {
  const path = issue.path.map(String)
  const missing = issue.code === 'invalid_type' && issue.input === undefined
  const target = issue.code === 'unrecognized_keys' ? path : missing ? path.slice(0, -2) : path.slice(0, -1)
  const key = missing ? path.at(-2) : path.at(-1)
  if (target.length === 0 && issue.code !== 'unrecognized_keys') return
  let node = root as Record<string, unknown> | undefined
  for (const segment of target) node = node?.[segment] as Record<string, unknown> | undefined
  if (node === undefined || node === null || typeof node !== 'object') return
  if (issue.code === 'unrecognized_keys') {
    for (const k of issue.keys) Reflect.deleteProperty(node, k)
  } else if (key !== undefined) {
    Reflect.deleteProperty(node, key)
  }
}

function toDiagnostics(source: ConfigSource, issue: z.core.$ZodIssue): Diagnostic[] {
  const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = keysAt(path)
      return issue.keys.map((key) => {
        const hint = didYouMean(key, known)
        return source.diagnostic(
          {
            severity: 'error',
            code: 'BATON_UNKNOWN_KEY',
            message: `unknown key '${key}'`,
            path: [...path, key],
            ...(hint === undefined ? {} : { hint }),
          },
          { key: true },
        )
      })
    }
    case 'invalid_key':
      return [
        source.diagnostic(
          {
            severity: 'error',
            code: 'BATON_INVALID_NAME',
            message: `invalid name '${String(path.at(-1))}'`,
            path,
            hint: issue.issues[0]?.message ?? issue.message,
          },
          { key: true },
        ),
      ]
    case 'invalid_type': {
      const missing = issue.input === undefined
      const last = path.at(-1)
      const hint = descriptionAt(path)
      return [
        source.diagnostic({
          severity: 'error',
          code: missing ? 'BATON_MISSING_KEY' : 'BATON_INVALID_VALUE',
          message: missing
            ? `missing required key '${String(last)}'`
            : `expected ${issue.expected}, got ${describe(issue.input)}`,
          path,
          ...(hint === undefined ? {} : { hint }),
        }),
      ]
    }
    default:
      return [
        source.diagnostic({
          severity: 'error',
          code: 'BATON_INVALID_VALUE',
          message: `invalid value ${describe(issue.input)}`,
          path,
          // A value that fits none of a union's forms and has no message of its own: zod says only
          // "Invalid input"; the key's own description says what fits.
          hint:
            (issue.code === 'invalid_union' && issue.message === 'Invalid input' ? descriptionAt(path) : undefined) ??
            issue.message,
        }),
      ]
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'an object'
  return JSON.stringify(value)
}

/** The keys the schema allows at `path`, for "did you mean". */
function keysAt(path: readonly PropertyKey[]): string[] {
  const schema = schemaAt(path)
  if (schema === undefined) return []
  const def = (unwrap(schema) as { _zod: { def: Record<string, unknown> } })._zod.def
  return def.type === 'object' ? Object.keys(def.shape as object) : []
}

/** The schema's description of the key at `path` (the JSON Schema's too), if it has one. */
function descriptionAt(path: readonly PropertyKey[]): string | undefined {
  for (let s = schemaAt(path) as { description?: string } | undefined; s !== undefined;) {
    if (s.description !== undefined) return s.description
    const inner = unwrap(s) as typeof s
    if (inner === s) return undefined
    s = inner
  }
  return undefined
}

/** The schema of the key at `path` as declared (with its default, optional and description), or undefined. */
function schemaAt(path: readonly PropertyKey[]): unknown {
  let schema: unknown = configSchema
  for (const segment of path) {
    const def = (unwrap(schema) as { _zod: { def: Record<string, unknown> } })._zod.def
    if (def.type === 'object') schema = (def.shape as Record<string, unknown>)[String(segment)]
    else if (def.type === 'record') schema = def.valueType
    else if (def.type === 'array') schema = def.element
    else return undefined
    if (schema === undefined) return undefined
  }
  return schema
}

function unwrap(schema: unknown): unknown {
  let s = schema as { _zod: { def: Record<string, unknown> } }
  for (;;) {
    const def = s._zod.def
    if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable') s = def.innerType as typeof s
    else if (def.type === 'pipe') s = def.in as typeof s
    else return s
  }
}

/** Schema validation: zod issues turned into diagnostics with positions, hints and "did you mean". */
import type { z } from 'zod'
import type { Diagnostic } from '../errors.ts'
import { didYouMean } from '../util/suggest.ts'
import { type Config, configSchema } from './schema.ts'
import type { ConfigSource } from './source.ts'

export function validate (source: ConfigSource, raw: unknown): { config?: Config; diagnostics: Diagnostic[] } {
  const result = configSchema.safeParse(raw, { reportInput: true })
  if (result.success) return { config: result.data, diagnostics: [] }
  const diagnostics = result.error.issues.flatMap((issue) => toDiagnostics(source, issue))
  diagnostics.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0))
  return { diagnostics }
}

function toDiagnostics (source: ConfigSource, issue: z.core.$ZodIssue): Diagnostic[] {
  const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = keysAt(path)
      return issue.keys.map((key) => {
        const hint = didYouMean(key, known)
        return source.diagnostic({
          severity: 'error',
          code: 'BATON_UNKNOWN_KEY',
          message: `unknown key '${key}'`,
          path: [...path, key],
          ...(hint === undefined ? {} : { hint }),
        }, { key: true })
      })
    }
    case 'invalid_key':
      return [source.diagnostic({
        severity: 'error',
        code: 'BATON_INVALID_NAME',
        message: `invalid name '${String(path.at(-1))}'`,
        path,
        hint: issue.issues[0]?.message ?? issue.message,
      }, { key: true })]
    case 'invalid_type': {
      const missing = issue.input === undefined
      const last = path.at(-1)
      return [source.diagnostic({
        severity: 'error',
        code: missing ? 'BATON_MISSING_KEY' : 'BATON_INVALID_VALUE',
        message: missing ? `missing required key '${String(last)}'` : `expected ${issue.expected}, got ${describe(issue.input)}`,
        path,
      }, missing ? {} : {})]
    }
    default:
      return [source.diagnostic({
        severity: 'error',
        code: 'BATON_INVALID_VALUE',
        message: `invalid value ${describe(issue.input)}`,
        path,
        hint: issue.message,
      })]
  }
}

function describe (value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'an object'
  return JSON.stringify(value)
}

/** The keys the schema allows at `path`, for "did you mean". */
function keysAt (path: readonly PropertyKey[]): string[] {
  let schema: unknown = configSchema
  for (const segment of path) {
    schema = unwrap(schema)
    const def = (schema as { _zod: { def: Record<string, unknown> } })._zod.def
    if (def.type === 'object') schema = (def.shape as Record<string, unknown>)[String(segment)]
    else if (def.type === 'record') schema = def.valueType
    else return []
    if (schema === undefined) return []
  }
  const def = (unwrap(schema) as { _zod: { def: Record<string, unknown> } })._zod.def
  return def.type === 'object' ? Object.keys(def.shape as object) : []
}

function unwrap (schema: unknown): unknown {
  let s = schema as { _zod: { def: Record<string, unknown> } }
  for (;;) {
    const def = s._zod.def
    if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable') s = def.innerType as typeof s
    else if (def.type === 'pipe') s = def.in as typeof s
    else return s
  }
}

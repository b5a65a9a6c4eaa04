/**
 * Request validation, declared per endpoint (`validate: { params, query, headers, body }`): each
 * part's JSON Schema (draft 2020-12) is compiled once, when the config loads, with ajv in strict
 * mode, so that a typo such as `minLenght` is a config error at its place instead of a check that
 * silently checks nothing. The result is transport-neutral: the server hands in the request's
 * parts and gets back the problems (or null), before any call is made.
 */
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'
import type { ValidationIssue } from '../errors.ts'
import type { ConfigPath } from '../config/source.ts'
import { didYouMean } from '../util/suggest.ts'
import type { Diagnostics } from './diagnostics.ts'

export const REQUEST_PARTS = ['params', 'query', 'headers', 'body'] as const
export type RequestPart = (typeof REQUEST_PARTS)[number]

/** What a request brings, as the validator sees it. It may replace params and query with their coerced copies. */
export interface RequestParts {
  params: Readonly<Record<string, unknown>>
  query: Readonly<Record<string, unknown>>
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: unknown
}

/** The problems of a request that does not match its endpoint's schemas, or null when it does. */
export type RequestValidator = (parts: RequestParts) => ValidationIssue[] | null

/** The most problems one answer lists (a huge invalid body must not make a huge answer). */
export const MAX_ISSUES = 20

/**
 * The two ajv instances of one config: params, query and headers arrive as strings and are
 * coerced to the types their schema declares; a JSON body is not (a string where a number is
 * expected is the client's mistake). Made on first use: a config without `validate` pays nothing.
 */
export class SchemaCompiler {
  #coercing: Ajv2020 | undefined
  #plain: Ajv2020 | undefined

  for(part: RequestPart): Ajv2020 {
    if (part === 'body') return (this.#plain ??= newAjv(false))
    return (this.#coercing ??= newAjv(true))
  }
}

function newAjv(coerce: boolean): Ajv2020 {
  const ajv = new Ajv2020({
    allErrors: true,
    // Strict about the schema itself (unknown keywords and formats, ignored keywords, numbers),
    // not about style: a keyword without its `type`, a tuple without bounds, or a required
    // property not listed under properties are valid JSON Schema and stay so.
    strict: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    allowUnionTypes: true,
    logger: false,
    ...(coerce ? { coerceTypes: 'array' as const } : {}),
  })
  addFormatsModule.default(ajv)
  return ajv
}

interface PartCheck {
  readonly part: RequestPart
  readonly check: ValidateFunction
  /** params, query and headers: validated (and coerced) on a copy. */
  readonly coerce: boolean
}

interface ValidationContext {
  /** Path of the endpoint in the config: ['endpoints', key]. */
  readonly at: ConfigPath
  /** The route's parameter names. */
  readonly params: readonly string[]
  readonly compiler: SchemaCompiler
  readonly diagnostics: Diagnostics
}

export function compileValidation(
  validate: { readonly [part in RequestPart]?: Record<string, unknown> | undefined } | undefined,
  ctx: ValidationContext,
): RequestValidator | null {
  if (validate === undefined) return null
  const checks: PartCheck[] = []
  for (const part of REQUEST_PARTS) {
    const schema = validate[part]
    if (schema === undefined) continue
    const at = [...ctx.at, 'validate', part]
    checkNames(part, schema, at, ctx)
    const check = compileSchema(schema, at, ctx.compiler.for(part), ctx.diagnostics)
    if (check !== null) checks.push({ part, check, coerce: part !== 'body' })
  }
  if (checks.length === 0) return null
  return (parts) => {
    let issues: ValidationIssue[] | null = null
    for (const { part, check, coerce } of checks) {
      const data = coerce ? copyOf(parts[part] as Readonly<Record<string, unknown>>) : parts[part]
      if (check(data)) {
        // Expressions read the coerced params and query (`?limit=10` declared integer: 10); headers are forwarded as sent.
        if (part === 'params' || part === 'query') parts[part] = data as Record<string, unknown>
        continue
      }
      issues ??= []
      for (const error of check.errors ?? []) {
        if (issues.length === MAX_ISSUES) return issues
        issues.push({ in: part, path: issuePath(error), message: error.message ?? 'is not valid' })
      }
    }
    return issues
  }
}

/** A one-level copy (lists copied too, since coercion changes them in place); the request's own objects stay as they came. */
function copyOf(from: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const to = Object.create(null) as Record<string, unknown>
  for (const key of Object.keys(from)) {
    const value = from[key]
    to[key] = Array.isArray(value) ? [...(value as unknown[])] : value
  }
  return to
}

const escapePointer = (segment: string): string => segment.replaceAll('~', '~0').replaceAll('/', '~1')

/** Where the problem is, as a JSON Pointer into the part: a missing or extra property is pointed at by its name. */
function issuePath(error: ErrorObject): string {
  const params = error.params as Record<string, unknown>
  const name =
    error.keyword === 'required' || error.keyword === 'dependentRequired' || error.keyword === 'dependencies'
      ? params.missingProperty
      : error.keyword === 'additionalProperties'
        ? params.additionalProperty
        : error.keyword === 'unevaluatedProperties'
          ? params.unevaluatedProperty
          : error.keyword === 'propertyNames'
            ? params.propertyName
            : undefined
  return typeof name === 'string' ? `${error.instancePath}/${escapePointer(name)}` : error.instancePath
}

/** params may only name the route's parameters; headers arrive with lower-case names. */
function checkNames(part: RequestPart, schema: Record<string, unknown>, at: ConfigPath, ctx: ValidationContext): void {
  if (part !== 'params' && part !== 'headers') return
  const properties = schema.properties
  const names: [string, ConfigPath][] = []
  if (properties !== null && typeof properties === 'object' && !Array.isArray(properties))
    for (const name of Object.keys(properties)) names.push([name, [...at, 'properties', name]])
  if (Array.isArray(schema.required))
    for (const [i, name] of schema.required.entries())
      if (typeof name === 'string') names.push([name, [...at, 'required', i]])
  const seen = new Set<string>()
  for (const [name, path] of names) {
    if (seen.has(name)) continue
    seen.add(name)
    if (part === 'params' && !ctx.params.includes(name)) {
      const [method, route] = String(ctx.at[1]).split(' ') as [string, string]
      ctx.diagnostics.error(
        'BATON_UNKNOWN_PARAM',
        `path parameter '${name}' is not declared in '${method} ${route}'`,
        path,
        {
          key: path.at(-2) === 'properties',
          hint:
            ctx.params.length > 0
              ? (didYouMean(name, ctx.params) ?? `declared: ${ctx.params.join(', ')}`)
              : `declare it in the path, e.g. '${method} ${route}/{${name}}'`,
        },
      )
    } else if (part === 'headers' && name !== name.toLowerCase()) {
      ctx.diagnostics.error('BATON_HEADER_CASE', `request header names are lower case: '${name}'`, path, {
        key: path.at(-2) === 'properties',
        hint: `write '${name.toLowerCase()}'`,
      })
    }
  }
}

const DRAFT = 'https://json-schema.org/draft/2020-12/schema'
const SCHEMA_HINT = 'validate.<part> is a JSON Schema (draft 2020-12)'

/** Compiles one part's schema; every problem becomes a BATON_INVALID_SCHEMA at the offending key. */
function compileSchema(
  schema: Record<string, unknown>,
  at: ConfigPath,
  ajv: Ajv2020,
  diagnostics: Diagnostics,
): ValidateFunction | null {
  const report = (message: string, where: ConfigPath, hint: string): null => {
    diagnostics.error('BATON_INVALID_SCHEMA', message, [...at, ...where], { key: where.length > 0, hint })
    return null
  }
  try {
    if (!(ajv.validateSchema(schema) as boolean)) return reportMeta(schema, ajv.errors ?? [], report)
    return ajv.compile(schema)
  } catch (err) {
    return reportCompile(schema, err as Error, ajv, report)
  } finally {
    // Each schema stands alone: its $id is not left behind for the next endpoint's to collide with.
    ajv.removeSchema(schema)
  }
}

type Report = (message: string, where: ConfigPath, hint: string) => null

/** A schema that does not match the 2020-12 meta-schema: one diagnostic per offending key. */
function reportMeta(schema: Record<string, unknown>, errors: readonly ErrorObject[], report: Report): null {
  const byPath = new Map<string, ErrorObject>()
  for (const error of errors) {
    const known = byPath.get(error.instancePath)
    // The enum alternative (with its allowed values) says the most; "must match a schema in anyOf" the least.
    if (known === undefined || (error.keyword === 'enum' && known.keyword !== 'enum'))
      byPath.set(error.instancePath, error)
  }
  for (const [pointer, error] of byPath) {
    const where = schemaPath(schema, pointer)
    const keyword = String(where.at(-1) ?? 'the schema')
    const allowed = (error.params as { allowedValues?: unknown[] }).allowedValues
    const value = valueAt(schema, where)
    report(
      `invalid JSON Schema: ${keyword} ${error.message ?? 'is not valid'}`,
      where,
      allowed !== undefined
        ? `expected one of: ${allowed.map(String).join(', ')}`
        : keyword === 'items' && Array.isArray(value)
          ? 'in draft 2020-12 a tuple is written prefixItems: [...]; items is the schema of the items after them'
          : SCHEMA_HINT,
    )
  }
  return null
}

/** What ajv refuses when compiling: an unknown keyword or format, a $ref it cannot resolve, a pattern that does not parse. */
function reportCompile(schema: Record<string, unknown>, err: Error, ajv: Ajv2020, report: Report): null {
  const message = err.message
  const keyword = /unknown keyword: "([^"]+)"/.exec(message)?.[1]
  if (keyword !== undefined) {
    const where = findKeyword(schema, (k) => k === keyword) ?? []
    const close = didYouMean(keyword, Object.keys(ajv.RULES.keywords))
    return report(
      `unknown JSON Schema keyword '${keyword}'`,
      where,
      close?.startsWith('did you mean') === true
        ? close
        : `JSON Schema (draft 2020-12) has no keyword '${keyword}'; strict mode refuses it, as a misspelt keyword would check nothing`,
    )
  }
  const format = /unknown format "([^"]+)" ignored in schema at path "#([^"]*)"/.exec(message)
  if (format !== null) {
    const where = [...schemaPath(schema, format[2] as string), 'format']
    const formats = Object.keys(ajv.formats)
    const close = didYouMean(format[1] as string, formats)
    return report(
      `unknown format '${format[1]}'`,
      where,
      close?.startsWith('did you mean') === true ? close : `formats: ${formats.join(', ')}`,
    )
  }
  const ref = /can't resolve reference (\S+) from id/.exec(message)?.[1]
  if (ref !== undefined) {
    const where = findKeyword(schema, (k, v) => k === '$ref' && v === ref) ?? findKeyword(schema, (k) => k === '$ref')
    return report(
      `$ref '${ref}' points to nothing`,
      where ?? [],
      'a $ref points inside the same schema, e.g. #/$defs/name (declared under $defs); other files and URLs are not loaded',
    )
  }
  if (/no schema with key or ref/.test(message) && typeof schema.$schema === 'string' && schema.$schema !== DRAFT) {
    return report(
      `unsupported $schema '${schema.$schema}'`,
      ['$schema'],
      `Baton validates with JSON Schema draft 2020-12: remove $schema, or write ${DRAFT}`,
    )
  }
  if (err instanceof SyntaxError) {
    const pattern = findKeyword(schema, (k, v) => k === 'pattern' && typeof v === 'string' && !parses(v))
    const key = (v: unknown): string | undefined =>
      v !== null && typeof v === 'object' ? Object.keys(v).find((p) => !parses(p)) : undefined
    const keyed = findKeyword(schema, (k, v) => k === 'patternProperties' && key(v) !== undefined)
    const where = pattern ?? (keyed === null ? null : [...keyed, key(valueAt(schema, keyed)) as string])
    return report(
      `invalid pattern: ${message}`,
      where ?? [],
      'a pattern is a JavaScript regular expression (with the u flag), e.g. ^[a-z0-9-]+$',
    )
  }
  const place = /at path "#([^"]*)"/.exec(message)?.[1]
  return report(`invalid JSON Schema: ${message}`, place === undefined ? [] : schemaPath(schema, place), SCHEMA_HINT)
}

function parses(pattern: string): boolean {
  try {
    new RegExp(pattern, 'u')
    return true
  } catch {
    return false
  }
}

/** Keywords whose value is a map of name → schema, a list of schemas, or one schema: where a walk finds more keywords. */
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas'])
const SCHEMA_LISTS = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems'])
const SCHEMA_VALUES = new Set([
  'items',
  'additionalItems',
  'additionalProperties',
  'unevaluatedItems',
  'unevaluatedProperties',
  'not',
  'if',
  'then',
  'else',
  'contains',
  'propertyNames',
  'contentSchema',
])

type Visit = (keyword: string, value: unknown) => boolean

/** The path to the first keyword (in a schema position, not in data such as enum or a property name) that `visit` picks. */
function findKeyword(node: unknown, visit: Visit, path: (string | number)[] = []): (string | number)[] | null {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) return null
  const schema = node as Record<string, unknown>
  for (const [keyword, value] of Object.entries(schema)) {
    if (visit(keyword, value)) return [...path, keyword]
    let found: (string | number)[] | null = null
    if (SCHEMA_MAPS.has(keyword) && value !== null && typeof value === 'object') {
      for (const [name, sub] of Object.entries(value)) {
        found = findKeyword(sub, visit, [...path, keyword, name])
        if (found !== null) break
      }
    } else if ((SCHEMA_LISTS.has(keyword) || keyword === 'items') && Array.isArray(value)) {
      for (const [i, sub] of value.entries()) {
        found = findKeyword(sub, visit, [...path, keyword, i])
        if (found !== null) break
      }
    } else if (SCHEMA_VALUES.has(keyword)) {
      found = findKeyword(value, visit, [...path, keyword])
    }
    if (found !== null) return found
  }
  return null
}

/** A JSON Pointer into the schema as a config path (list indexes as numbers, so that positions resolve). */
function schemaPath(schema: unknown, pointer: string): (string | number)[] {
  const path: (string | number)[] = []
  let node = schema
  for (const raw of pointer.split('/').slice(1)) {
    const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~')
    if (Array.isArray(node)) {
      const i = Number(segment)
      path.push(i)
      node = node[i] as unknown
    } else {
      path.push(segment)
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[segment] : undefined
    }
  }
  return path
}

function valueAt(schema: unknown, path: readonly (string | number)[]): unknown {
  let node = schema
  for (const segment of path)
    node = node !== null && typeof node === 'object' ? (node as Record<string | number, unknown>)[segment] : undefined
  return node
}

/**
 * Every error Baton returns to a client, with its stable code and HTTP status.
 * A code is never reused or renamed: clients branch on it. README "Error codes" mirrors this table.
 */
export const ErrorCodes = {
  DOWNSTREAM_FAILURE: { status: 502, message: 'One or more services unavailable' },
  GATEWAY_TIMEOUT: { status: 504, message: 'The request did not complete in time' },
  DOWNSTREAM_UNAUTHORIZED: { status: 401, message: 'A service refused the credentials' },
  DOWNSTREAM_FORBIDDEN: { status: 403, message: 'A service refused access' },
  DOWNSTREAM_RATE_LIMITED: { status: 429, message: 'A service is rate limiting requests' },
  DOWNSTREAM_REJECTED: { status: 400, message: 'A service rejected the request' },
  CIRCUIT_OPEN: { status: 502, message: 'A service is failing and its circuit breaker is open' },
  BULKHEAD_FULL: { status: 503, message: 'Too many calls in flight to a service' },
  RESPONSE_ASSEMBLY_FAILED: { status: 502, message: "The response could not be assembled from the services' answers" },
  INVALID_JSON: { status: 400, message: 'The request body is not valid JSON' },
  VALIDATION_FAILED: { status: 400, message: 'The request does not match what the endpoint accepts' },
  BAD_REQUEST: { status: 400, message: 'The request is malformed' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request body must be JSON' },
  NOT_FOUND: { status: 404, message: 'No endpoint matches this method and path' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'The path does not accept this method' },
  CLIENT_CLOSED_REQUEST: { status: 499, message: 'The client closed the connection before the answer' },
  UNAUTHENTICATED: { status: 401, message: 'Credentials are required' },
  INVALID_TOKEN: { status: 401, message: 'The access token is not valid' },
  INVALID_API_KEY: { status: 401, message: 'The API key is not valid' },
  FORBIDDEN: { status: 403, message: 'The credentials do not grant access to this endpoint' },
  AUTH_UNAVAILABLE: { status: 503, message: 'Credentials cannot be checked right now' },
  RATE_LIMITED: { status: 429, message: 'Too many requests' },
  OVERLOADED: { status: 503, message: 'The gateway is over its request limit' },
  RATE_LIMIT_UNAVAILABLE: { status: 503, message: 'Rate limits cannot be checked right now' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request was not received in time' },
  HEADERS_TOO_LARGE: { status: 431, message: 'The request headers are too large' },
  SHUTTING_DOWN: { status: 503, message: 'The gateway is shutting down' },
  INTERNAL_ERROR: { status: 500, message: 'Internal gateway error' },
} as const satisfies Record<string, { status: number; message: string }>

export type ErrorCode = keyof typeof ErrorCodes

/** One way a request does not match its endpoint's `validate` schemas (VALIDATION_FAILED's `details`). */
export interface ValidationIssue {
  /** The part of the request: params, query, headers or body. */
  in: 'params' | 'query' | 'headers' | 'body'
  /** JSON Pointer into that part, e.g. /cartId ('' for the part itself). */
  path: string
  /** ajv's message, e.g. "must NOT have fewer than 1 characters". */
  message: string
}

export interface ErrorEnvelope {
  error: {
    code: ErrorCode
    message: string
    failedServices: string[]
    partialData: false
    /** VALIDATION_FAILED only: what is wrong with the request. */
    details?: ValidationIssue[]
  }
  data: Record<string, never>
}

export function errorEnvelope(
  code: ErrorCode,
  message: string = ErrorCodes[code].message,
  failedServices: string[] = [],
): ErrorEnvelope {
  return { error: { code, message, failedServices, partialData: false }, data: {} }
}

/** 400 VALIDATION_FAILED, listing the problems. */
export function validationEnvelope(details: ValidationIssue[]): ErrorEnvelope {
  const envelope = errorEnvelope('VALIDATION_FAILED')
  envelope.error.details = details
  return envelope
}

/** Every config diagnostic `baton check` can report. Stable; README "Config diagnostics" mirrors it. */
export const ConfigCodes = {
  BATON_SYNTAX: 'the file is not valid YAML/JSON',
  BATON_DUPLICATE_KEY: 'a key appears twice in one mapping',
  BATON_UNKNOWN_KEY: 'a key the config language does not have',
  BATON_MISSING_KEY: 'a required key is missing',
  BATON_INVALID_VALUE: 'a value of the wrong type or format (duration, size, percentage, request line…)',
  BATON_INVALID_NAME: 'a service, call or route name that is not allowed',
  BATON_RESERVED_NAME: 'a call or forEach item named like a root (request, env, calls, auth)',
  BATON_INVALID_URL:
    'a service URL that is not http(s)://host[:port][/prefix], or a tracing endpoint that is not http(s)',
  BATON_INVALID_ROUTE: 'an endpoint path with a malformed parameter',
  BATON_DUPLICATE_ROUTE: 'two endpoints that match the same requests',
  BATON_FORBIDDEN_HEADER: 'a hop-by-hop header, host or content-length set or forwarded',
  BATON_UNKNOWN_SERVICE: 'a call to a service that is not declared',
  BATON_UNKNOWN_CALL: 'calls.<name> names no call of the endpoint',
  BATON_UNKNOWN_FIELD: 'request.<field> or calls.<name>.<field> that does not exist',
  BATON_UNKNOWN_PARAM: 'request.params.<name> (or a validate.params property) not declared in the endpoint path',
  BATON_HEADER_CASE:
    'request.headers read (or named in validate.headers) with an upper-case name (they are lower case)',
  BATON_EXPRESSION: 'an expression that does not parse or names an unknown root, function or method',
  BATON_INVALID_SCHEMA:
    'a validate schema that is not valid JSON Schema (draft 2020-12): an unknown keyword or format, a value of the wrong type, a $ref to nothing, a pattern that does not parse',
  BATON_CYCLE: 'calls that read each other in a cycle',
  BATON_FOREACH_ONLY: 'as/into/itemFallback/batch on a call without forEach',
  BATON_BATCH:
    'a batched forEach that cannot work: its request never reads ${ids}, reads the item, or writes the whole ${ids} list into its path; an itemKey that does not read the item',
  BATON_CACHE_METHOD: 'a per-call cache on a call that is not GET or HEAD',
  BATON_CACHE_KEY:
    '(warning) a cached answer that depends on what its key leaves out: the caller under scope: public, a request header or query parameter not in cache.key',
  BATON_CACHE_UNIT: '(warning) a cache TTL written as a bare number, which is milliseconds (ttl: 300 is 0.3 s)',
  BATON_COALESCE:
    'coalesce: true on an endpoint that cannot share its runs: not GET, a response cache (it collapses requests itself), or a call that does not coalesce',
  BATON_ENV_UNSET: '(warning) ${env.NAME} names an unset variable',
  BATON_INVALID_ENV: '(warning) an OTEL_* variable with a value Baton does not understand (the default is used)',
  BATON_TIMEOUT_OVER_DEADLINE: '(warning) a call timeout longer than its endpoint deadline',
  BATON_OPTIONAL_OVER_DEADLINE:
    '(warning) an optional call that can outlive its endpoint deadline (no timeout, or a forEach whose rounds do not fit): at the deadline it takes its fallback',
  BATON_RETRY_OVER_DEADLINE:
    '(warning) a call whose worst case (timeout × tries + backoff) does not fit its endpoint deadline',
  BATON_AUTH_CONFIG:
    'inbound auth or service credentials that cannot work (no key, two key sources, an algorithm that does not fit the key, no API keys)',
  BATON_AUTH_NOT_CONFIGURED: 'an endpoint demands credentials (or a method) that gateway.auth does not configure',
  BATON_INVALID_KEY: 'a PEM key or certificate that does not parse',
  BATON_FILE: 'a file named in the config (key, certificate, keys file) that cannot be read',
  BATON_CORS: 'a CORS origin that is not scheme://host[:port], or origins * with credentials',
  BATON_AUTH_CONFLICT: "a service with credentials of its own that also forwards the client's authorization",
  BATON_SECRET_IN_CONFIG: '(warning) a secret or API key written in the file instead of ${env.NAME}',
  BATON_WEAK_SECRET: '(warning) an HS256 secret shorter than 32 bytes',
  BATON_DEV_SECRET: '(warning, baton dev) the JWT secret is not set; a random one is used for this run',
  BATON_NO_LIMITS: '(warning) a rateLimit block that limits nothing',
  BATON_UNUSED_SERVICE: '(warning) a service no endpoint calls',
  BATON_CACHE:
    "a response cache that could serve one caller another one's answer (credentials without scope), a tag reading a call, or a store that needs Redis without it",
} as const

export type ConfigCode = keyof typeof ConfigCodes

/** A problem in a config file, at a place the user can jump to. */
export interface Diagnostic {
  severity: 'error' | 'warning'
  /** Stable code, e.g. BATON_UNKNOWN_KEY (see ConfigCodes). */
  code: ConfigCode
  message: string
  /** Key path in the config, e.g. endpoints › POST /summary › calls › tax › body. */
  path: readonly (string | number)[]
  hint?: string
  file?: string
  line?: number
  col?: number
}

/** Thrown when a config cannot be compiled; carries every diagnostic found, not only the first. */
export class ConfigError extends Error {
  readonly diagnostics: readonly Diagnostic[]
  constructor(diagnostics: readonly Diagnostic[]) {
    const errors = diagnostics.filter((d) => d.severity === 'error')
    super(`${errors.length} config error${errors.length === 1 ? '' : 's'}:\n${errors.map(formatDiagnostic).join('\n')}`)
    this.name = 'ConfigError'
    this.diagnostics = diagnostics
  }
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = d.file === undefined ? '' : `${d.file}:${d.line ?? 1}:${d.col ?? 1}: `
  const path = d.path.length > 0 ? ` (at ${d.path.join(' › ')})` : ''
  const hint = d.hint === undefined ? '' : `\n    hint: ${d.hint}`
  return `${where}${d.severity} ${d.code}: ${d.message}${path}${hint}`
}

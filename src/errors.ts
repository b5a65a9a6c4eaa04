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
  RESPONSE_ASSEMBLY_FAILED: { status: 502, message: 'The response could not be assembled from the services\' answers' },
  INVALID_JSON: { status: 400, message: 'The request body is not valid JSON' },
  BAD_REQUEST: { status: 400, message: 'The request is malformed' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request body must be JSON' },
  NOT_FOUND: { status: 404, message: 'No endpoint matches this method and path' },
  INTERNAL_ERROR: { status: 500, message: 'Internal gateway error' },
} as const satisfies Record<string, { status: number; message: string }>

export type ErrorCode = keyof typeof ErrorCodes

export interface ErrorEnvelope {
  error: { code: ErrorCode; message: string; failedServices: string[]; partialData: false }
  data: Record<string, never>
}

export function errorEnvelope (code: ErrorCode, message: string = ErrorCodes[code].message, failedServices: string[] = []): ErrorEnvelope {
  return { error: { code, message, failedServices, partialData: false }, data: {} }
}

/** A problem in a config file, at a place the user can jump to. */
export interface Diagnostic {
  severity: 'error' | 'warning'
  /** Stable code, e.g. BATON_UNKNOWN_KEY; documented in the README. */
  code: string
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
  constructor (diagnostics: readonly Diagnostic[]) {
    const errors = diagnostics.filter((d) => d.severity === 'error')
    super(`${errors.length} config error${errors.length === 1 ? '' : 's'}:\n${errors.map(formatDiagnostic).join('\n')}`)
    this.name = 'ConfigError'
    this.diagnostics = diagnostics
  }
}

export function formatDiagnostic (d: Diagnostic): string {
  const where = d.file === undefined ? '' : `${d.file}:${d.line ?? 1}:${d.col ?? 1}: `
  const path = d.path.length > 0 ? ` (at ${d.path.join(' › ')})` : ''
  const hint = d.hint === undefined ? '' : `\n    hint: ${d.hint}`
  return `${where}${d.severity} ${d.code}: ${d.message}${path}${hint}`
}

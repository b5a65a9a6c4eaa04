/**
 * gateway.tracing and the standard OTEL_* variables → the tracing plan, resolved once. What the
 * file says wins over the environment, as settings given in code win over it in the
 * OpenTelemetry SDKs; without a `tracing` key, tracing is on when an OTLP endpoint is set in
 * the environment (or OTEL_TRACES_EXPORTER=console). A value Baton does not understand is a
 * warning and the default is used, as for every OTEL_* variable.
 */
import type { Config } from '../config/schema.ts'
import type { Diagnostics } from './diagnostics.ts'
import { envScope } from './services.ts'
import { compileString, type TemplateScope } from './templates.ts'
import type { OtlpProtocol, TracingPlan } from './types.ts'

type Env = Readonly<Record<string, string | undefined>>

/** The OTLP exporter spec's defaults: a collector on this host. */
const DEFAULT_ENDPOINT = { http: 'http://localhost:4318/v1/traces', grpc: 'http://localhost:4317' }

const PROTOCOLS: readonly OtlpProtocol[] = ['http/protobuf', 'http/json', 'grpc']
/** The spec's default, and what every collector and OTLP backend takes. */
const DEFAULT_PROTOCOL: OtlpProtocol = 'http/protobuf'

const EXPORTERS = ['otlp', 'console', 'none'] as const

/**
 * Query parameters that carry credentials, as services and clients name them; url.query and
 * url.full show their values as REDACTED (HTTP semantic conventions). The API key parameter
 * of gateway.auth is added.
 */
export const REDACTED_QUERY = [
  'access_token',
  'api_key',
  'api-key',
  'apikey',
  'auth',
  'authorization',
  'client_secret',
  'code',
  'id_token',
  'key',
  'password',
  'passwd',
  'refresh_token',
  'secret',
  'sig',
  'signature',
  'token',
  'awsaccesskeyid',
  'x-amz-credential',
  'x-amz-security-token',
  'x-amz-signature',
  'x-goog-credential',
  'x-goog-signature',
] as const

const SAMPLERS: Record<string, { ratio: number | null; parentBased: boolean }> = {
  always_on: { ratio: 1, parentBased: false },
  always_off: { ratio: 0, parentBased: false },
  traceidratio: { ratio: null, parentBased: false },
  parentbased_always_on: { ratio: 1, parentBased: true },
  parentbased_always_off: { ratio: 0, parentBased: true },
  parentbased_traceidratio: { ratio: null, parentBased: true },
}

export function compileTracing(config: Config, env: Env, diagnostics: Diagnostics): TracingPlan | null {
  const tracing = config.gateway.tracing
  if (tracing === false || valueOf(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return null
  const at = ['gateway', 'tracing']
  const exporters = exportersFromEnv(env, diagnostics, at)
  const protocol = protocolFromEnv(env, diagnostics, at)
  const envEndpoint = fromEnv(env, protocol)
  if (tracing === undefined && envEndpoint === null && !exporters.includes('console')) return null
  // Nothing to make spans for: without a tracing key, OTEL_TRACES_EXPORTER=none leaves tracing off.
  if (tracing === undefined && exporters.length === 0) return null
  const scope = envScope(env, diagnostics)

  let endpoint: string
  if (tracing?.endpoint === undefined) {
    endpoint = envEndpoint?.url ?? (protocol === 'grpc' ? DEFAULT_ENDPOINT.grpc : DEFAULT_ENDPOINT.http)
    if (!isHttpUrl(endpoint)) {
      diagnostics.error(
        'BATON_INVALID_URL',
        `${envEndpoint?.name ?? 'the OTLP endpoint'} '${endpoint}' is not an http(s) URL`,
        at,
        { key: true, hint: 'e.g. OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318' },
      )
    }
  } else {
    const value = resolve(tracing.endpoint, [...at, 'endpoint'], scope, diagnostics)
    if (value === null) return null
    endpoint = value
    if (!isHttpUrl(endpoint)) {
      diagnostics.error('BATON_INVALID_URL', `'${endpoint}' is not an http(s) URL`, [...at, 'endpoint'], {
        hint: 'write the OTLP/HTTP traces URL, e.g. http://otel-collector:4318/v1/traces',
      })
    }
  }

  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(tracing?.headers ?? {})) {
    const resolved = resolve(String(value), [...at, 'headers', name], scope, diagnostics)
    if (resolved !== null) headers[name.toLowerCase()] = resolved
  }

  let sampleRatio = 1
  let parentBased = true
  if (tracing?.sampleRatio === undefined) {
    const name = valueOf(env, 'OTEL_TRACES_SAMPLER')?.toLowerCase()
    const sampler = name === undefined ? undefined : SAMPLERS[name]
    if (name !== undefined && sampler === undefined) {
      diagnostics.warn(
        'BATON_INVALID_ENV',
        `OTEL_TRACES_SAMPLER=${name} is not a sampler Baton knows; parentbased_always_on is used`,
        at,
        { key: true, hint: `one of ${Object.keys(SAMPLERS).join(', ')}` },
      )
    } else if (sampler !== undefined) {
      parentBased = sampler.parentBased
      sampleRatio = sampler.ratio ?? ratioFromEnv(env, diagnostics, at)
    }
  } else {
    sampleRatio = tracing.sampleRatio
  }

  const apiKeyParam = config.gateway.auth?.apiKey?.query?.toLowerCase()
  return {
    exporters,
    protocol,
    endpoint,
    serviceName: tracing?.serviceName ?? valueOf(env, 'OTEL_SERVICE_NAME') ?? config.gateway.name,
    headers,
    sampleRatio,
    parentBased,
    serviceVersion: valueOf(env, 'OTEL_SERVICE_VERSION') ?? null,
    redactedQuery:
      apiKeyParam === undefined || (REDACTED_QUERY as readonly string[]).includes(apiKeyParam)
        ? REDACTED_QUERY
        : [...REDACTED_QUERY, apiKeyParam],
  }
}

/**
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, else OTEL_EXPORTER_OTLP_ENDPOINT with the signal's
 * path appended over HTTP, as is over gRPC (the OTLP exporter spec).
 */
function fromEnv(env: Env, protocol: OtlpProtocol): { name: string; url: string } | null {
  const traces = valueOf(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')
  if (traces !== undefined) return { name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', url: traces }
  const base = valueOf(env, 'OTEL_EXPORTER_OTLP_ENDPOINT')
  if (base === undefined) return null
  if (protocol === 'grpc') return { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', url: base }
  return { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', url: `${base}${base.endsWith('/') ? '' : '/'}v1/traces` }
}

/** OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf. */
function protocolFromEnv(env: Env, diagnostics: Diagnostics, at: string[]): OtlpProtocol {
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const value = valueOf(env, name)
    if (value === undefined) continue
    const protocol = PROTOCOLS.find((p) => p === value.toLowerCase())
    if (protocol !== undefined) return protocol
    diagnostics.warn(
      'BATON_INVALID_ENV',
      `${name}=${value} is not an OTLP protocol Baton speaks; ${DEFAULT_PROTOCOL} is used`,
      at,
      { key: true, hint: `one of ${PROTOCOLS.join(', ')}` },
    )
    return DEFAULT_PROTOCOL
  }
  return DEFAULT_PROTOCOL
}

/** OTEL_TRACES_EXPORTER: a comma-separated list of otlp (the default) and console, or none. */
function exportersFromEnv(env: Env, diagnostics: Diagnostics, at: string[]): ('otlp' | 'console')[] {
  const value = valueOf(env, 'OTEL_TRACES_EXPORTER')
  if (value === undefined) return ['otlp']
  const names = value
    .split(',')
    .map((n) => n.trim().toLowerCase())
    .filter((n) => n !== '')
  const unknown = names.filter((n) => !(EXPORTERS as readonly string[]).includes(n))
  if (unknown.length > 0) {
    diagnostics.warn(
      'BATON_INVALID_ENV',
      `OTEL_TRACES_EXPORTER=${value}: ${unknown.join(', ')} is not an exporter Baton has; otlp is used`,
      at,
      { key: true, hint: 'otlp, console (or both, comma-separated), or none' },
    )
    return ['otlp']
  }
  if (names.includes('none')) return []
  return [...new Set(names as ('otlp' | 'console')[])]
}

function ratioFromEnv(env: Env, diagnostics: Diagnostics, at: string[]): number {
  const raw = valueOf(env, 'OTEL_TRACES_SAMPLER_ARG')
  if (raw === undefined) return 1
  const ratio = Number(raw)
  if (ratio >= 0 && ratio <= 1) return ratio
  diagnostics.warn(
    'BATON_INVALID_ENV',
    `OTEL_TRACES_SAMPLER_ARG=${raw} is not a ratio between 0 and 1; 1 is used`,
    at,
    { key: true },
  )
  return 1
}

/** A variable's trimmed value; unset and empty are the same, as the OpenTelemetry SDKs read them. */
function valueOf(env: Env, name: string): string | undefined {
  const value = env[name]?.trim()
  return value === undefined || value === '' ? undefined : value
}

function resolve(
  text: string,
  path: (string | number)[],
  scope: TemplateScope,
  diagnostics: Diagnostics,
): string | null {
  const compiled = compileString(text, path, scope, diagnostics, undefined)
  return compiled === null ? null : String(compiled.evaluate({}) ?? '')
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text)
    return url.protocol === 'http:' || url.protocol === 'https:'
  } catch {
    return false
  }
}

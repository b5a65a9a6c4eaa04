/**
 * gateway.tracing and the standard OTEL_* variables → the tracing plan, resolved once. What the
 * file says wins over the environment, as settings given in code win over it in the
 * OpenTelemetry SDKs; without a `tracing` key, tracing is on when an OTLP endpoint is set in
 * the environment.
 */
import type { Config } from '../config/schema.ts'
import type { Diagnostics } from './diagnostics.ts'
import { envScope } from './services.ts'
import { compileString, type TemplateScope } from './templates.ts'
import type { TracingPlan } from './types.ts'

type Env = Readonly<Record<string, string | undefined>>

/** The OTLP/HTTP default: a collector on this host. */
const DEFAULT_ENDPOINT = 'http://localhost:4318/v1/traces'

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
  const envEndpoint = fromEnv(env)
  if (tracing === undefined && envEndpoint === null) return null
  const at = ['gateway', 'tracing']
  const scope = envScope(env, diagnostics)

  let endpoint: string
  if (tracing?.endpoint === undefined) {
    endpoint = envEndpoint?.url ?? DEFAULT_ENDPOINT
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

  return {
    endpoint,
    serviceName: tracing?.serviceName ?? valueOf(env, 'OTEL_SERVICE_NAME') ?? config.gateway.name,
    headers,
    sampleRatio,
    parentBased,
  }
}

/** OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, else OTEL_EXPORTER_OTLP_ENDPOINT with the signal's path appended (the OTLP exporter spec). */
function fromEnv(env: Env): { name: string; url: string } | null {
  const traces = valueOf(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')
  if (traces !== undefined) return { name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', url: traces }
  const base = valueOf(env, 'OTEL_EXPORTER_OTLP_ENDPOINT')
  if (base === undefined) return null
  return { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', url: `${base}${base.endsWith('/') ? '' : '/'}v1/traces` }
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

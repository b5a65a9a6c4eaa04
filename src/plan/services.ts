import type { Config, ServiceConfig } from '../config/schema.ts'
import type { Diagnostics } from './diagnostics.ts'
import { compileString, compileValue, type TemplateScope } from './templates.ts'
import { isForbiddenHeader } from './headers.ts'
import { serviceResilience } from './resilience.ts'
import { routeToServerPath } from './routes.ts'
import type { MockRoutePlan, ServicePlan } from './types.ts'

/** Service-level strings (url, headers) may read environment variables only; they are resolved once. */
export function envScope (env: Readonly<Record<string, string | undefined>>, diagnostics: Diagnostics): TemplateScope {
  const snapshot: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [k, v] of Object.entries(env)) if (v !== undefined) snapshot[k] = v
  return {
    knownRoots: ['env'],
    resolveRoot: (name) => (name === 'env' ? () => snapshot : undefined),
    onReference: (ref, path) => {
      const name = ref.path[0]
      if (ref.root === 'env' && name !== undefined && snapshot[name] === undefined) {
        diagnostics.warn('BATON_ENV_UNSET', `environment variable ${name} is not set`, path, { hint: `set ${name} before starting the gateway` })
      }
    },
  }
}

export function compileServices (config: Config, env: Readonly<Record<string, string | undefined>>, diagnostics: Diagnostics): Map<string, ServicePlan> {
  const scope = envScope(env, diagnostics)
  const services = new Map<string, ServicePlan>()
  for (const [name, service] of Object.entries(config.services)) {
    const plan = compileService(name, service, scope, diagnostics)
    if (plan !== null) services.set(name, plan)
  }
  return services
}

function compileService (name: string, service: ServiceConfig, scope: TemplateScope, diagnostics: Diagnostics): ServicePlan | null {
  const at = ['services', name]
  const urlText = compileString(service.url, [...at, 'url'], scope, diagnostics, undefined)
  if (urlText === null) return null
  const raw = String(urlText.evaluate({}) ?? '')
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    diagnostics.error('BATON_INVALID_URL', `'${raw}' is not a URL`, [...at, 'url'], { hint: 'write http://host:port or https://host, optionally with a path prefix' })
    return null
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    diagnostics.error('BATON_INVALID_URL', `unsupported protocol ${url.protocol} in '${raw}'`, [...at, 'url'], { hint: 'services are reached over http: or https:' })
    return null
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    diagnostics.error('BATON_INVALID_URL', `'${raw}' may not carry a query, fragment or credentials`, [...at, 'url'], { hint: 'put credentials in headers, query parameters on the calls' })
    return null
  }

  const headers: [string, string][] = []
  for (const [header, value] of Object.entries(service.headers ?? {})) {
    if (checkHeaderName(header, [...at, 'headers', header], diagnostics)) {
      const compiled = compileString(String(value), [...at, 'headers', header], scope, diagnostics, undefined)
      if (compiled !== null) headers.push([header.toLowerCase(), String(compiled.evaluate({}) ?? '')])
    }
  }
  const forwardHeaders: string[] = []
  for (const [i, header] of (service.forwardHeaders ?? []).entries()) {
    if (checkHeaderName(header, [...at, 'forwardHeaders', i], diagnostics)) forwardHeaders.push(header.toLowerCase())
  }

  return {
    name,
    origin: url.origin,
    pathPrefix: url.pathname === '/' ? '' : url.pathname.replace(/\/$/, ''),
    timeout: service.timeout ?? Infinity,
    headers,
    forwardHeaders,
    connections: service.connections,
    maxResponseSize: service.maxResponseSize,
    latency: service.latency,
    sla: service.sla === undefined ? undefined : String(service.sla),
    owner: service.owner,
    mock: service.mock === undefined ? null : compileMock(at, service.mock, diagnostics),
    resilience: serviceResilience(service),
  }
}

export function checkHeaderName (name: string, path: readonly (string | number)[], diagnostics: Diagnostics): boolean {
  if (!isForbiddenHeader(name)) return true
  diagnostics.error('BATON_FORBIDDEN_HEADER', `header '${name}' cannot be set or forwarded`, path, {
    key: true, hint: 'hop-by-hop headers, host and content-length belong to the connection and are managed by Baton',
  })
  return false
}

function compileMock (at: string[], routes: NonNullable<ServiceConfig['mock']>, diagnostics: Diagnostics): MockRoutePlan[] {
  const plans: MockRoutePlan[] = []
  for (const [key, route] of Object.entries(routes)) {
    const [method, path] = key.split(' ') as [string, string]
    const scope: TemplateScope = {
      knownRoots: ['request'],
      resolveRoot: (name) => (name === 'request' ? (ctx) => (ctx as { request: unknown }).request : undefined),
      onReference: () => {},
    }
    const body = route.body === undefined ? null : compileValue(route.body, [...at, 'mock', key, 'body'], scope, diagnostics).evaluate
    const headers: Record<string, string> = {}
    for (const [h, v] of Object.entries(route.headers ?? {})) headers[h.toLowerCase()] = String(v)
    plans.push({ method, path: routeToServerPath(path), status: route.status, headers, latency: route.latency ?? 0, body, config: route })
  }
  return plans
}

import type { Config, ServiceConfig } from '../config/schema.ts'
import type { Diagnostics } from './diagnostics.ts'
import { compileString, compileValue, type TemplateScope } from './templates.ts'
import { isForbiddenHeader } from './headers.ts'
import { percent, serviceResilience } from './resilience.ts'
import { routeToServerPath } from './routes.ts'
import type { CallCachePlan, MockRoutePlan, OAuth2Plan, ServicePlan, TlsPlan } from './types.ts'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import type { ConfigPath } from '../config/source.ts'
import type { Evaluator, Reference } from '../expr/index.ts'
import { didYouMean } from '../util/suggest.ts'
import { readConfigFile, resolveEnv } from './edge.ts'
import { AUTH_FIELDS, type Scope } from './scope.ts'
import { compileOAuth2 } from './oauth2.ts'

/** Service-level strings (url, headers) may read environment variables only; they are resolved once. */
export function envScope(env: Readonly<Record<string, string | undefined>>, diagnostics: Diagnostics): TemplateScope {
  const snapshot: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [k, v] of Object.entries(env)) if (v !== undefined) snapshot[k] = v
  return {
    knownRoots: ['env'],
    resolveRoot: (name) => (name === 'env' ? () => snapshot : undefined),
    onReference: (ref, path) => {
      const name = ref.path[0]
      if (ref.root === 'env' && name !== undefined && snapshot[name] === undefined) {
        diagnostics.warn('BATON_ENV_UNSET', `environment variable ${name} is not set`, path, {
          hint: `set ${name} before starting the gateway`,
        })
      }
    },
  }
}

export function compileServices(
  config: Config,
  env: Readonly<Record<string, string | undefined>>,
  baseDir: string,
  mode: 'serve' | 'check' | 'dev',
  diagnostics: Diagnostics,
): Map<string, ServicePlan> {
  const scope = envScope(env, diagnostics)
  const services = new Map<string, ServicePlan>()
  for (const [name, service] of Object.entries(config.services)) {
    const plan = compileService(name, service, scope, baseDir, mode, diagnostics)
    if (plan !== null) services.set(name, plan)
  }
  return services
}

/** Service header values read env (resolved now) and auth (read per request). */
function headerScope(env: TemplateScope, diagnostics: Diagnostics): TemplateScope & { readsAuth: boolean } {
  const scope = {
    readsAuth: false,
    knownRoots: ['env', 'auth'],
    resolveRoot: (name: string) =>
      name === 'auth' ? (s: unknown) => (s as Scope).request.auth : env.resolveRoot(name),
    onReference: (ref: Reference, path: ConfigPath, source: string) => {
      if (ref.root !== 'auth') return env.onReference(ref, path, source)
      scope.readsAuth = true
      const field = ref.path[0]
      if (field !== undefined && !AUTH_FIELDS.includes(field)) {
        diagnostics.error('BATON_UNKNOWN_FIELD', `auth has no field '${field}'`, path, {
          offset: ref.offset,
          hint:
            didYouMean(field, AUTH_FIELDS) ?? `auth has ${AUTH_FIELDS.join(', ')}; token claims are under auth.claims`,
        })
      }
    },
  }
  return scope
}

function compileService(
  name: string,
  service: ServiceConfig,
  scope: TemplateScope,
  baseDir: string,
  mode: 'serve' | 'check' | 'dev',
  diagnostics: Diagnostics,
): ServicePlan | null {
  const at = ['services', name]
  const urlText = compileString(service.url, [...at, 'url'], scope, diagnostics, undefined)
  if (urlText === null) return null
  const raw = String(urlText.evaluate({}) ?? '')
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    diagnostics.error('BATON_INVALID_URL', `'${raw}' is not a URL`, [...at, 'url'], {
      hint: 'write http://host:port or https://host, optionally with a path prefix',
    })
    return null
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    diagnostics.error('BATON_INVALID_URL', `unsupported protocol ${url.protocol} in '${raw}'`, [...at, 'url'], {
      hint: 'services are reached over http: or https:',
    })
    return null
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    diagnostics.error('BATON_INVALID_URL', `'${raw}' may not carry a query, fragment or credentials`, [...at, 'url'], {
      hint: 'put credentials in headers, query parameters on the calls',
    })
    return null
  }

  const headers: [string, string][] = []
  const authHeaders: [string, Evaluator][] = []
  for (const [header, value] of Object.entries(service.headers ?? {})) {
    if (checkHeaderName(header, [...at, 'headers', header], diagnostics)) {
      const hs = headerScope(scope, diagnostics)
      const compiled = compileString(String(value), [...at, 'headers', header], hs, diagnostics, undefined)
      if (compiled === null) continue
      if (hs.readsAuth) authHeaders.push([header.toLowerCase(), compiled.evaluate])
      else headers.push([header.toLowerCase(), String(compiled.evaluate({}) ?? '')])
    }
  }
  const forwardHeaders: string[] = []
  for (const [i, header] of (service.forwardHeaders ?? []).entries()) {
    if (checkHeaderName(header, [...at, 'forwardHeaders', i], diagnostics)) forwardHeaders.push(header.toLowerCase())
  }

  let oauth2: OAuth2Plan | null = null
  let credentialHeader: string | null = null
  if (service.auth !== undefined) {
    const ctx = { env: scope, diagnostics }
    const auth = service.auth
    /** A secret the environment leaves empty: an error when serving (the service would get an empty credential). */
    const secret = (value: string, path: ConfigPath): string => {
      const text = resolveEnv(value, path, ctx) ?? ''
      if (text === '' && mode === 'serve')
        diagnostics.error('BATON_AUTH_CONFIG', `the credential of ${name} is empty`, path, {
          hint: 'set the environment variable it reads',
        })
      return text
    }
    let header: string
    if ('bearer' in auth) {
      header = 'authorization'
      headers.push([header, `Bearer ${secret(auth.bearer, [...at, 'auth', 'bearer'])}`])
    } else if ('apiKey' in auth) {
      header = auth.apiKey.header.toLowerCase()
      headers.push([header, secret(auth.apiKey.value, [...at, 'auth', 'apiKey', 'value'])])
    } else {
      header = 'authorization'
      oauth2 = compileOAuth2(auth.oauth2, [...at, 'auth', 'oauth2'], { ...ctx, baseDir, secret })
    }
    credentialHeader = header
    const clash = forwardHeaders.includes(header)
      ? 'forwardHeaders'
      : Object.keys(service.headers ?? {}).some((h) => h.toLowerCase() === header)
        ? 'headers'
        : null
    if (clash !== null) {
      diagnostics.error(
        'BATON_AUTH_CONFLICT',
        `${name} gets its own credentials in ${header}, and ${clash} sets ${header} too`,
        [...at, clash],
        {
          key: true,
          hint: `remove ${header} from ${clash}, or drop auth to pass the client's own`,
        },
      )
    }
  }

  let tls: TlsPlan | null = null
  if (service.tls !== undefined) {
    const t = service.tls
    const tat = [...at, 'tls']
    if (url.protocol !== 'https:')
      diagnostics.error('BATON_AUTH_CONFIG', 'tls settings need an https:// service URL', [...tat], {
        key: true,
        hint: `write https://${url.host}${url.pathname === '/' ? '' : url.pathname}`,
      })
    if ((t.cert === undefined) !== (t.key === undefined))
      diagnostics.error('BATON_AUTH_CONFIG', 'a client certificate needs both cert and key', tat, { key: true })
    const file = (f: string | undefined, key: string): string | null =>
      f === undefined ? null : readConfigFile(f, [...tat, key], { baseDir, diagnostics })
    tls = {
      cert: file(t.cert, 'cert'),
      key: file(t.key, 'key'),
      ca: file(t.ca, 'ca'),
      passphrase:
        t.passphrase === undefined
          ? null
          : resolveEnv(t.passphrase, [...tat, 'passphrase'], { env: scope, diagnostics }),
      servername: t.servername ?? null,
    }
    if (tls.cert !== null) {
      try {
        new X509Certificate(tls.cert)
      } catch (err) {
        diagnostics.error(
          'BATON_INVALID_KEY',
          `the client certificate does not parse: ${(err as Error).message}`,
          [...tat, 'cert'],
          { hint: 'give a PEM certificate (-----BEGIN CERTIFICATE-----)' },
        )
      }
    }
    if (tls.key !== null) {
      try {
        createPrivateKey(tls.passphrase === null ? tls.key : { key: tls.key, passphrase: tls.passphrase })
      } catch (err) {
        diagnostics.error(
          'BATON_INVALID_KEY',
          `the client key does not parse: ${(err as Error).message}`,
          [...tat, 'key'],
          { hint: 'give a PEM private key, and its passphrase if it has one' },
        )
      }
    }
  }

  return {
    name,
    // Set once the whole plan is compiled (compile.ts).
    fingerprint: '',
    origin: url.origin,
    pathPrefix: url.pathname === '/' ? '' : url.pathname.replace(/\/$/, ''),
    timeout: service.timeout ?? Infinity,
    headers,
    forwardHeaders,
    connections: service.connections,
    maxResponseSize: service.maxResponseSize,
    followRedirects: service.followRedirects,
    authHeaders,
    credentialHeader,
    oauth2,
    tls,
    latency: service.latency,
    sla: service.sla === undefined ? undefined : String(service.sla),
    owner: service.owner,
    mock: service.mock === undefined ? null : compileMock(at, service.mock, diagnostics),
    resilience: serviceResilience(service),
    coalesce: service.coalesce ?? null,
    cache: cachePlan(service.cache),
    cacheMaxSize: service.cache?.maxSize ?? DEFAULT_CALL_CACHE_SIZE,
    alerts:
      service.alerts === undefined
        ? null
        : {
            errorRate: percent(service.alerts.errorRate),
            window: service.alerts.window,
            channel: service.alerts.channel,
          },
  }
}

export function checkHeaderName(name: string, path: readonly (string | number)[], diagnostics: Diagnostics): boolean {
  if (!isForbiddenHeader(name)) return true
  diagnostics.error('BATON_FORBIDDEN_HEADER', `header '${name}' cannot be set or forwarded`, path, {
    key: true,
    hint: 'hop-by-hop headers, host and content-length belong to the connection and are managed by Baton',
  })
  return false
}

function compileMock(
  at: string[],
  routes: NonNullable<ServiceConfig['mock']>,
  diagnostics: Diagnostics,
): MockRoutePlan[] {
  const plans: MockRoutePlan[] = []
  for (const [key, route] of Object.entries(routes)) {
    const [method, path] = key.split(' ') as [string, string]
    const scope: TemplateScope = {
      knownRoots: ['request'],
      resolveRoot: (name) => (name === 'request' ? (ctx) => (ctx as { request: unknown }).request : undefined),
      onReference: () => {},
    }
    const body =
      route.body === undefined
        ? null
        : compileValue(route.body, [...at, 'mock', key, 'body'], scope, diagnostics).evaluate
    const headers: Record<string, string> = {}
    for (const [h, v] of Object.entries(route.headers ?? {})) headers[h.toLowerCase()] = String(v)
    plans.push({
      method,
      path: routeToServerPath(path),
      status: route.status,
      headers,
      latency: route.latency ?? 0,
      body,
    })
  }
  return plans
}

/** Bytes a service's call cache holds unless its `cache.maxSize` says otherwise. */
export const DEFAULT_CALL_CACHE_SIZE = 16 * 1024 * 1024

/** `{ ttl }` or `{ honor: true }` (false or neither: no cache). */
export function cachePlan(
  cache: { ttl?: number | undefined; honor?: true | undefined } | false | undefined,
): CallCachePlan | null {
  if (cache === undefined || cache === false) return null
  if (cache.honor === true) return { honor: true }
  return cache.ttl === undefined ? null : { honor: false, ttl: cache.ttl }
}

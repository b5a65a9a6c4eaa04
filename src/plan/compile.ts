import { createHash } from 'node:crypto'
/** Validated config → immutable gateway plan, with every semantic problem reported at once. */
import type { Config } from '../config/schema.ts'
import type { Diagnostic } from '../errors.ts'
import { ConfigError } from '../errors.ts'
import type { LoadedConfig } from '../config/load.ts'
import { loadConfig, parseConfig } from '../config/load.ts'
import { Diagnostics } from './diagnostics.ts'
import { compileEndpoint } from './endpoint.ts'
import { routeShape } from './routes.ts'
import { percent } from './resilience.ts'
import { compileServices, envScope } from './services.ts'
import { compileEdge, compileRedis, type EdgeContext, resolveEnv } from './edge.ts'
import { dirname, resolve } from 'node:path'
import { compileTracing } from './tracing.ts'
import { compileCanary } from './canary.ts'
import { warnBareCacheDurations } from './cache.ts'
import type { EndpointPlan, GatewayPlan } from './types.ts'
import { SchemaCompiler } from './validation.ts'

export interface CompileResult {
  plan?: GatewayPlan
  diagnostics: Diagnostic[]
}

export interface CompileOptions {
  /** Environment for ${env.…}; default process.env. */
  env?: Readonly<Record<string, string | undefined>>
  /**
   * What the plan is for. serve (the default): secrets the environment leaves empty are errors.
   * check: they are only warned about (the deploy environment is not the checker's). dev: an
   * unset JWT secret becomes a random one for this run.
   */
  mode?: 'serve' | 'check' | 'dev'
  /** dev: the stand-in for an unset JWT secret (baton dev passes one, so that a reload keeps its printed token valid). */
  devSecret?: string
}

export function compileConfig(loaded: LoadedConfig, options: CompileOptions = {}): CompileResult {
  const { config, source } = loaded
  if (config === undefined) return { diagnostics: loaded.diagnostics }
  const diagnostics = new Diagnostics(source)
  const envInput = options.env ?? process.env
  const env: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [k, v] of Object.entries(envInput)) if (v !== undefined) env[k] = v
  Object.freeze(env)

  const baseDir = dirname(resolve(source.file))
  const services = compileServices(config, env, baseDir, options.mode ?? 'serve', diagnostics)
  const edgeContext: EdgeContext = {
    env: envScope(env, diagnostics),
    baseDir,
    diagnostics,
    mode: options.mode ?? 'serve',
    devSecret: options.devSecret,
    invalidAt: (path) =>
      loaded.diagnostics.some((d) => d.severity === 'error' && path.every((p, i) => d.path[i] === p)),
  }
  const redis = compileRedis(config, edgeContext)
  const edge = compileEdge(config, edgeContext, redis)
  const tracing = compileTracing(config, env, diagnostics)
  const declaredServices = new Set(Object.keys(config.services))
  const endpoints: EndpointPlan[] = []
  const shapes = new Map<string, string>()
  if (config.gateway.metrics !== false && config.gateway.metrics.port === undefined)
    shapes.set(routeShape('GET', config.gateway.metrics.path), 'gateway.metrics.path')
  if (config.gateway.admin.token !== undefined)
    shapes.set(routeShape('POST', '/admin/reload'), 'gateway.admin (reload)')
  if (config.gateway.cache.invalidation.token !== undefined || config.gateway.admin.token !== undefined)
    shapes.set(routeShape('POST', config.gateway.cache.invalidation.path), 'gateway.cache.invalidation.path')
  if (config.gateway.health !== false) {
    shapes.set(routeShape('GET', config.gateway.health.path), 'gateway.health.path')
    shapes.set(routeShape('GET', config.gateway.health.readyPath), 'gateway.health.readyPath')
  }
  const used = new Set<string>()
  const schemas = new SchemaCompiler()
  for (const [key, endpoint] of Object.entries(config.endpoints)) {
    const [method, path] = key.split(' ') as [string, string]
    const shape = routeShape(method, config.gateway.basePath + path)
    const other = shapes.get(shape)
    if (other !== undefined) {
      diagnostics.error(
        'BATON_DUPLICATE_ROUTE',
        `'${key}' matches the same requests as '${other}'`,
        ['endpoints', key],
        { key: true, hint: 'routes that differ only in parameter names collide; merge them or change one path' },
      )
    }
    shapes.set(shape, key)
    for (const call of Object.values(endpoint.calls)) used.add(call.request.trim().split(/\s+/)[1] ?? '')
    const plan = compileEndpoint({
      key,
      endpoint,
      basePath: config.gateway.basePath,
      defaultTimeout: config.gateway.timeout,
      services,
      declaredServices,
      env,
      gatewayAuth: config.gateway.auth,
      schemas,
      defaultCacheStore: config.gateway.cache.store,
      diagnostics,
    })
    if (plan !== null) endpoints.push(plan)
  }
  warnBareCacheDurations(config, diagnostics)
  for (const name of declaredServices) {
    if (!used.has(name))
      diagnostics.warn('BATON_UNUSED_SERVICE', `service '${name}' is not called by any endpoint`, ['services', name], {
        key: true,
      })
  }

  // Read before the diagnostics are gathered: they may add some (an unset variable, a sticky key that reads too much).
  const adminToken =
    config.gateway.admin.token === undefined
      ? null
      : emptyToNull(
          resolveEnv(config.gateway.admin.token, ['gateway', 'admin', 'token'], {
            env: envScope(env, diagnostics),
            diagnostics,
          }) ?? undefined,
        )
  const invalidationToken =
    config.gateway.cache.invalidation.token === undefined
      ? null
      : emptyToNull(
          resolveEnv(config.gateway.cache.invalidation.token, ['gateway', 'cache', 'invalidation', 'token'], {
            env: envScope(env, diagnostics),
            diagnostics,
          }) ?? undefined,
        )
  const canary =
    config.canary === undefined ? null : compileCanary(config.canary, baseDir, envScope(env, diagnostics), diagnostics)

  const all = [...loaded.diagnostics, ...diagnostics.list]
  all.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0))
  if (diagnostics.failed || !loaded.valid) return { diagnostics: all }
  const { gateway } = config
  const plan: GatewayPlan = {
    name: gateway.name,
    health:
      gateway.health === false
        ? null
        : {
            path: gateway.health.path,
            readyPath: gateway.health.readyPath,
            errorRate: percent(gateway.health.errorRate),
            minCalls: gateway.health.minCalls,
          },
    serverTiming: gateway.serverTiming,
    compression:
      gateway.compression === false
        ? null
        : { threshold: gateway.compression.threshold, encodings: gateway.compression.encodings },
    metrics:
      gateway.metrics === false
        ? null
        : { path: gateway.metrics.path, port: gateway.metrics.port, buckets: gateway.metrics.buckets },
    logLevel: gateway.logLevel,
    logFormat: gateway.logFormat,
    logTime: gateway.logTime,
    accessLog: gateway.accessLog,
    tracing,
    owner: gateway.owner,
    basePath: gateway.basePath,
    host: gateway.host,
    port: gateway.port,
    bodyLimit: gateway.bodyLimit,
    retryAfterSeconds: Math.max(1, Math.ceil(gateway.retryAfter / 1000)),
    redis,
    // Every run ends by its endpoint's deadline: a second more lets the last answers be written.
    drainTimeout:
      gateway.drainTimeout ??
      Math.max(...endpoints.map((e) => e.timeout), endpoints.length === 0 ? gateway.timeout : 0) + 1000,
    edge,
    services: [...services.values()],
    endpoints,
    breakerAlert: gateway.alerts.breakerOpen === false ? null : gateway.alerts.breakerOpen,
    adminToken,
    files: referencedFiles(config, source.file, baseDir),
    release: gateway.release ?? createHash('sha256').update(source.text).digest('hex').slice(0, 8),
    canary,
    cache: {
      maxSize: gateway.cache.maxSize,
      tagHeader: gateway.cache.tagHeader?.toLowerCase() ?? null,
      invalidation: {
        path: gateway.cache.invalidation.path,
        token: invalidationToken,
      },
    },
  }
  // Before the plan is frozen: what a reload compares to decide what it keeps.
  for (const service of plan.services)
    (service as { fingerprint: string }).fingerprint = fingerprintOf([config.services[service.name], service])
  for (const endpoint of plan.endpoints)
    (endpoint as { fingerprint: string }).fingerprint = fingerprintOf([config.endpoints[endpoint.key], endpoint])
  return { plan: deepFreeze(plan), diagnostics: all }
}

/** Load, validate and compile a config file; throws ConfigError with every diagnostic when it has errors. */
export async function compileFile(
  file: string,
  options: CompileOptions = {},
): Promise<{ plan: GatewayPlan; diagnostics: Diagnostic[] }> {
  return unwrap(compileConfig(await loadConfig(file), options))
}

export function compileText(
  file: string,
  text: string,
  options: CompileOptions = {},
): { plan: GatewayPlan; diagnostics: Diagnostic[] } {
  return unwrap(compileConfig(parseConfig(file, text), options))
}

function unwrap(result: CompileResult): { plan: GatewayPlan; diagnostics: Diagnostic[] } {
  if (result.plan === undefined) throw new ConfigError(result.diagnostics)
  return { plan: result.plan, diagnostics: result.diagnostics }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) if (typeof v !== 'function') deepFreeze(v)
  }
  return value
}

/** The config file and the files it names (a reload watches them). */
function referencedFiles(config: Config, file: string, baseDir: string): string[] {
  const named: (string | undefined)[] = [config.gateway.auth?.jwt?.publicKeyFile, config.gateway.auth?.apiKey?.keysFile]
  for (const service of Object.values(config.services)) named.push(service.tls?.cert, service.tls?.key, service.tls?.ca)
  return [resolve(file), ...named.flatMap((n) => (n === undefined ? [] : [resolve(baseDir, n)]))]
}

/**
 * A digest of config sections and plan parts: the config as written (expressions included, as
 * text) and the plan's resolved values (defaults inherited, secrets and files read); functions,
 * which the config's text already stands for, are left out.
 */
export function fingerprintOf(value: unknown): string {
  const text = JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'function' ? undefined : v === Infinity ? 'Infinity' : v instanceof Map ? [...v] : v,
  )
  return createHash('sha256').update(text).digest('base64url').slice(0, 22)
}

function emptyToNull(value: string | undefined): string | null {
  return value === undefined || value === '' ? null : value
}

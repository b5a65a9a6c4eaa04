/**
 * The gateway's edge, compiled: inbound auth, rate limits, CORS and client limits. Secrets
 * and keys are resolved here (env, files) so that `baton check` reports a missing variable,
 * an unreadable file or a key that does not parse, at its place in the config.
 */
import { createPublicKey, type KeyObject, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { resolve } from 'node:path'
import {
  type Config,
  type EndpointAuthConfig,
  type GatewayAuthConfig,
  gatewayRateLimitSchema,
} from '../config/schema.ts'
import type { ConfigPath } from '../config/source.ts'
import type { Diagnostics } from './diagnostics.ts'
import { compileString, type TemplateScope } from './templates.ts'
import type {
  ApiKeyPlan,
  AuthMethod,
  AuthPlan,
  CorsPlan,
  EdgePlan,
  EndpointAuthPlan,
  JwtPlan,
  RateLimitPlan,
  RedisSettings,
} from './types.ts'

export interface EdgeContext {
  readonly env: TemplateScope
  /** Folder of the config file: relative file names are resolved against it. */
  readonly baseDir: string
  readonly diagnostics: Diagnostics
  /** See CompileOptions.mode. */
  readonly mode: 'serve' | 'check' | 'dev'
  /** True when the schema check already reported an error at or under this path (its key was set aside). */
  readonly invalidAt: (path: readonly string[]) => boolean
  /** baton dev: the stand-in JWT secret to use when the configured one is unset (kept across reloads). */
  readonly devSecret?: string | undefined
}

const HS = ['HS256', 'HS384', 'HS512']
const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']

/** `redis`: gateway.redis, compiled (compileRedis), which the rate limits' store starts from. */
export function compileEdge(config: Config, ctx: EdgeContext, redis: RedisSettings): EdgePlan {
  const { gateway } = config
  return {
    auth: gateway.auth === undefined ? null : compileAuth(gateway.name, gateway.auth, ctx),
    rateLimit: compileRateLimit(config, ctx, redis),
    cors: compileCors(config, ctx),
    trustedProxies: compileProxies(gateway.trustedProxies, ctx.diagnostics),
    maxHeaderSize: gateway.maxHeaderSize,
    clientTimeouts: gateway.clientTimeouts,
  }
}

/** A string that may be `${env.NAME}`, resolved now. */
export function resolveEnv(
  value: string,
  path: ConfigPath,
  ctx: Pick<EdgeContext, 'env' | 'diagnostics'>,
): string | null {
  const compiled = compileString(value, path, ctx.env, ctx.diagnostics, undefined)
  if (compiled === null) return null
  const text = compiled.evaluate({})
  return text === null || text === undefined ? '' : String(text)
}

/** Reads a file named in the config (relative to it); null, with a diagnostic, when it cannot. */
export function readConfigFile(
  name: string,
  path: ConfigPath,
  ctx: Pick<EdgeContext, 'baseDir' | 'diagnostics'>,
): string | null {
  const file = resolve(ctx.baseDir, name)
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    ctx.diagnostics.error(
      'BATON_FILE',
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      path,
      { hint: 'file names are relative to the config file' },
    )
    return null
  }
}

function compileAuth(name: string, auth: GatewayAuthConfig, ctx: EdgeContext): AuthPlan {
  const at = ['gateway', 'auth']
  if (auth.jwt === undefined && auth.apiKey === undefined) {
    ctx.diagnostics.error('BATON_AUTH_CONFIG', 'gateway.auth names no way to authenticate', at, {
      key: true,
      hint: 'add jwt: or apiKey:, or remove auth to leave every endpoint open',
    })
  }
  return {
    // Quoted in WWW-Authenticate: only what a header value can carry, without quotes or backslashes.
    realm: (auth.realm ?? name).replace(/[^\x20-\x7e\x80-\xff]|["\\]/g, ''),
    jwt: auth.jwt === undefined ? null : compileJwt(auth.jwt, [...at, 'jwt'], ctx),
    apiKey: auth.apiKey === undefined ? null : compileApiKey(auth.apiKey, [...at, 'apiKey'], ctx),
  }
}

function compileJwt(jwt: NonNullable<GatewayAuthConfig['jwt']>, at: string[], ctx: EdgeContext): JwtPlan {
  const { diagnostics } = ctx
  const sources = (['secret', 'publicKey', 'publicKeyFile', 'jwksUrl'] as const).filter((k) => jwt[k] !== undefined)
  if (sources.length !== 1) {
    diagnostics.error(
      'BATON_AUTH_CONFIG',
      sources.length === 0 ? 'jwt needs a key' : `jwt has ${sources.join(' and ')}: give exactly one key source`,
      at,
      {
        key: true,
        hint: 'secret (HS256), publicKey or publicKeyFile (RS/ES/EdDSA), or jwksUrl',
      },
    )
  }
  let secret: string | null = null
  let publicKey: string | null = null
  let jwksUrl: string | null = null
  /** The algorithms a static public key can verify, once it parsed. */
  let keyAlgorithms: readonly string[] | null = null
  if (jwt.secret !== undefined) {
    secret = resolveEnv(jwt.secret, [...at, 'secret'], ctx)
    if (!jwt.secret.includes('${')) {
      diagnostics.warn('BATON_SECRET_IN_CONFIG', 'the JWT secret is written in the config file', [...at, 'secret'], {
        hint: 'read it from the environment: secret: ${env.JWT_SECRET}',
      })
    }
    if (secret === '' && ctx.mode === 'dev') {
      secret = ctx.devSecret ?? randomBytes(32).toString('base64url')
      diagnostics.warn(
        'BATON_DEV_SECRET',
        'the JWT secret is not set: baton dev checks tokens against a random secret for this run',
        [...at, 'secret'],
        { hint: 'baton dev prints a token signed with it' },
      )
    } else if (secret === '' && ctx.mode === 'serve') {
      diagnostics.error('BATON_AUTH_CONFIG', 'the JWT secret is empty', [...at, 'secret'], {
        hint: 'set the environment variable it reads',
      })
    }
    if (secret !== null && secret !== '' && Buffer.byteLength(secret) < 32) {
      diagnostics.warn(
        'BATON_WEAK_SECRET',
        `the JWT secret is ${Buffer.byteLength(secret)} bytes; HS256 wants at least 32`,
        [...at, 'secret'],
        { hint: 'generate one with: openssl rand -base64 48' },
      )
    }
  }
  if (jwt.publicKey !== undefined) publicKey = resolveEnv(jwt.publicKey, [...at, 'publicKey'], ctx)
  if (jwt.publicKeyFile !== undefined) publicKey = readConfigFile(jwt.publicKeyFile, [...at, 'publicKeyFile'], ctx)
  if (publicKey === '' && ctx.mode !== 'check') {
    diagnostics.error(
      'BATON_AUTH_CONFIG',
      'the JWT public key is empty',
      [...at, jwt.publicKeyFile === undefined ? 'publicKey' : 'publicKeyFile'],
      { hint: 'set the environment variable it reads, or point publicKeyFile at a PEM file' },
    )
  } else if (publicKey !== null && publicKey !== '') {
    const where = [...at, jwt.publicKeyFile === undefined ? 'publicKey' : 'publicKeyFile']
    try {
      const key = createPublicKey(publicKey)
      keyAlgorithms = algorithmsFor(key)
      if (keyAlgorithms === null) {
        diagnostics.error(
          'BATON_INVALID_KEY',
          `a ${key.asymmetricKeyType ?? 'unknown'} key cannot verify JWTs`,
          where,
          { hint: 'use an RSA, EC (P-256/384/521) or Ed25519 public key' },
        )
      } else if ((key.asymmetricKeyDetails?.modulusLength ?? 2048) < 2048) {
        diagnostics.error(
          'BATON_INVALID_KEY',
          `the RSA key has ${key.asymmetricKeyDetails?.modulusLength} bits; JWT verification needs at least 2048`,
          where,
          { hint: 'issue tokens with a 2048-bit or larger RSA key' },
        )
      }
    } catch (err) {
      diagnostics.error('BATON_INVALID_KEY', `the JWT public key does not parse: ${(err as Error).message}`, where, {
        hint: 'give a PEM public key (-----BEGIN PUBLIC KEY-----) or certificate',
      })
    }
  }
  if (jwt.jwksUrl !== undefined) {
    jwksUrl = resolveEnv(jwt.jwksUrl, [...at, 'jwksUrl'], ctx)
    if (jwksUrl !== null && !/^https?:\/\/[^/]/.test(jwksUrl)) {
      diagnostics.error('BATON_INVALID_URL', `'${jwksUrl}' is not an http(s) URL`, [...at, 'jwksUrl'], {
        hint: 'e.g. https://auth.example.com/.well-known/jwks.json',
      })
    }
  }
  const symmetric = jwt.secret !== undefined
  // A static key verifies its own type's algorithms only; a JWKS may hold keys of every type.
  const fitting = symmetric ? HS : (keyAlgorithms ?? ASYMMETRIC)
  const algorithms = jwt.algorithms ?? fitting
  const misfit = algorithms.filter((a) => !fitting.includes(a))
  if (misfit.length > 0 && sources.length === 1) {
    // HS/RS confusion starts here: a public key must never be usable as an HMAC secret.
    diagnostics.error(
      'BATON_AUTH_CONFIG',
      `algorithm${misfit.length > 1 ? 's' : ''} ${misfit.join(', ')} do${misfit.length > 1 ? '' : 'es'} not fit ${symmetric ? 'a shared secret' : keyAlgorithms === null ? 'a public key' : 'this public key'}`,
      [...at, 'algorithms'],
      {
        hint: `this key verifies ${fitting.join(', ')}`,
      },
    )
  }
  return {
    secret,
    publicKey,
    jwksUrl,
    jwks: jwt.jwks,
    algorithms,
    issuer: jwt.issuer ?? null,
    audience: jwt.audience ?? null,
    requiredClaims: jwt.requiredClaims,
    clockTolerance: jwt.clockTolerance,
    maxAge: jwt.maxAge ?? null,
    cacheSize: jwt.cacheSize,
    scopesClaim: jwt.scopesClaim,
    rolesClaim: jwt.rolesClaim.split('.'),
  }
}

/** The JWS algorithms a public key can verify; null for a key type JWTs do not use. */
function algorithmsFor(key: KeyObject): readonly string[] | null {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512']
    case 'ed25519':
      return ['EdDSA', 'Ed25519']
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve
      return curve === 'prime256v1'
        ? ['ES256']
        : curve === 'secp384r1'
          ? ['ES384']
          : curve === 'secp521r1'
            ? ['ES512']
            : null
    }
    default:
      return null
  }
}

function compileApiKey(apiKey: NonNullable<GatewayAuthConfig['apiKey']>, at: string[], ctx: EdgeContext): ApiKeyPlan {
  const { diagnostics } = ctx
  if ((apiKey.header === undefined) === (apiKey.query === undefined)) {
    diagnostics.error('BATON_AUTH_CONFIG', 'apiKey needs exactly one of header and query', at, {
      key: true,
      hint: 'e.g. header: x-api-key',
    })
  }
  const keys: { name: string; key: string }[] = []
  for (const [name, value] of Object.entries(apiKey.keys ?? {})) {
    const key = resolveEnv(value, [...at, 'keys', name], ctx)
    if (key === null) continue
    if (!value.includes('${')) {
      diagnostics.warn(
        'BATON_SECRET_IN_CONFIG',
        `API key '${name}' is written in the config file`,
        [...at, 'keys', name],
        {
          hint: `read it from the environment: ${name}: \${env.${name.toUpperCase().replace(/\W/g, '_')}_KEY}, or use keysFile`,
        },
      )
    }
    if (key !== '') keys.push({ name, key })
  }
  let unreadable = false
  if (apiKey.keysFile !== undefined) {
    const text = readConfigFile(apiKey.keysFile, [...at, 'keysFile'], ctx)
    unreadable = text === null
    for (const [i, raw] of (text ?? '').split('\n').entries()) {
      const line = raw.trim()
      if (line === '' || line.startsWith('#')) continue
      const colon = line.indexOf(':')
      const name = colon === -1 ? `key-${i + 1}` : line.slice(0, colon).trim()
      const key = colon === -1 ? line : line.slice(colon + 1).trim()
      if (key !== '') keys.push({ name, key })
    }
  }
  const hint = 'add keys: { mobile-app: ${env.MOBILE_APP_KEY} } or keysFile: keys.txt'
  if (apiKey.keys === undefined && apiKey.keysFile === undefined) {
    diagnostics.error('BATON_AUTH_CONFIG', 'apiKey has no keys', at, { key: true, hint })
  } else if (keys.length === 0 && ctx.mode === 'dev') {
    diagnostics.warn(
      'BATON_DEV_SECRET',
      'apiKey has no keys (the variables or file it reads are empty): every API key is refused',
      at,
      { key: true, hint },
    )
  } else if (keys.length === 0 && ctx.mode === 'serve' && !unreadable) {
    diagnostics.error('BATON_AUTH_CONFIG', 'apiKey has no keys: the variables or file it reads are empty', at, {
      key: true,
      hint,
    })
  }
  return { header: apiKey.header?.toLowerCase() ?? null, query: apiKey.query ?? null, keys }
}

/** What an endpoint demands: null when public or when the gateway has no auth. */
export function compileEndpointAuth(
  auth: EndpointAuthConfig | undefined,
  gateway: GatewayAuthConfig | undefined,
  at: ConfigPath,
  diagnostics: Diagnostics,
): EndpointAuthPlan | null {
  if (auth === 'public') return null
  if (gateway === undefined) {
    if (auth !== undefined) {
      diagnostics.error(
        'BATON_AUTH_NOT_CONFIGURED',
        'this endpoint demands credentials but gateway.auth is not set',
        [...at, 'auth'],
        { key: true, hint: 'configure gateway.auth (jwt or apiKey)' },
      )
    }
    return null
  }
  const configured: AuthMethod[] = []
  if (gateway.jwt !== undefined) configured.push('jwt')
  if (gateway.apiKey !== undefined) configured.push('apiKey')
  const methods = auth?.methods ?? configured
  for (const [i, m] of methods.entries()) {
    if (!configured.includes(m)) {
      diagnostics.error(
        'BATON_AUTH_NOT_CONFIGURED',
        `${m} is not configured in gateway.auth`,
        [...at, 'auth', 'methods', i],
        { hint: `configured: ${configured.join(', ') || 'none'}` },
      )
    }
  }
  const scopes = auth?.scopes ?? gateway.scopes ?? []
  const roles = auth?.roles ?? gateway.roles ?? []
  if (!methods.includes('jwt') && methods.includes('apiKey') && scopes.length + roles.length > 0) {
    const where = auth?.scopes !== undefined || auth?.roles !== undefined ? [...at, 'auth'] : ['gateway', 'auth']
    diagnostics.error(
      'BATON_AUTH_CONFIG',
      'scopes and roles come from JWTs; an endpoint that takes API keys only can never grant them',
      where,
      {
        key: true,
        hint: 'accept jwt on this endpoint, or drop its scopes and roles (auth: { scopes: [] })',
      },
    )
  }
  return { methods, scopes, roles }
}

/** gateway.redis, resolved: the Redis every shared store uses. */
export function compileRedis(config: Config, ctx: EdgeContext): RedisSettings {
  const { url, timeout, prefix, breaker } = config.gateway.redis
  return { url: redisUrl(url, ['gateway', 'redis', 'url'], ctx), timeout, prefix, breaker: { ...breaker } }
}

/** A redis:// URL, its ${env.…} read now; reported at `path` when it is not one. */
function redisUrl(value: string, path: ConfigPath, ctx: EdgeContext): string {
  const url = resolveEnv(value, path, ctx) ?? value
  // `baton check` has warned that the variable is unset: the deploy environment is not the checker's.
  if (url === '' && ctx.mode === 'check') return url
  if (!/^rediss?:\/\//.test(url))
    ctx.diagnostics.error('BATON_INVALID_URL', `'${url}' is not a redis:// URL`, path, {
      hint: 'e.g. redis://127.0.0.1:6379',
    })
  return url
}

function compileRateLimit(config: Config, ctx: EdgeContext, shared: RedisSettings): RateLimitPlan | null {
  const overrides = Object.values(config.endpoints).some((e) => e.rateLimit !== undefined && e.rateLimit !== false)
  // An endpoint's own limit works without a gateway block: counted in memory.
  const rl = config.gateway.rateLimit ?? (overrides ? gatewayRateLimitSchema.parse({}) : undefined)
  if (rl === undefined) return null
  // gateway.rateLimit.redis overrides gateway.redis key by key; its URL is checked only where Redis is used.
  const own = rl.redis ?? {}
  const url =
    own.url === undefined
      ? shared.url
      : rl.store === 'redis'
        ? redisUrl(own.url, ['gateway', 'rateLimit', 'redis', 'url'], ctx)
        : (resolveEnv(own.url, ['gateway', 'rateLimit', 'redis', 'url'], ctx) ?? own.url)
  const limits = ['perUser', 'perIp', 'perEndpoint', 'global'] as const
  if (
    config.gateway.rateLimit !== undefined &&
    limits.every((k) => rl[k] === undefined) &&
    !overrides &&
    !limits.some((k) => ctx.invalidAt(['gateway', 'rateLimit', k]))
  ) {
    ctx.diagnostics.warn('BATON_NO_LIMITS', 'rateLimit sets no limit', ['gateway', 'rateLimit'], {
      key: true,
      hint: 'add perUser, perIp, perEndpoint or global, e.g. perIp: 500/min',
    })
  }
  if (rl.perUser !== undefined && config.gateway.auth === undefined) {
    ctx.diagnostics.warn(
      'BATON_NO_LIMITS',
      'perUser never applies without gateway.auth (requests have no user)',
      ['gateway', 'rateLimit', 'perUser'],
      { key: true, hint: 'configure gateway.auth, or limit perIp' },
    )
  }
  return {
    store: rl.store,
    redis: {
      url,
      timeout: own.timeout ?? shared.timeout,
      prefix: own.prefix ?? `${shared.prefix}:rl`,
      breaker: shared.breaker,
    },
    onStoreError: rl.onStoreError,
    perUser: rl.perUser ?? null,
    perIp: rl.perIp ?? null,
    perEndpoint: rl.perEndpoint ?? null,
    global: rl.global ?? null,
  }
}

const DEFAULT_EXPOSED = [
  'x-request-id',
  'baton-degraded',
  'retry-after',
  'ratelimit',
  'ratelimit-policy',
  'server-timing',
  'www-authenticate',
]

function compileCors(config: Config, ctx: EdgeContext): CorsPlan | null {
  const cors = config.gateway.cors
  if (cors === undefined) return null
  const at = ['gateway', 'cors']
  if (cors.origins === '*' && cors.credentials) {
    ctx.diagnostics.error(
      'BATON_CORS',
      'origins: * cannot be combined with credentials: true',
      [...at, 'credentials'],
      { hint: 'browsers refuse it; list the allowed origins instead' },
    )
  }
  if (cors.origins !== '*') {
    for (const [i, origin] of cors.origins.entries()) {
      if (!/^https?:\/\/(\*\.)?[^/*\s]+$/.test(origin)) {
        ctx.diagnostics.error('BATON_CORS', `'${origin}' is not an origin`, [...at, 'origins', i], {
          hint: 'write scheme://host[:port] without a path, e.g. https://app.example.com or https://*.example.com',
        })
      }
    }
  }
  // Browsers send origins lower-case and without a default port; written otherwise, an origin would never match.
  const origins =
    cors.origins === '*'
      ? '*'
      : cors.origins.map((o) => o.toLowerCase().replace(/^(https:\/\/[^/]+):443$|^(http:\/\/[^/]+):80$/, '$1$2'))
  const methods = cors.methods ?? [...new Set(Object.keys(config.endpoints).map((k) => k.split(' ')[0] as string))]
  const apiKeyHeader = config.gateway.auth?.apiKey?.header
  const headers = cors.headers ?? [
    'content-type',
    'authorization',
    'x-request-id',
    ...(apiKeyHeader === undefined ? [] : [apiKeyHeader.toLowerCase()]),
  ]
  return {
    origins,
    methods,
    headers,
    exposeHeaders: cors.exposeHeaders ?? DEFAULT_EXPOSED,
    credentials: cors.credentials,
    maxAge: cors.maxAge,
  }
}

function compileProxies(proxies: string[] | undefined, diagnostics: Diagnostics): string[] | null {
  if (proxies === undefined) return null
  for (const [i, p] of proxies.entries()) {
    const [address, bits, extra] = p.split('/')
    const family = isIP(address ?? '')
    const max = family === 6 ? 128 : 32
    if (family === 0 || extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= max))) {
      diagnostics.error(
        'BATON_INVALID_VALUE',
        `'${p}' is not an IP address or CIDR range`,
        ['gateway', 'trustedProxies', i],
        { hint: 'e.g. 10.0.0.0/8, 192.168.1.10 or fd00::/8' },
      )
    }
  }
  return proxies
}

/**
 * The config language, declared once. The validator (zod) and the editor JSON Schema
 * (schema/baton.schema.json, via z.toJSONSchema) both come from these declarations, and a
 * test checks the committed schema file against them.
 */
import { readFileSync } from 'node:fs'
import { z } from 'zod'
import { DURATION_HINT, DURATION_PATTERN, parseDuration, parseSize, SIZE_HINT, SIZE_PATTERN } from './units.ts'

/** The longest gateway.drainTimeout (timers cannot hold more than ~24 days, and nobody drains for hours). */
export const MAX_DRAIN_TIMEOUT = 3_600_000

export const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'] as const
const METHOD = `(?:${HTTP_METHODS.join('|')})`

/** `POST /summary`, `GET /users/{id}` */
export const ROUTE_KEY = new RegExp(`^${METHOD} /[^\\s]*$`)
/** `GET cart /carts/${request.body.cartId}`: method, service, path (the path may hold expressions with spaces). */
export const CALL_REQUEST = new RegExp(`^(${METHOD})\\s+([A-Za-z][\\w-]*)\\s+(/.*)$`)
export const SERVICE_NAME = /^[A-Za-z][\w-]*$/
/** Call names are roots in expressions, so they must be identifiers. */
export const CALL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

const POSITIVE_DURATION_HINT = 'must be more than 0: write a duration like 200ms, 2s, 1.5m or 1h'
/** Anything but a zero duration written with a unit (`0ms`, `0s`, `0.0m`…): where 0 makes no sense it is refused. */
const ZERO_DURATION = /^(?!0+(?:\.0+)?\s*(?:ms|s|m|h)$)/

/**
 * A duration: a string with a unit or a number of milliseconds. Never negative; 0 only where
 * `zero` says it means something (no leeway, no delay, a timeout turned off), else it is refused.
 */
function durationOf(zero: 'refused' | 'allowed') {
  const positive = zero === 'refused'
  const text = z.string().regex(new RegExp(DURATION_PATTERN), { error: DURATION_HINT })
  return z
    .union(
      [
        positive
          ? z.number().positive({ error: POSITIVE_DURATION_HINT })
          : z.number().nonnegative({ error: 'a duration cannot be negative' }),
        positive ? text.regex(ZERO_DURATION, { error: POSITIVE_DURATION_HINT }) : text,
      ],
      { error: DURATION_HINT },
    )
    .transform((v) => parseDuration(v) as number)
    .meta({
      description: positive
        ? 'Duration: 200ms, 2s, 1.5m, 1h, or a number of milliseconds; more than 0.'
        : 'Duration: 200ms, 2s, 1.5m, 1h, or a number of milliseconds; 0 allowed.',
    })
}

/** A duration where 0 makes no sense (a timeout, a window, an interval): 0 and negatives are refused. */
const duration = durationOf('refused')
/** A duration where 0 means something: no leeway, no delay, no cache, or (clientTimeouts) no limit. */
const durationOrZero = durationOf('allowed')

/** A duration with an upper bound, checked on what was written (so that the message quotes it). */
function durationAtMost(max: number, error: string) {
  return z
    .union(
      [
        z.number().nonnegative().max(max, { error }),
        z
          .string()
          .regex(new RegExp(DURATION_PATTERN), { error: DURATION_HINT })
          // Not a duration at all is the regex's to say.
          .refine((v) => (parseDuration(v) ?? 0) <= max, { error }),
      ],
      { error: DURATION_HINT },
    )
    .transform((v) => parseDuration(v) as number)
    .meta({ description: 'Duration: 200ms, 2s, 1.5m, 1h, or a number of milliseconds.' })
}

const size = z
  .union([z.number().int().nonnegative(), z.string().regex(new RegExp(SIZE_PATTERN, 'i'), { error: SIZE_HINT })], {
    error: SIZE_HINT,
  })
  .transform((v) => parseSize(v) as number)
  .meta({ description: 'Size: 512kb, 1mb, or a number of bytes.' })

const percent = z
  .union(
    [
      z.number().min(0).max(100),
      z
        .string()
        .regex(/^(?:100(?:\.0+)?|\d{1,2}(?:\.\d+)?)%$/, { error: 'write a percentage from 0% to 100%, like 99.9%' }),
    ],
    { error: 'write a percentage from 0% to 100%, like 99.9%' },
  )
  .meta({ description: 'Percentage, e.g. 99.95%.' })

const headerMap = z
  .record(
    z.string().regex(HEADER_NAME, { error: 'not a valid HTTP header name' }),
    z.union([z.string(), z.number(), z.boolean()]),
  )
  .meta({ description: 'Header name → value; values may contain ${…} expressions.' })

/** Any JSON value; strings may contain ${…} expressions. */
const template = z.unknown().meta({
  description:
    "Any JSON value. Strings may contain ${…} expressions; a string that is exactly one ${…} keeps the value's type.",
})

const expression = z
  .union([z.string(), z.boolean()])
  .meta({ description: 'An expression, with or without the surrounding ${…}.' })

export const RETRY_CONDITIONS = ['5xx', 'timeout', 'connect', 'network'] as const

/**
 * Encodings Baton compresses its answers with, preferred first: the cheapest for the same size.
 * Measured on the 66 KB posts-with-authors answer (all ~9.6 KB compressed), CPU per answer of
 * the gateway: zstd +0.9 ms, gzip +1.0 ms, br +3.8 ms (brotli's stream setup).
 */
export const COMPRESSIONS = ['zstd', 'gzip', 'br', 'deflate'] as const

export const retrySchema = z.strictObject({
  attempts: z.number().int().min(0).max(10).describe('Retries after the first try: attempts 2 means at most 3 tries.'),
  backoff: z
    .enum(['exponential', 'fixed'])
    .default('exponential')
    .describe('exponential: delay, 2×delay, 4×delay… with jitter, capped at maxDelay; fixed: delay every time.'),
  delay: durationOrZero.default(100).describe('First backoff delay (0: retry at once).'),
  maxDelay: duration.default(2000).describe('Cap of the exponential backoff.'),
  on: z
    .array(
      z.union([z.enum(RETRY_CONDITIONS), z.number().int().min(400).max(599)], {
        error: `retry on ${RETRY_CONDITIONS.join(', ')} or a status like 429`,
      }),
    )
    .default(['5xx', 'timeout', 'connect'])
    .describe(
      'What is retried: 5xx answers, timeouts, connection failures (connect: refused/unreachable, network: reset), or specific statuses.',
    ),
  budget: percent
    .default('20%')
    .describe(
      "Retries may add at most this share of the service's requests over the last 10 s (at least 10 retries per 10 s are always allowed).",
    ),
})

export const breakerSchema = z.strictObject({
  failures: z.number().int().positive().describe('Failures within the window that open the breaker.'),
  window: duration.describe('Rolling window in which failures are counted.'),
  openFor: duration.describe('How long the breaker stays open before it lets probes through.'),
  halfOpenProbes: z
    .number()
    .int()
    .positive()
    .default(1)
    .describe('Calls let through when half-open; all must succeed to close it.'),
})

export const bulkheadSchema = z.strictObject({
  maxConcurrent: z.number().int().positive().describe('Most calls in flight to the service at once.'),
  maxQueued: z
    .number()
    .int()
    .nonnegative()
    .default(0)
    .describe('Calls that may wait for a slot; beyond that a call fails at once.'),
})

export const probeSchema = z.strictObject({
  path: z
    .string()
    .regex(/^\//, { error: 'a probe path starts with /' })
    .describe('Path probed with GET, e.g. /healthz.'),
  interval: duration.default(10_000).describe('Time between probes.'),
  timeout: duration.default(1000).describe('Probe timeout.'),
})

const channel = z
  .string()
  .regex(/^[\w.-]+$/, { error: 'a channel is a name such as slack or pagerduty' })
  .describe('Where the alert goes (a `channel` label for Alertmanager routing), e.g. slack, pagerduty.')

const mockRoute = z.strictObject({
  status: z.number().int().min(100).max(599).default(200).describe('HTTP status the mock answers with.'),
  body: template.optional().describe('Response body; may use ${request.params…}, ${request.query…}, ${request.body…}.'),
  headers: headerMap.optional().describe('Response headers.'),
  latency: durationOrZero.optional().describe('Delay before answering.'),
})

const RATE = /^(\d+)\s*(?:req(?:uests)?\s*)?\/\s*(\d+(?:\.\d+)?)?\s*(ms|s|sec|second|m|min|minute|h|hour|d|day)$/
const RATE_HINT = 'write a rate like 100/min, 10/s, 5000/h or 100/10s'
const RATE_UNIT: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
}

/** `100/min` → { limit: 100, window: 60000 }. */
export function parseRate(text: string): { limit: number; window: number } | undefined {
  const m = RATE.exec(text.trim())
  if (m === null) return undefined
  const window = Number(m[2] ?? 1) * (RATE_UNIT[m[3] as string] as number)
  const limit = Number(m[1])
  return limit > 0 && window >= 1000 ? { limit, window } : undefined
}

const rate = z
  .string()
  // The pattern is for editors (it lands in the JSON Schema); the refinement also checks the window.
  .regex(RATE, { error: `${RATE_HINT} (a window of at least 1s)`, abort: true })
  .refine((v) => parseRate(v) !== undefined, { error: `${RATE_HINT} (a window of at least 1s)` })
  .transform((v) => parseRate(v) as { limit: number; window: number })
  .meta({ description: 'Requests per window: 100/min, 10/s, 5000/h, 100/10s.' })

const stringList = z.union([z.string(), z.array(z.string()).min(1)]).transform((v) => (typeof v === 'string' ? [v] : v))

export const JWT_ALGORITHMS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const

export const jwtSchema = z.strictObject({
  secret: z
    .string()
    .optional()
    .describe('Shared secret of HS256/384/512 tokens. Use ${env.NAME}; never write the secret itself in the file.'),
  publicKey: z
    .string()
    .optional()
    .describe('PEM public key (SPKI) or certificate of RS/PS/ES/EdDSA tokens, or ${env.NAME} holding one.'),
  publicKeyFile: z.string().optional().describe('File holding the PEM public key (relative to the config file).'),
  jwksUrl: z
    .string()
    .optional()
    .describe('JWKS URL of the issuer, e.g. https://auth.example.com/.well-known/jwks.json; keys are chosen by `kid`.'),
  jwks: z
    .strictObject({
      cacheFor: duration.default(600_000).describe('How long fetched keys are trusted before they are fetched again.'),
      cooldown: durationOrZero
        .default(30_000)
        .describe(
          'Least time between two fetches: an unknown kid refetches at most this often (0: every token with an unknown kid refetches).',
        ),
      timeout: duration.default(2000).describe('Timeout of a JWKS fetch.'),
    })
    .default({ cacheFor: 600_000, cooldown: 30_000, timeout: 2000 })
    .describe('JWKS cache.'),
  algorithms: z
    .array(z.enum(JWT_ALGORITHMS))
    .min(1)
    .optional()
    .describe(
      'Accepted algorithms. Default: HS256/384/512 with a secret, the asymmetric ones with a key or JWKS. Never none.',
    ),
  issuer: stringList.optional().describe('Accepted `iss` value(s).'),
  audience: stringList.optional().describe('Accepted `aud` value(s).'),
  requiredClaims: z.array(z.string()).default(['sub']).describe('Claims every token must carry.'),
  clockTolerance: durationOrZero.default(5000).describe('Leeway for exp, nbf and iat (0: none).'),
  maxAge: duration.optional().describe('Reject tokens issued longer ago than this (needs iat).'),
  cacheSize: z
    .number()
    .int()
    .min(0)
    .default(10_000)
    .describe(
      'Verified tokens remembered by their exact text, so that a token sent again is not verified again (its exp, nbf and maxAge still hold; with a JWKS, at most jwks.cacheFor). 0 turns it off.',
    ),
  scopesClaim: z
    .string()
    .default('scope')
    .describe('Claim holding scopes: a space-separated string or a list (scp is read too).'),
  rolesClaim: z
    .string()
    .default('roles')
    .describe('Claim holding roles, a dotted path for nested claims, e.g. realm_access.roles.'),
})

export const apiKeySchema = z.strictObject({
  header: z.string().regex(HEADER_NAME).optional().describe('Header carrying the key, e.g. x-api-key.'),
  query: z
    .string()
    .min(1)
    .optional()
    .describe('Query parameter carrying the key (keys in URLs end up in logs; prefer a header).'),
  keys: z
    .record(z.string(), z.string())
    .optional()
    .describe('Client name → key. Values should be ${env.NAME}. The name becomes auth.sub.'),
  keysFile: z
    .string()
    .optional()
    .describe('File of keys, one `name: key` (or a bare key) per line, # for comments (relative to the config file).'),
})

export const AUTH_METHODS = ['jwt', 'apiKey'] as const

/** RFC 6749 scope-token: printable ASCII without space, quote or backslash. */
const scopeToken = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, {
  error: 'a scope is one word of printable ASCII, without quotes or backslashes, e.g. orders:write',
})

const authRequirement = {
  scopes: z.array(scopeToken).optional().describe('Scopes a token must all hold, else 403.'),
  roles: z.array(z.string()).optional().describe('Roles of which a caller must hold at least one, else 403.'),
}

export const gatewayAuthSchema = z.strictObject({
  jwt: jwtSchema.optional().describe('Bearer JWTs in the Authorization header.'),
  apiKey: apiKeySchema.optional().describe('API keys in a header or query parameter.'),
  realm: z.string().optional().describe('realm of the WWW-Authenticate challenge (default: gateway.name).'),
  ...authRequirement,
})

export const endpointAuthSchema = z
  .union([
    z.literal('public').describe('No credentials asked; auth is null in expressions.'),
    z.strictObject({
      methods: z
        .array(z.enum(AUTH_METHODS))
        .min(1)
        .optional()
        .describe('Accepted credential kinds (default: every one configured).'),
      ...authRequirement,
    }),
  ])
  .meta({ description: "`public`, or what this endpoint demands instead of gateway.auth's scopes and roles." })

export const redisSchema = z.strictObject({
  url: z
    .string()
    .default('redis://127.0.0.1:6379')
    .describe('redis://[user:password@]host:port[/db]; may use ${env.NAME}.'),
  timeout: duration.default(200).describe('A Redis command that takes longer counts as a failure.'),
  prefix: z.string().min(1).default('baton').describe('Key prefix of every store (rate limits add :rl).'),
  breaker: z
    .strictObject({
      failures: z
        .number()
        .int()
        .positive()
        .default(3)
        .describe('Failed or timed-out commands in a row that make the gateway skip Redis.'),
      openFor: duration.default(5000).describe('How long Redis is skipped before one probe command is let through.'),
    })
    .default({ failures: 3, openFor: 5000 })
    .describe('Skips a Redis that keeps failing (down, frozen, overloaded) instead of waiting for it every time.'),
})

export const gatewayRateLimitSchema = z.strictObject({
  store: z
    .enum(['memory', 'redis'])
    .default('memory')
    .describe('memory: per gateway process; redis: one limit shared by every instance.'),
  redis: z
    .strictObject({
      url: z
        .string()
        .optional()
        .describe('redis://[user:password@]host:port[/db]; may use ${env.NAME} (default: gateway.redis.url).'),
      prefix: z.string().min(1).optional().describe("Key prefix (default: gateway.redis.prefix + ':rl')."),
      timeout: duration
        .optional()
        .describe('A Redis command that takes longer counts as a store failure (default: gateway.redis.timeout).'),
    })
    .optional()
    .describe('Overrides of gateway.redis for the rate limits alone.'),
  onStoreError: z
    .enum(['allow', 'reject'])
    .default('allow')
    .describe('When the store fails: allow (fail open, the default) or reject with 503.'),
  perUser: rate.optional().describe('Per JWT subject (or API key name): 429 + Retry-After.'),
  perIp: rate.optional().describe('Per client address: 429 + Retry-After.'),
  perEndpoint: rate.optional().describe('Per endpoint and caller (user, else address): 429 + Retry-After.'),
  global: rate.optional().describe('Whole gateway: 503 + Retry-After.'),
})

export const corsSchema = z.strictObject({
  origins: z
    .union([z.literal('*'), z.array(z.string().min(1)).min(1)])
    .describe(
      "Allowed origins: exact (https://app.example.com), with a wildcard subdomain (https://*.example.com), or '*' (quoted: a bare * is YAML syntax).",
    ),
  methods: z.array(z.enum(HTTP_METHODS)).optional().describe('Allowed methods (default: those of the endpoints).'),
  headers: z
    .array(z.string().regex(HEADER_NAME))
    .optional()
    .describe('Allowed request headers (default: content-type, authorization, x-request-id and the API key header).'),
  exposeHeaders: z
    .array(z.string().regex(HEADER_NAME))
    .optional()
    .describe(
      'Response headers scripts may read (default: x-request-id, baton-degraded, retry-after, ratelimit, ratelimit-policy, server-timing, www-authenticate).',
    ),
  credentials: z
    .boolean()
    .default(false)
    .describe('Allow cookies and Authorization from browsers (not with origins: *).'),
  maxAge: durationOrZero
    .default(600_000)
    .describe('How long browsers may cache a preflight answer (0: they do not cache it).'),
})

export const serviceAuthSchema = z
  .union([
    z.strictObject({ bearer: z.string().describe('Token sent as Authorization: Bearer …; use ${env.NAME}.') }),
    z.strictObject({
      apiKey: z.strictObject({
        header: z.string().regex(HEADER_NAME).default('x-api-key').describe('Header carrying the key.'),
        value: z.string().describe('The key; use ${env.NAME}.'),
      }),
    }),
    z.strictObject({
      oauth2: z.strictObject({
        tokenUrl: z.string().optional().describe('Token endpoint (client credentials grant); or give issuer.'),
        issuer: z
          .string()
          .optional()
          .describe(
            'Issuer URL: the token endpoint is read once from its /.well-known metadata (instead of tokenUrl).',
          ),
        clientId: z.string(),
        authMethod: z
          .enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt'])
          .optional()
          .describe(
            'How the client authenticates to the token endpoint (default: private_key_jwt with a private key, else client_secret_basic).',
          ),
        clientSecret: z
          .string()
          .optional()
          .describe('For client_secret_basic and client_secret_post; use ${env.NAME}.'),
        privateKey: z
          .string()
          .optional()
          .describe('PEM private key that signs the private_key_jwt assertion; use ${env.NAME}.'),
        privateKeyFile: z.string().optional().describe('The same, from a PEM file (relative to the config file).'),
        keyId: z
          .string()
          .optional()
          .describe('kid put in the assertion header, when the server needs it to pick the key.'),
        scope: z.string().optional().describe('Space-separated scopes asked for.'),
        audience: z.string().optional().describe('audience parameter (Auth0 and others).'),
        refreshBefore: durationOrZero
          .default(30_000)
          .describe('A token is renewed this long before it expires (and at least halfway through its life).'),
        timeout: duration.default(5000).describe('Timeout of a token request.'),
      }),
    }),
  ])
  .meta({
    description:
      'Credentials Baton sends to this service, and only to it: bearer, apiKey or oauth2 (client credentials).',
  })

export const tlsSchema = z.strictObject({
  cert: z.string().optional().describe('Client certificate (PEM file, relative to the config file) for mTLS.'),
  key: z.string().optional().describe('Private key of the client certificate (PEM file).'),
  passphrase: z.string().optional().describe('Passphrase of the key; use ${env.NAME}.'),
  ca: z
    .string()
    .optional()
    .describe("CA bundle (PEM file) that signs the service's certificate, when not a public CA."),
  servername: z.string().optional().describe('SNI and certificate name to check, when not the URL host.'),
})

/** A per-call cache: a fixed time to live, or the service's own Cache-Control (RFC 9111). */
const CACHE_HINT = "write cache: { ttl: 30s } (a fixed time) or cache: { honor: true } (the service's Cache-Control)"
const cacheTtl = duration.describe("Keep each 2xx answer this long, whatever the service's headers say.")
const cacheHonor = z
  .literal(true, { error: 'honor is true or left out' })
  .describe(
    "Follow the service's Cache-Control, Expires, ETag and Last-Modified (RFC 9111): store what it allows, as long as it says, and revalidate a stale answer.",
  )

export const callCacheSchema = z.union(
  [z.strictObject({ ttl: cacheTtl }), z.strictObject({ honor: cacheHonor }), z.literal(false)],
  { error: `${CACHE_HINT}, or false` },
)

export const serviceCacheSchema = z
  .strictObject({
    ttl: cacheTtl.optional(),
    honor: cacheHonor.optional(),
    maxSize: size
      .default(16 * 1024 * 1024)
      .describe("Memory the service's call cache may hold (parsed answers, estimated); least recently used go first."),
  })
  .refine((c) => c.ttl === undefined || c.honor === undefined, { error: `${CACHE_HINT}, not both` })

export const serviceSchema = z.strictObject({
  url: z.string().describe('Base URL, http(s)://host[:port][/prefix]. May use ${env.NAME}.'),
  timeout: duration
    .optional()
    .describe(
      "Default timeout of every call to this service. Without one, calls are bounded by their endpoint's deadline.",
    ),
  headers: headerMap
    .optional()
    .describe('Headers added to every call to this service; values may use ${env.NAME} and ${auth.…}.'),
  auth: serviceAuthSchema.optional(),
  tls: tlsSchema.optional().describe('TLS settings of an https service: mTLS client certificate, private CA.'),
  forwardHeaders: z
    .array(
      z
        .string()
        .regex(HEADER_NAME, { error: 'not a valid HTTP header name' })
        .regex(/^[^*]*$/, {
          error:
            'forwardHeaders names each header (* is not a wildcard: nothing is forwarded unless listed); write them out, e.g. [accept-language, x-tenant-id]',
        }),
    )
    .optional()
    .describe(
      'Client request headers passed on to this service. Nothing is forwarded unless listed (authorization and cookie included).',
    ),
  connections: z.number().int().positive().default(128).describe("Keep-alive connections in this service's pool."),
  maxResponseSize: size
    .default(10 * 1024 * 1024)
    .describe('Largest response body accepted from this service (decoded size included, when compressed).'),
  followRedirects: z
    .number()
    .int()
    .min(0)
    .max(10)
    .default(0)
    .describe(
      "Redirects (301, 302, 303, 307, 308) followed per call, on the service's own origin only; one to another origin fails the call. Default 0: a redirect fails a required call (502).",
    ),
  retry: retrySchema.optional().describe('Retry policy of every call to this service (per-call `retry` overrides it).'),
  coalesce: z
    .boolean()
    .optional()
    .describe(
      'Identical GET/HEAD calls in flight to this service at the same moment, from any requests, share one upstream request (default true; a call may say otherwise).',
    ),
  cache: serviceCacheSchema
    .optional()
    .describe(
      'Per-call cache of the GET/HEAD calls to this service, in memory (a call may say otherwise): { ttl: 30s } or { honor: true }; maxSize bounds it.',
    ),
  circuitBreaker: breakerSchema
    .optional()
    .describe('Circuit breaker, shared by every endpoint that calls the service.'),
  bulkhead: bulkheadSchema.optional().describe('Limit on calls in flight to the service.'),
  health: probeSchema.optional().describe('Active health probe; its results feed /health/ready and the breaker.'),
  latency: duration.optional().describe('Documented average latency (informational; shown by `baton plan`).'),
  alerts: z
    .strictObject({
      errorRate: percent.describe('Alert when more than this share of the calls to the service fail over the window.'),
      window: duration.default(300_000).describe('Window of the error rate (default 5m).'),
      channel: channel.default('pagerduty'),
    })
    .optional()
    .describe('`baton alerts`: the downstream error-rate alert of the template.'),
  sla: percent.optional().describe('Documented availability SLA (informational).'),
  owner: z.string().optional().describe('Team that owns the service (informational).'),
  description: z.string().optional().describe('Free text.'),
  mock: z
    .record(z.string().regex(ROUTE_KEY, { error: 'a mock route is "METHOD /path", e.g. "GET /carts/{id}"' }), mockRoute)
    .optional()
    .describe('Routes answered by `baton dev` instead of the real service.'),
})

const forEachSchema = z
  .union([z.string(), z.array(z.unknown())])
  .meta({ description: 'A list expression: one call is made per item (identical calls once).' })

const batchSchema = z
  .strictObject({
    itemKey: z
      .string()
      .min(1)
      .describe("The item's key, an expression over the item, e.g. ${post.userId}; items with the same key share it."),
    key: z
      .string()
      .min(1)
      .describe("The field of each result in the batch's answer (a JSON list) that holds its key, e.g. id."),
    size: z.number().int().positive().default(100).describe('Most keys in one batch (default 100).'),
  })
  .describe(
    "forEach: one request per batch of distinct item keys instead of one per item. The call's request reads the batch's keys as ${ids}; its answer, a list, is matched back to the items by key.",
  )

export const callSchema = z.strictObject({
  request: z
    .string()
    .regex(CALL_REQUEST, { error: 'write "METHOD service /path", e.g. "GET cart /carts/${request.params.id}"' })
    .describe('"METHOD service /path"; the path may contain ${…} expressions, percent-encoded.'),
  query: z
    .record(z.string(), template)
    .optional()
    .describe('Query parameters; null values are left out, lists repeat the key.'),
  headers: headerMap.optional().describe('Headers for this call.'),
  body: template.optional().describe('JSON request body.'),
  required: z
    .boolean()
    .default(true)
    .describe('If a required call fails the request fails; an optional call falls back.'),
  timeout: duration
    .optional()
    .describe(
      "Timeout for this call (default: the service's), per try. Always capped by the time left before the endpoint's deadline.",
    ),
  retry: z
    .union([retrySchema, z.literal(false)])
    .optional()
    .describe("Retry policy for this call, replacing the service's; false: never retry."),
  coalesce: z
    .boolean()
    .optional()
    .describe(
      "Share one upstream request with identical calls in flight (same method, path, body and headers): default the service's, which defaults to true for GET and HEAD. true on a POST declares it free of side effects.",
    ),
  cache: callCacheSchema
    .optional()
    .describe(
      "Answer identical calls from memory (same method, path, body and headers): { ttl: 30s }, { honor: true } (the service's Cache-Control), or false. Default the service's. GET and HEAD only.",
    ),
  idempotent: z
    .boolean()
    .optional()
    .describe(
      'Declares a POST/PATCH call safe to retry (only GET, HEAD, OPTIONS, PUT and DELETE are retried otherwise).',
    ),
  fallback: template
    .optional()
    .describe(
      'Value used when the call fails or is skipped (default null). Strings may be expressions. A call with a fallback is degradable.',
    ),
  when: expression.optional().describe('The call is made only when this is true; otherwise its value is its fallback.'),
  forEach: forEachSchema.optional(),
  as: z
    .string()
    .regex(CALL_NAME)
    .optional()
    .describe('Name of the current item inside a forEach call (default: item).'),
  concurrency: z.number().int().positive().default(8).describe('Most forEach calls in flight at once.'),
  maxItems: z
    .number()
    .int()
    .positive()
    .default(100)
    .describe(
      'forEach: the longest list the call accepts (default 100). A longer one is refused, not cut: from the request, 400; from a service, the call fails (a required call 502, an optional one its fallback).',
    ),
  itemFallback: template
    .optional()
    .describe(
      'forEach: the value of an item whose request failed (may read the item); the list keeps its length and order, and the answer is marked partial. Without it, one failed item fails the call.',
    ),
  into: z
    .string()
    .regex(CALL_NAME)
    .optional()
    .describe('forEach: instead of a list of results, the items each with its result under this key.'),
  batch: batchSchema.optional(),
})

/** A JSON Schema (draft 2020-12), compiled by ajv when the config loads. */
const requestSchema = z.record(z.string(), z.unknown()).meta({
  description:
    'A JSON Schema (draft 2020-12), e.g. { type: object, required: [cartId], properties: { cartId: { type: string, minLength: 1 } } }. Unknown keywords are errors.',
})

export const validateSchema = z.strictObject({
  params: requestSchema
    .optional()
    .describe(
      'Path parameters; strings, coerced to the types the schema declares (the coerced values are what expressions read).',
    ),
  query: requestSchema
    .optional()
    .describe(
      'Query parameters; strings (a list when repeated), coerced to the declared types (expressions read the coerced values).',
    ),
  headers: requestSchema
    .optional()
    .describe('Request headers, lower-case names; coerced to the declared types to be checked, forwarded as sent.'),
  body: requestSchema.optional().describe('The JSON body (null when there is none); not coerced.'),
})

/** An endpoint's response cache: the template's Caching Strategy row, as config (README "Caching"). */
export const endpointCacheSchema = z.strictObject({
  ttl: duration.describe('How long a stored answer is fresh: served without running the calls.'),
  staleWhileRevalidate: durationOrZero
    .default(0)
    .describe('After the TTL, how long a stale answer is still served while one background run refreshes it.'),
  staleIfError: durationOrZero
    .default(0)
    .describe('After the TTL, how long a stale answer is served instead of an error (5xx) of a fresh run.'),
  partialTtl: durationOrZero
    .default(0)
    .describe('TTL of a partial answer (an optional call fell back); 0, the default: partial answers are not stored.'),
  scope: z
    .enum(['public', 'user'])
    .optional()
    .describe(
      "public: one entry for every caller; user: one per caller (auth.sub). Required on an endpoint that takes credentials, so that nobody is served another user's answer by accident.",
    ),
  key: z
    .strictObject({
      query: z
        .union([z.boolean(), z.array(z.string().min(1)).min(1)])
        .default(true)
        .describe('Query parameters in the key: true (all, the default), false (none), or a list of names.'),
      headers: z
        .array(z.string().regex(HEADER_NAME, { error: 'not a valid HTTP header name' }))
        .default([])
        .describe('Request headers in the key (they are sent back in Vary), e.g. [accept-language].'),
    })
    .default({ query: true, headers: [] })
    .describe('The request parts that make an entry, besides the path (and the body of a POST).'),
  tags: z
    .array(z.string().min(1))
    .default([])
    .describe(
      'Tags of the entry, for invalidation: expressions over request and auth, e.g. "product:${request.params.id}".',
    ),
  store: z
    .enum(['memory', 'redis', 'tiered'])
    .optional()
    .describe(
      'memory (per process), redis (shared by every instance), tiered (memory in front of Redis). Default: gateway.cache.store.',
    ),
})

export const endpointSchema = z.strictObject({
  purpose: z.string().optional().describe('What client screen or workflow this serves.'),
  alerts: z
    .strictObject({
      p99: duration.describe("Alert when the endpoint's P99 latency is above this."),
      window: duration.default(300_000).describe('Window the P99 is computed over (default 5m).'),
      channel: channel.default('slack'),
    })
    .optional()
    .describe('`baton alerts`: the endpoint latency alert of the template.'),
  timeout: duration.optional().describe('Total deadline for the request (default: gateway.timeout).'),
  auth: endpointAuthSchema.optional(),
  rateLimit: z
    .union([
      z.strictObject({
        perEndpoint: rate.describe("This endpoint's limit per caller, instead of gateway.rateLimit.perEndpoint."),
      }),
      z.literal(false),
    ])
    .optional()
    .describe('false: no rate limits on this endpoint.'),
  status: z.number().int().min(200).max(299).default(200).describe('Status of a successful response.'),
  validate: validateSchema
    .optional()
    .describe(
      "JSON Schemas the request's params, query, headers and body must match; otherwise 400 VALIDATION_FAILED listing the problems, and no call is made.",
    ),
  calls: z
    .record(z.string(), callSchema)
    .default({})
    .describe('The downstream calls, by name. Order is derived from what each reads.'),
  response: template.optional().describe("The assembled response. Default: an object with every call's value by name."),
  cache: endpointCacheSchema
    .optional()
    .describe(
      'Response cache (GET and HEAD; a POST only when it declares one, keyed by its body). Errors are never cached.',
    ),
  coalesce: z
    .boolean()
    .optional()
    .describe(
      'Identical requests in flight at the same moment (same method, path, query, caller and headers, less the request id and trace context) share one run and its answer. Default: on for a GET endpoint without a response cache whose every call coalesces; false turns it off.',
    ),
})

export const gatewaySchema = z.strictObject({
  name: z.string().describe('Layer name, e.g. Checkout BFF.'),
  owner: z.string().optional().describe('Owning team (informational).'),
  description: z.string().optional(),
  basePath: z
    .string()
    .regex(/^(\/[^\s/]+)*$/, { error: 'a base path starts with / and has no trailing slash, e.g. /v1/checkout' })
    .default('')
    .describe('Prefix of every endpoint path.'),
  host: z.string().default('0.0.0.0').describe('Interface to listen on.'),
  port: z.number().int().min(0).max(65535).default(8080).describe('Port to listen on (0: any free port).'),
  timeout: duration.default(5000).describe('Default endpoint deadline.'),
  bodyLimit: size.default(1024 * 1024).describe('Largest request body accepted.'),
  maxHeaderSize: size
    .default(16 * 1024)
    .describe('Largest request head (request line and headers) accepted; beyond it 431.'),
  clientTimeouts: z
    .strictObject({
      headers: durationOrZero.default(10_000).describe('Time a client has to send the request head (0: no limit).'),
      body: durationOrZero
        .default(30_000)
        .describe('Time a client has to send the whole request, body included (0: no limit).'),
    })
    .default({ headers: 10_000, body: 30_000 })
    .describe('Slow clients get 408 and are disconnected.'),
  trustedProxies: z
    .array(z.string())
    .optional()
    .describe(
      'Addresses or CIDR ranges of proxies whose X-Forwarded-For is believed, e.g. [10.0.0.0/8]. Default: none, the socket address is the client.',
    ),
  auth: gatewayAuthSchema
    .optional()
    .describe('Inbound authentication; every endpoint needs credentials unless it says auth: public.'),
  rateLimit: gatewayRateLimitSchema.optional().describe("The template's rate limits."),
  admin: z
    .strictObject({
      token: z
        .string()
        .optional()
        .describe(
          'Bearer token that opens the admin endpoints (POST /admin/reload, POST /admin/cache/invalidate) on the main port; use ${env.NAME}. Without it they are served on the metrics port only (gateway.metrics.port), and not at all without one.',
        ),
    })
    .default({})
    .describe('The admin endpoints: reload and cache invalidation.'),
  cache: z
    .strictObject({
      store: z
        .enum(['memory', 'redis', 'tiered'])
        .default('memory')
        .describe("Endpoints' default store: memory, redis (gateway.redis) or tiered (memory in front of Redis)."),
      maxSize: size
        .default(64 * 1024 * 1024)
        .describe('Bytes the memory store may hold (least recently used out first).'),
      tagHeader: z
        .string()
        .regex(HEADER_NAME, { error: 'not a valid HTTP header name' })
        .optional()
        .describe(
          "Send an entry's tags in this header for CDN purges, e.g. Cache-Tag or Surrogate-Key. Default: none.",
        ),
      invalidation: z
        .strictObject({
          path: z
            .string()
            .regex(/^\//)
            .default('/admin/cache/invalidate')
            .describe('POST {"tags": [...]} here drops the entries with those tags, on every instance.'),
          token: z
            .string()
            .optional()
            .describe(
              'Bearer token that opens the invalidation webhook on the main port (use ${env.NAME}). Without it the webhook is served on the metrics port only, and not at all without one.',
            ),
        })
        .default({ path: '/admin/cache/invalidate' })
        .describe(
          'The invalidation webhook. Events: Baton listens on Redis channel <gateway.redis.prefix>:cache:invalidate.',
        ),
    })
    .default({ store: 'memory', maxSize: 64 * 1024 * 1024, invalidation: { path: '/admin/cache/invalidate' } })
    .describe('Response cache settings shared by the endpoints that declare `cache`.'),
  redis: redisSchema
    .default({ url: 'redis://127.0.0.1:6379', timeout: 200, prefix: 'baton', breaker: { failures: 3, openFor: 5000 } })
    .describe('The Redis of the shared stores (rate limits with store: redis, the response cache).'),
  cors: corsSchema.optional().describe('Cross-origin requests from browsers; preflights are answered by the gateway.'),
  retryAfter: duration.default(1000).describe('Retry-After sent with a 429 when the service gave none.'),
  release: z
    .string()
    .regex(/^[\w.:+-]{1,64}$/, { error: 'a release name is letters, digits and . _ : + -, at most 64 of them' })
    .optional()
    .describe(
      'The name of this version of the config, sent in baton-version while a canary runs and logged. Default: a digest of the file.',
    ),
  drainTimeout: durationAtMost(MAX_DRAIN_TIMEOUT, 'a drain timeout is at most 1h')
    .optional()
    .describe(
      'On SIGTERM/SIGINT (or close()), how long the requests in flight may take to finish before they are cut. Default: the longest endpoint timeout + 1s.',
    ),
  metrics: z
    .union([
      z.strictObject({
        path: z.string().regex(/^\//).default('/metrics').describe('Path of the Prometheus exposition.'),
        port: z
          .number()
          .int()
          .min(0)
          .max(65535)
          .optional()
          .describe('Serve metrics on this separate admin port instead of the main one.'),
        buckets: z
          .array(z.number().positive())
          .min(1)
          .optional()
          .describe('Histogram buckets in seconds (default: 0.5 ms to 30 s).'),
      }),
      z.literal(false),
    ])
    .default({ path: '/metrics' })
    .describe('Prometheus metrics; false turns them off.'),
  compression: z
    .union(
      [
        z.strictObject({
          threshold: size
            .default(1024)
            .describe('Answers smaller than this are sent as they are, error envelopes included (default 1kb).'),
          encodings: z
            .array(z.enum(COMPRESSIONS))
            .min(1)
            .default([...COMPRESSIONS])
            .describe(
              'Encodings offered to clients, preferred first when a client accepts several alike (default zstd, gzip, br, deflate: the cheapest first).',
            ),
        }),
        z.literal(false),
      ],
      { error: `write { threshold: 1kb, encodings: [${COMPRESSIONS.join(', ')}] } (encodings among those), or false` },
    )
    .default({ threshold: 1024, encodings: [...COMPRESSIONS] })
    .describe(
      'Compress answers for clients that accept it (Accept-Encoding), above a size threshold; false turns it off.',
    ),
  serverTiming: z
    .boolean()
    .default(false)
    .describe("Send a Server-Timing header with each call's duration and the total (always on under `baton dev`)."),
  tracing: z
    .union([
      z.strictObject({
        endpoint: z
          .string()
          .optional()
          .describe(
            'OTLP/HTTP traces URL, e.g. http://otel-collector:4318/v1/traces. Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://localhost:4318/v1/traces. May use ${env.NAME}.',
          ),
        serviceName: z
          .string()
          .min(1)
          .optional()
          .describe('service.name of the spans. Default: OTEL_SERVICE_NAME, else gateway.name.'),
        sampleRatio: z
          .number()
          .min(0)
          .max(1)
          .optional()
          .describe(
            "Share of new traces recorded, 0 to 1; a client's sampled flag is always followed. Default: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else 1.",
          ),
        headers: headerMap
          .optional()
          .describe('Headers sent with every export, e.g. an API key; values may use ${env.NAME}.'),
      }),
      z.literal(false),
    ])
    .optional()
    .describe(
      'OpenTelemetry traces over OTLP/HTTP; false turns them off. Default: on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, else off.',
    ),
  alerts: z
    .strictObject({
      breakerOpen: z
        .union([channel, z.literal(false)])
        .default('slack')
        .describe('Channel of the "circuit breaker open" alert for any service; false: none.'),
    })
    .default({ breakerOpen: 'slack' })
    .describe('`baton alerts`: gateway-wide alerts.'),
  accessLog: z
    .boolean()
    .default(true)
    .describe('Log a line per request at info level; false keeps only failed calls and lifecycle events.'),
  logLevel: z
    .enum(['debug', 'info', 'warn', 'error', 'silent'])
    .default('info')
    .describe('info: one line per request; warn: failed calls and breaker changes only.'),
  logFormat: z
    .enum(['baton', 'ecs'])
    .default('baton')
    .describe(
      "The JSON lines of `baton serve`: baton's own fields, or ecs (Elastic Common Schema: @timestamp, log.level, message, event.action, trace.id…) for log shippers.",
    ),
  logTime: z
    .enum(['epoch', 'iso'])
    .default('epoch')
    .describe('The `time` of a baton line: epoch ms, or an ISO 8601 string. ECS lines always carry an ISO @timestamp.'),
  health: z
    .union([
      z.strictObject({
        path: z.string().regex(/^\//).default('/health').describe('Liveness: always 200 while the process serves.'),
        readyPath: z
          .string()
          .regex(/^\//)
          .default('/health/ready')
          .describe(
            "Readiness: every service's status, breaker, error rate, latency; 503 when no endpoint can be served fully.",
          ),
        errorRate: percent
          .default('50%')
          .describe(
            'A service whose share of failed calls among its recent ones (the last 256) is over this is degraded, breaker or not; 100% turns this off.',
          ),
        minCalls: z
          .number()
          .int()
          .positive()
          .default(10)
          .describe('Recent calls a service needs before its error rate can make it degraded.'),
      }),
      z.literal(false),
    ])
    .default({ path: '/health', readyPath: '/health/ready', errorRate: '50%', minCalls: 10 })
    .describe('Health endpoints (outside basePath); false turns them off.'),
})

/** A candidate config served to a slice of the traffic, watched, and rolled back by itself (README "Canary releases"). */
export const canarySchema = z.strictObject({
  config: z.string().min(1).describe('The candidate config file, relative to this one.'),
  weight: percent.describe('Share of requests the candidate serves, e.g. 10%.'),
  sticky: z
    .string()
    .optional()
    .describe(
      'An expression over request and auth, e.g. "${auth.sub}": requests with the same value always go to the same version. Default: each request by chance.',
    ),
  header: z
    .string()
    .regex(HEADER_NAME, { error: 'not a valid HTTP header name' })
    .default('x-baton-canary')
    .describe('A request header that forces the version: always (the candidate) or never (the stable one).'),
  guard: z
    .strictObject({
      window: duration.default(60_000).describe('The sliding window the two versions are compared over.'),
      minRequests: z
        .number()
        .int()
        .positive()
        .default(50)
        .describe('Requests each version needs in the window before they are compared.'),
      errorRate: percent
        .default('5%')
        .describe(
          "How much worse the candidate's error rate (5xx answers, and failed required calls) may be than the stable one's, in points.",
        ),
      p99: percent
        .default('50%')
        .describe("How much slower the candidate's p99 may be than the stable one's, as a share of it."),
    })
    .default({ window: 60_000, minRequests: 50, errorRate: '5%', p99: '50%' })
    .describe('When the candidate is worse than the stable version by more than these margins, its weight goes to 0.'),
})

export const configSchema = z.strictObject({
  $schema: z.string().optional().describe('Path or URL of the JSON Schema, for editors.'),
  version: z.literal(1).describe('Config format version.'),
  gateway: gatewaySchema,
  canary: canarySchema.optional().describe('A candidate config released to a share of the traffic.'),
  services: z
    .record(
      z.string().regex(SERVICE_NAME, { error: 'a service name starts with a letter and has letters, digits, _ or -' }),
      serviceSchema,
    )
    .default({}),
  endpoints: z
    .record(
      z
        .string()
        .regex(ROUTE_KEY, { error: 'an endpoint is "METHOD /path", e.g. "POST /summary" or "GET /users/{id}"' }),
      endpointSchema,
    )
    .default({}),
})

export type Config = z.output<typeof configSchema>
export type ServiceConfig = z.output<typeof serviceSchema>
export type EndpointConfig = z.output<typeof endpointSchema>
export type CallConfig = z.output<typeof callSchema>
export type MockRouteConfig = z.output<typeof mockRoute>
export type RetryConfig = z.output<typeof retrySchema>
export type GatewayAuthConfig = z.output<typeof gatewayAuthSchema>
export type EndpointAuthConfig = z.output<typeof endpointAuthSchema>

/** The package's version: the schema's $id names it, so an editor can tell one schema from the next. */
const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version

export function jsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>
  const { $schema, ...rest } = schema
  return { $schema, $id: `urn:baton:config-schema:${VERSION}`, title: 'Baton config', ...rest }
}

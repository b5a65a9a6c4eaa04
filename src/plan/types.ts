/**
 * The compiled plan: immutable, built once from a validated config. The runtime only reads it.
 * Expressions are already closures; dependencies are index lists; nothing is parsed per request.
 */
import type { Evaluator } from '../expr/index.ts'
import type { RetryPlan, ServiceResilience } from './resilience.ts'
import type { RequestValidator } from './validation.ts'

export interface GatewayPlan {
  readonly name: string
  readonly serverTiming: boolean
  /** Prometheus exposition, or null when turned off. */
  readonly metrics: {
    readonly path: string
    readonly port: number | undefined
    readonly buckets: readonly number[] | undefined
  } | null
  readonly accessLog: boolean
  /** Answers compressed for clients that accept it, at or above `threshold` bytes; null when off. */
  readonly compression: { readonly threshold: number; readonly encodings: readonly string[] } | null
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent'
  /** The JSON lines' schema (src/observability/log.ts). */
  readonly logFormat: 'baton' | 'ecs'
  readonly logTime: 'epoch' | 'iso'
  /** OpenTelemetry traces, or null when off (the config's, else the OTEL_* environment's). */
  readonly tracing: TracingPlan | null
  /** Liveness and readiness, or null when turned off. */
  readonly health: {
    readonly path: string
    readonly readyPath: string
    /** 0..1: a service whose recent error rate is over this is degraded (1: never)… */
    readonly errorRate: number
    /** …once it has at least this many recent calls. */
    readonly minCalls: number
  } | null
  readonly owner: string | undefined
  readonly basePath: string
  readonly host: string
  readonly port: number
  readonly bodyLimit: number
  readonly retryAfterSeconds: number
  /** gateway.redis: the Redis of the shared stores (the response cache; the rate limits unless they say otherwise). */
  readonly redis: RedisSettings
  /** ms the requests in flight may take to finish when the gateway closes (gateway.drainTimeout). */
  readonly drainTimeout: number
  /** Who gets in, how much they may ask, browsers, slow and oversized clients. */
  readonly edge: EdgePlan
  readonly services: readonly ServicePlan[]
  readonly endpoints: readonly EndpointPlan[]
  /** Channel of the "circuit breaker open" alert (`baton alerts`), or null for none. */
  readonly breakerAlert: string | null
  readonly cache: GatewayCachePlan
  /** The admin endpoints' bearer token on the main port (gateway.admin.token), or null: admin port only. */
  readonly adminToken: string | null
  /** This version's name: gateway.release, else a digest of the config file. */
  readonly release: string
  /** The canary this config names, or null. */
  readonly canary: CanaryPlan | null
  /** Files the config is made of: the config file and every file it names (keys, certificates), absolute. */
  readonly files: readonly string[]
}

export interface TracingPlan {
  /** Where spans go (OTEL_TRACES_EXPORTER): over OTLP, to stdout, or nowhere (spans still made and propagated). */
  readonly exporters: readonly ('otlp' | 'console')[]
  /** OTLP encoding and transport (OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL). */
  readonly protocol: OtlpProtocol
  /** OTLP traces URL (http/*), or the collector's http(s)://host:port (grpc). */
  readonly endpoint: string
  /** service.name of the spans. */
  readonly serviceName: string
  /** Sent with every export (env already substituted). */
  readonly headers: Readonly<Record<string, string>>
  /** Share of new traces recorded, 0..1 (by trace id). */
  readonly sampleRatio: number
  /** Follow the sampled flag of a client's traceparent instead of the ratio (parentbased_* samplers). */
  readonly parentBased: boolean
  /** service.version when OTEL_SERVICE_VERSION sets it; else OTEL_RESOURCE_ATTRIBUTES', else Baton's version. */
  readonly serviceVersion: string | null
  /** Lower-case query parameter names whose values url.query and url.full show as REDACTED. */
  readonly redactedQuery: readonly string[]
}

export type OtlpProtocol = 'http/protobuf' | 'http/json' | 'grpc'

export interface ServicePlan {
  readonly name: string
  /**
   * Changes when anything about the service does (its config, a file it reads, a secret): a
   * reload keeps the client (pool, breaker, budget, stats) of a service whose fingerprint is the same.
   */
  readonly fingerprint: string
  /** scheme://host:port, one connection pool per service. */
  readonly origin: string
  /** Path prefix from the service URL ('' when none), prepended to every call's path. */
  readonly pathPrefix: string
  /** ms; Infinity when only the endpoint deadline bounds a call. */
  readonly timeout: number
  /** Static headers (env already substituted), lower-case names. */
  readonly headers: readonly (readonly [string, string])[]
  /** Client headers passed on, lower-case. */
  readonly forwardHeaders: readonly string[]
  readonly connections: number
  readonly maxResponseSize: number
  /** Same-origin redirects followed per call (0: none). */
  readonly followRedirects: number
  /** Header values that read `auth.…`, evaluated per request (lower-case names). */
  readonly authHeaders: readonly (readonly [string, Evaluator])[]
  /** The header carrying the service's own credentials (authorization, or its API key header); calls may not set it. */
  readonly credentialHeader: string | null
  /** OAuth2 client credentials fetched for this service only; static credentials are in `headers`. */
  readonly oauth2: OAuth2Plan | null
  /** TLS client settings (mTLS), PEM contents already read. */
  readonly tls: TlsPlan | null
  readonly latency: number | undefined
  readonly sla: string | undefined
  readonly owner: string | undefined
  readonly mock: readonly MockRoutePlan[] | null
  readonly resilience: ServiceResilience
  /** false: its GET and HEAD calls do not coalesce unless a call says so (null: they do). */
  readonly coalesce: boolean | null
  /** The cache of its GET and HEAD calls unless a call says otherwise (null: none). */
  readonly cache: CallCachePlan | null
  /** Bytes the service's call cache may hold (estimated size of the parsed answers). */
  readonly cacheMaxSize: number
  /** The template's error-rate alert (`baton alerts`), or null. */
  readonly alerts: { readonly errorRate: number; readonly window: number; readonly channel: string } | null
}

export interface AlertPlan {
  /** ms */
  readonly p99: number
  /** ms */
  readonly window: number
  readonly channel: string
}

export interface MockRoutePlan {
  readonly method: string
  /** Route path with `:param` segments. */
  readonly path: string
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly latency: number
  /** Evaluated with a context whose `request` root is the mock request. */
  readonly body: Evaluator | null
}

export interface EndpointPlan {
  /** As written: `POST /summary`. */
  readonly key: string
  /** Changes when anything about the endpoint does (its config, a default it inherits, a service it calls). */
  readonly fingerprint: string
  /**
   * The endpoint's one identity: `METHOD /full/route/:param` ('/' for an empty route). Metrics,
   * logs, traces, alerts and rate-limit keys all use it.
   */
  readonly label: string
  readonly method: string
  /** Full route (basePath + path) in the server's `:param` syntax. */
  readonly route: string
  /** The template's latency alert (`baton alerts`), or null. */
  readonly alerts: AlertPlan | null
  readonly params: readonly string[]
  readonly purpose: string | undefined
  readonly timeout: number
  /**
   * ms the calls may run: the deadline less a reserve (5 %, at most 50 ms) for assembling and
   * writing the answer, so that a partial answer reaches the client before its own timeout.
   */
  readonly callWindow: number
  /** Credentials this endpoint demands, or null when it is public (or the gateway has no auth). */
  readonly auth: EndpointAuthPlan | null
  /** This endpoint's per-caller limit, null for none; `exempt` when the endpoint opts out of every limit. */
  readonly rateLimit: { readonly exempt: boolean; readonly perEndpoint: Rate | null }
  readonly status: number
  /**
   * The endpoint's `validate` schemas, compiled: the request's problems, or null when it matches.
   * Run by the server once the caller is admitted and the body parsed, before any call. null when
   * the endpoint declares none.
   */
  readonly validate: RequestValidator | null
  readonly calls: readonly CallPlan[]
  /** Calls with no dependencies: started first. */
  readonly roots: readonly number[]
  /** Per call, the number of calls it waits for (copied per request). */
  readonly dependencyCounts: readonly number[]
  /** Number of shared body slots (see CallPlan.bodySlot). */
  readonly sharedBodies: number
  readonly response: Evaluator
  /** True when some expression reads the `calls` root (status/headers), so the runtime keeps them. */
  readonly readsCallMeta: boolean
  /** The response cache, or null when the endpoint has none. */
  readonly cache: EndpointCachePlan | null
  /** Identical requests in flight share one run (src/server/coalesce.ts). */
  readonly coalesce: boolean
}

export type CacheStoreKind = 'memory' | 'redis' | 'tiered'

/** An endpoint's response cache (README "Caching"). Durations in ms. */
export interface EndpointCachePlan {
  readonly ttl: number
  readonly staleWhileRevalidate: number
  readonly staleIfError: number
  /** TTL of a partial (degraded) answer; 0: not stored. */
  readonly partialTtl: number
  readonly scope: 'public' | 'user'
  /** Query parameters in the key: all, none, or these names (sorted). */
  readonly query: boolean | readonly string[]
  /** Request headers in the key, lower case, sorted. */
  readonly headers: readonly string[]
  /** A POST: keyed by its body as well. */
  readonly body: boolean
  /** Tag evaluators (read request and auth only); their sources, for `baton plan`. */
  readonly tags: readonly Evaluator[]
  readonly tagSources: readonly string[]
  readonly store: CacheStoreKind
}

/** Gateway-wide cache settings. */
export interface GatewayCachePlan {
  /** Bytes the memory store holds. */
  readonly maxSize: number
  /** Header carrying an answer's tags for CDN purges, lower case; null: none. */
  readonly tagHeader: string | null
  /** The invalidation webhook's path and, when it is open on the main port, its bearer token. */
  readonly invalidation: { readonly path: string; readonly token: string | null }
}

export interface CallPlan {
  readonly index: number
  readonly name: string
  readonly service: ServicePlan
  readonly method: string
  /** Evaluates to the encoded path (service prefix included) and query string. */
  readonly path: Evaluator
  readonly query: readonly (readonly [string, Evaluator])[] | null
  readonly headers: readonly (readonly [string, Evaluator])[] | null
  readonly body: Evaluator | null
  /**
   * Calls of one endpoint whose bodies are written identically (and are not forEach) share a
   * slot: the body is serialised once per request, as a hand-written BFF would. -1: not shared.
   */
  readonly bodySlot: number
  readonly required: boolean
  /** ms per try, Infinity when none: the deadline alone bounds the call. */
  readonly timeout: number
  /** Resolved retry policy (call's, else service's; null for non-idempotent methods unless declared safe). */
  readonly retry: RetryPlan | null
  /** Identical calls in flight share one upstream request (the call's choice, else the service's, else GET/HEAD). */
  readonly coalesce: boolean
  /** Answers kept in memory for identical calls (the call's choice, else the service's for GET/HEAD); null: none. */
  readonly cache: CallCachePlan | null
  readonly fallback: Evaluator | null
  readonly when: Evaluator | null
  readonly forEach: ForEachPlan | null
  /** Indexes of the calls this one reads (it starts when they have all finished). */
  readonly dependsOn: readonly number[]
  /** Indexes of the calls that read this one. */
  readonly dependents: readonly number[]
  /** Sequence level for `baton plan`: 1 for roots, 1 + max(level of dependencies) otherwise. */
  readonly level: number
  /** The call as written, for `baton plan`: its Service Call and Fallback columns. */
  readonly display: { readonly request: string; readonly fallback: string }
}

/** A per-call cache: each 2xx answer kept `ttl` ms, or as long as the service's own headers say (RFC 9111). */
export type CallCachePlan = { readonly honor: false; readonly ttl: number } | { readonly honor: true }

export interface ForEachPlan {
  readonly items: Evaluator
  /** The list's expression as written, for messages. */
  readonly source: string
  /** The list is read from the request alone: a bad one (not a list, too long) is the client's mistake (400). */
  readonly fromRequest: boolean
  readonly as: string
  readonly concurrency: number
  /** Longest list accepted; a longer one is refused, not cut. */
  readonly maxItems: number
  /** Value of an item whose request failed (reads the item); null: one failed item fails the call. */
  readonly itemFallback: Evaluator | null
  readonly into: string | null
  /** One request per batch of distinct item keys instead of one per item; null: one per item. */
  readonly batch: BatchPlan | null
}

/** A batched forEach: the call's request reads the batch's keys as `ids`; its answer is matched back by `key`. */
export interface BatchPlan {
  /** The item's key (reads the item). */
  readonly itemKey: Evaluator
  /** itemKey as written, for messages. */
  readonly source: string
  /** Field of each result in the answer (a list) that holds its key. */
  readonly key: string
  /** Most keys in one batch. */
  readonly size: number
}

export interface Rate {
  readonly limit: number
  /** ms */
  readonly window: number
}

export interface EdgePlan {
  readonly auth: AuthPlan | null
  readonly rateLimit: RateLimitPlan | null
  readonly cors: CorsPlan | null
  /** Addresses/CIDRs whose X-Forwarded-For is believed; null: the socket address is the client. */
  readonly trustedProxies: readonly string[] | null
  readonly maxHeaderSize: number
  readonly clientTimeouts: { readonly headers: number; readonly body: number }
}

export interface AuthPlan {
  readonly realm: string
  readonly jwt: JwtPlan | null
  readonly apiKey: ApiKeyPlan | null
}

export interface JwtPlan {
  /** HS* secret (env resolved). */
  readonly secret: string | null
  /** PEM public key or certificate. */
  readonly publicKey: string | null
  readonly jwksUrl: string | null
  readonly jwks: { readonly cacheFor: number; readonly cooldown: number; readonly timeout: number }
  readonly algorithms: readonly string[]
  readonly issuer: readonly string[] | null
  readonly audience: readonly string[] | null
  readonly requiredClaims: readonly string[]
  /** ms */
  readonly clockTolerance: number
  readonly maxAge: number | null
  /** Verified tokens remembered (0: none). */
  readonly cacheSize: number
  readonly scopesClaim: string
  readonly rolesClaim: readonly string[]
}

export interface ApiKeyPlan {
  /** Lower-case header name, or null when the key is read from the query. */
  readonly header: string | null
  readonly query: string | null
  readonly keys: readonly { readonly name: string; readonly key: string }[]
}

export type AuthMethod = 'jwt' | 'apiKey'

export interface EndpointAuthPlan {
  readonly methods: readonly AuthMethod[]
  readonly scopes: readonly string[]
  readonly roles: readonly string[]
}

export interface RateLimitPlan {
  readonly store: 'memory' | 'redis'
  /** gateway.redis with gateway.rateLimit.redis's keys over it (prefix: gateway.redis's + ':rl'). */
  readonly redis: RedisSettings
  readonly onStoreError: 'allow' | 'reject'
  readonly perUser: Rate | null
  readonly perIp: Rate | null
  readonly perEndpoint: Rate | null
  readonly global: Rate | null
}

/** The one Redis every shared store uses (gateway.redis), resolved: see src/store/redis.ts. */
export interface RedisSettings {
  /** redis://[user:password@]host:port[/db], ${env.…} resolved. */
  readonly url: string
  /** ms; a command slower than this is a failure. */
  readonly timeout: number
  /** Key prefix, e.g. 'baton'. */
  readonly prefix: string
  /** `failures` failed commands in a row → the store is skipped for `openFor` ms, then probed. */
  readonly breaker: { readonly failures: number; readonly openFor: number }
}

export interface CorsPlan {
  /** '*' or exact origins and wildcard patterns. */
  readonly origins: '*' | readonly string[]
  readonly methods: readonly string[]
  readonly headers: readonly string[]
  readonly exposeHeaders: readonly string[]
  readonly credentials: boolean
  /** ms */
  readonly maxAge: number
}

export interface OAuth2Plan {
  /** The token endpoint; null when it is discovered from `issuer`. */
  readonly tokenUrl: string | null
  /** Issuer whose /.well-known metadata names the token endpoint; null with `tokenUrl`. */
  readonly issuer: string | null
  readonly authMethod: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt'
  readonly clientId: string
  /** '' with private_key_jwt. */
  readonly clientSecret: string
  /** private_key_jwt: the PEM key and the JWS algorithm its type implies; null otherwise. */
  readonly signingKey: { readonly pem: string; readonly alg: SigningAlg; readonly keyId: string | null } | null
  readonly scope: string | null
  readonly audience: string | null
  readonly refreshBefore: number
  readonly timeout: number
}

/** The JWS algorithms of private_key_jwt assertions, one per supported key type. */
export type SigningAlg = 'RS256' | 'ES256' | 'ES384' | 'ES512' | 'Ed25519'

export interface TlsPlan {
  readonly cert: string | null
  readonly key: string | null
  readonly passphrase: string | null
  readonly ca: string | null
  readonly servername: string | null
}

/** A candidate config released to a share of the traffic (README "Canary releases"). */
export interface CanaryPlan {
  /** The candidate's config file, absolute. */
  readonly config: string
  /** 0..1 */
  readonly weight: number
  /** The sticky key (reads request and auth), or null: by chance. */
  readonly sticky: Evaluator | null
  /** Lower case. */
  readonly header: string
  readonly guard: {
    /** ms */
    readonly window: number
    readonly minRequests: number
    /** 0..1: points of error rate the candidate may have over the stable version. */
    readonly errorRate: number
    /** 0..: share by which the candidate's p99 may exceed the stable version's. */
    readonly p99: number
  }
}

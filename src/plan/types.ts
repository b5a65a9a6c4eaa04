/**
 * The compiled plan: immutable, built once from a validated config. The runtime only reads it.
 * Expressions are already closures; dependencies are index lists; nothing is parsed per request.
 */
import type { Evaluator } from '../expr/index.ts'
import type { CallConfig, MockRouteConfig } from '../config/schema.ts'
import type { RetryPlan, ServiceResilience } from './resilience.ts'

export interface GatewayPlan {
  readonly name: string
  readonly serverTiming: boolean
  /** Prometheus exposition, or null when turned off. */
  readonly metrics: { readonly path: string; readonly port: number | undefined; readonly buckets: readonly number[] | undefined } | null
  readonly accessLog: boolean
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent'
  /** OpenTelemetry traces, or null when off (the config's, else the OTEL_* environment's). */
  readonly tracing: TracingPlan | null
  /** Liveness and readiness paths, or null when turned off. */
  readonly health: { readonly path: string; readonly readyPath: string } | null
  readonly owner: string | undefined
  readonly basePath: string
  readonly host: string
  readonly port: number
  readonly bodyLimit: number
  readonly retryAfterSeconds: number
  readonly services: readonly ServicePlan[]
  readonly endpoints: readonly EndpointPlan[]
}

export interface TracingPlan {
  /** OTLP/HTTP traces URL. */
  readonly endpoint: string
  /** service.name of the spans. */
  readonly serviceName: string
  /** Sent with every export (env already substituted). */
  readonly headers: Readonly<Record<string, string>>
  /** Share of new traces recorded, 0..1 (by trace id). */
  readonly sampleRatio: number
  /** Follow the sampled flag of a client's traceparent instead of the ratio (parentbased_* samplers). */
  readonly parentBased: boolean
}

export interface ServicePlan {
  readonly name: string
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
  readonly latency: number | undefined
  readonly sla: string | undefined
  readonly owner: string | undefined
  readonly mock: readonly MockRoutePlan[] | null
  readonly resilience: ServiceResilience
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
  readonly config: MockRouteConfig
}

export interface EndpointPlan {
  /** As written: `POST /summary`. */
  readonly key: string
  readonly method: string
  /** Full route (basePath + path) in the server's `:param` syntax. */
  readonly route: string
  readonly params: readonly string[]
  readonly purpose: string | undefined
  readonly timeout: number
  readonly status: number
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
  readonly fallback: Evaluator | null
  readonly when: Evaluator | null
  readonly forEach: ForEachPlan | null
  /** Indexes of the calls this one reads (it starts when they have all finished). */
  readonly dependsOn: readonly number[]
  /** Indexes of the calls that read this one. */
  readonly dependents: readonly number[]
  /** Sequence level for `baton plan`: 1 for roots, 1 + max(level of dependencies) otherwise. */
  readonly level: number
  /** The call as written, for `baton plan` and error messages. */
  readonly config: CallConfig
}

export interface ForEachPlan {
  readonly items: Evaluator
  readonly as: string
  readonly concurrency: number
  readonly into: string | null
}

/**
 * The config language, declared once. The validator (zod) and the editor JSON Schema
 * (schema/baton.schema.json, via z.toJSONSchema) both come from these declarations, and a
 * test checks the committed schema file against them.
 */
import { z } from 'zod'
import { DURATION_HINT, DURATION_PATTERN, parseDuration, parseSize, SIZE_HINT, SIZE_PATTERN } from './units.ts'

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

const duration = z
  .union([z.number().nonnegative(), z.string().regex(new RegExp(DURATION_PATTERN), { error: DURATION_HINT })], { error: DURATION_HINT })
  .transform((v) => parseDuration(v) as number)
  .meta({ description: 'Duration: 200ms, 2s, 1.5m, 1h, or a number of milliseconds.' })

const size = z
  .union([z.number().int().nonnegative(), z.string().regex(new RegExp(SIZE_PATTERN, "i"), { error: SIZE_HINT })], { error: SIZE_HINT })
  .transform((v) => parseSize(v) as number)
  .meta({ description: 'Size: 512kb, 1mb, or a number of bytes.' })

const percent = z
  .union([z.number().min(0).max(100), z.string().regex(/^\d+(?:\.\d+)?%$/, { error: "write a percentage like 99.9%" })], { error: 'write a percentage like 99.9%' })
  .meta({ description: 'Percentage, e.g. 99.95%.' })

const headerMap = z
  .record(z.string().regex(HEADER_NAME, { error: 'not a valid HTTP header name' }), z.union([z.string(), z.number(), z.boolean()]))
  .meta({ description: 'Header name → value; values may contain ${…} expressions.' })

/** Any JSON value; strings may contain ${…} expressions. */
const template = z.unknown().meta({ description: 'Any JSON value. Strings may contain ${…} expressions; a string that is exactly one ${…} keeps the value\'s type.' })

const expression = z
  .union([z.string(), z.boolean()])
  .meta({ description: 'An expression, with or without the surrounding ${…}.' })

export const RETRY_CONDITIONS = ['5xx', 'timeout', 'connect', 'network'] as const

export const retrySchema = z.strictObject({
  attempts: z.number().int().min(0).max(10).describe('Retries after the first try: attempts 2 means at most 3 tries.'),
  backoff: z.enum(['exponential', 'fixed']).default('exponential').describe('exponential: delay, 2×delay, 4×delay… with jitter, capped at maxDelay; fixed: delay every time.'),
  delay: duration.default(100).describe('First backoff delay.'),
  maxDelay: duration.default(2000).describe('Cap of the exponential backoff.'),
  on: z.array(z.union([z.enum(RETRY_CONDITIONS), z.number().int().min(400).max(599)], { error: `retry on ${RETRY_CONDITIONS.join(', ')} or a status like 429` }))
    .default(['5xx', 'timeout', 'connect'])
    .describe('What is retried: 5xx answers, timeouts, connection failures (connect: refused/unreachable, network: reset), or specific statuses.'),
  budget: percent.default('20%').describe('Retries may add at most this share of the service\'s requests over the last 10 s (at least 10 retries per 10 s are always allowed).'),
})

export const breakerSchema = z.strictObject({
  failures: z.number().int().positive().describe('Failures within the window that open the breaker.'),
  window: duration.describe('Rolling window in which failures are counted.'),
  openFor: duration.describe('How long the breaker stays open before it lets probes through.'),
  halfOpenProbes: z.number().int().positive().default(1).describe('Calls let through when half-open; all must succeed to close it.'),
})

export const bulkheadSchema = z.strictObject({
  maxConcurrent: z.number().int().positive().describe('Most calls in flight to the service at once.'),
  maxQueued: z.number().int().nonnegative().default(0).describe('Calls that may wait for a slot; beyond that a call fails at once.'),
})

export const probeSchema = z.strictObject({
  path: z.string().regex(/^\//, { error: 'a probe path starts with /' }).describe('Path probed with GET, e.g. /healthz.'),
  interval: duration.default(10_000).describe('Time between probes.'),
  timeout: duration.default(1000).describe('Probe timeout.'),
})

const channel = z.string().regex(/^[\w.-]+$/, { error: 'a channel is a name such as slack or pagerduty' })
  .describe('Where the alert goes (a `channel` label for Alertmanager routing), e.g. slack, pagerduty.')

const mockRoute = z.strictObject({
  status: z.number().int().min(100).max(599).default(200).describe('HTTP status the mock answers with.'),
  body: template.optional().describe('Response body; may use ${request.params…}, ${request.query…}, ${request.body…}.'),
  headers: headerMap.optional().describe('Response headers.'),
  latency: duration.optional().describe('Delay before answering.'),
})

export const serviceSchema = z.strictObject({
  url: z.string().describe('Base URL, http(s)://host[:port][/prefix]. May use ${env.NAME}.'),
  timeout: duration.optional().describe('Default timeout of every call to this service. Without one, calls are bounded by their endpoint\'s deadline.'),
  headers: headerMap.optional().describe('Headers added to every call to this service.'),
  forwardHeaders: z.array(z.string().regex(HEADER_NAME)).optional().describe('Client request headers passed on to this service. Nothing is forwarded unless listed.'),
  connections: z.number().int().positive().default(128).describe('Keep-alive connections in this service\'s pool.'),
  maxResponseSize: size.default(10 * 1024 * 1024).describe('Largest response body accepted from this service.'),
  retry: retrySchema.optional().describe('Retry policy of every call to this service (per-call `retry` overrides it).'),
  circuitBreaker: breakerSchema.optional().describe('Circuit breaker, shared by every endpoint that calls the service.'),
  bulkhead: bulkheadSchema.optional().describe('Limit on calls in flight to the service.'),
  health: probeSchema.optional().describe('Active health probe; its results feed /health/ready and the breaker.'),
  latency: duration.optional().describe('Documented average latency (informational; shown by `baton plan`).'),
  alerts: z.strictObject({
    errorRate: percent.describe('Alert when more than this share of the calls to the service fail over the window.'),
    window: duration.default(300_000).describe('Window of the error rate (default 5m).'),
    channel: channel.default('pagerduty'),
  }).optional().describe('`baton alerts`: the downstream error-rate alert of the template.'),
  sla: percent.optional().describe('Documented availability SLA (informational).'),
  owner: z.string().optional().describe('Team that owns the service (informational).'),
  description: z.string().optional().describe('Free text.'),
  mock: z.record(z.string().regex(ROUTE_KEY, { error: 'a mock route is "METHOD /path", e.g. "GET /carts/{id}"' }), mockRoute).optional()
    .describe('Routes answered by `baton dev` instead of the real service.'),
})

const forEachSchema = z.union([z.string(), z.array(z.unknown())])
  .meta({ description: 'A list expression: one call is made per item (identical calls once).' })

export const callSchema = z.strictObject({
  request: z.string().regex(CALL_REQUEST, { error: 'write "METHOD service /path", e.g. "GET cart /carts/${request.params.id}"' })
    .describe('"METHOD service /path"; the path may contain ${…} expressions, percent-encoded.'),
  query: z.record(z.string(), template).optional().describe('Query parameters; null values are left out, lists repeat the key.'),
  headers: headerMap.optional().describe('Headers for this call.'),
  body: template.optional().describe('JSON request body.'),
  required: z.boolean().default(true).describe('If a required call fails the request fails; an optional call falls back.'),
  timeout: duration.optional().describe('Timeout for this call (default: the service\'s), per try. Always capped by the time left before the endpoint\'s deadline.'),
  retry: z.union([retrySchema, z.literal(false)]).optional().describe('Retry policy for this call, replacing the service\'s; false: never retry.'),
  idempotent: z.boolean().optional().describe('Declares a POST/PATCH call safe to retry (only GET, HEAD, OPTIONS, PUT and DELETE are retried otherwise).'),
  fallback: template.optional().describe('Value used when the call fails or is skipped (default null). Strings may be expressions. A call with a fallback is degradable.'),
  when: expression.optional().describe('The call is made only when this is true; otherwise its value is its fallback.'),
  forEach: forEachSchema.optional(),
  as: z.string().regex(CALL_NAME).optional().describe('Name of the current item inside a forEach call (default: item).'),
  concurrency: z.number().int().positive().default(8).describe('Most forEach calls in flight at once.'),
  into: z.string().regex(CALL_NAME).optional().describe('forEach: instead of a list of results, the items each with its result under this key.'),
})

export const endpointSchema = z.strictObject({
  purpose: z.string().optional().describe('What client screen or workflow this serves.'),
  alerts: z.strictObject({
    p99: duration.describe('Alert when the endpoint\'s P99 latency is above this.'),
    window: duration.default(300_000).describe('Window the P99 is computed over (default 5m).'),
    channel: channel.default('slack'),
  }).optional().describe('`baton alerts`: the endpoint latency alert of the template.'),
  timeout: duration.optional().describe('Total deadline for the request (default: gateway.timeout).'),
  status: z.number().int().min(200).max(299).default(200).describe('Status of a successful response.'),
  calls: z.record(z.string(), callSchema).default({}).describe('The downstream calls, by name. Order is derived from what each reads.'),
  response: template.optional().describe('The assembled response. Default: an object with every call\'s value by name.'),
})

export const gatewaySchema = z.strictObject({
  name: z.string().describe('Layer name, e.g. Checkout BFF.'),
  owner: z.string().optional().describe('Owning team (informational).'),
  description: z.string().optional(),
  basePath: z.string().regex(/^(\/[^\s/]+)*$/, { error: 'a base path starts with / and has no trailing slash, e.g. /v1/checkout' }).default('').describe('Prefix of every endpoint path.'),
  host: z.string().default('0.0.0.0').describe('Interface to listen on.'),
  port: z.number().int().min(0).max(65535).default(8080).describe('Port to listen on (0: any free port).'),
  timeout: duration.default(5000).describe('Default endpoint deadline.'),
  bodyLimit: size.default(1024 * 1024).describe('Largest request body accepted.'),
  retryAfter: duration.default(1000).describe('Retry-After sent with a 429 when the service gave none.'),
  metrics: z.union([z.strictObject({
    path: z.string().regex(/^\//).default('/metrics').describe('Path of the Prometheus exposition.'),
    port: z.number().int().min(0).max(65535).optional().describe('Serve metrics on this separate admin port instead of the main one.'),
    buckets: z.array(z.number().positive()).min(1).optional().describe('Histogram buckets in seconds (default: 0.5 ms to 30 s).'),
  }), z.literal(false)]).default({ path: '/metrics' }).describe('Prometheus metrics; false turns them off.'),
  serverTiming: z.boolean().default(false).describe('Send a Server-Timing header with each call\'s duration and the total (always on under `baton dev`).'),
  tracing: z.union([z.strictObject({
    endpoint: z.string().optional().describe('OTLP/HTTP traces URL, e.g. http://otel-collector:4318/v1/traces. Default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://localhost:4318/v1/traces. May use ${env.NAME}.'),
    serviceName: z.string().min(1).optional().describe('service.name of the spans. Default: OTEL_SERVICE_NAME, else gateway.name.'),
    sampleRatio: z.number().min(0).max(1).optional().describe('Share of new traces recorded, 0 to 1; a client\'s sampled flag is always followed. Default: OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, else 1.'),
    headers: headerMap.optional().describe('Headers sent with every export, e.g. an API key; values may use ${env.NAME}.'),
  }), z.literal(false)]).optional().describe('OpenTelemetry traces over OTLP/HTTP; false turns them off. Default: on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, else off.'),
  alerts: z.strictObject({
    breakerOpen: z.union([channel, z.literal(false)]).default('slack').describe('Channel of the "circuit breaker open" alert for any service; false: none.'),
  }).default({ breakerOpen: 'slack' }).describe('`baton alerts`: gateway-wide alerts.'),
  accessLog: z.boolean().default(true).describe('Log a line per request at info level; false keeps only failed calls and lifecycle events.'),
  logLevel: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info').describe('info: one line per request; warn: failed calls and breaker changes only.'),
  health: z.union([z.strictObject({
    path: z.string().regex(/^\//).default('/health').describe('Liveness: always 200 while the process serves.'),
    readyPath: z.string().regex(/^\//).default('/health/ready').describe('Readiness: every service\'s breaker, error rate, latency; 503 when no endpoint can be served fully.'),
  }), z.literal(false)]).default({ path: '/health', readyPath: '/health/ready' }).describe('Health endpoints (outside basePath); false turns them off.'),
})

export const configSchema = z.strictObject({
  $schema: z.string().optional().describe('Path or URL of the JSON Schema, for editors.'),
  version: z.literal(1).describe('Config format version.'),
  gateway: gatewaySchema,
  services: z.record(z.string().regex(SERVICE_NAME, { error: 'a service name starts with a letter and has letters, digits, _ or -' }), serviceSchema).default({}),
  endpoints: z.record(z.string().regex(ROUTE_KEY, { error: 'an endpoint is "METHOD /path", e.g. "POST /summary" or "GET /users/{id}"' }), endpointSchema).default({}),
})

export type Config = z.output<typeof configSchema>
export type ServiceConfig = z.output<typeof serviceSchema>
export type EndpointConfig = z.output<typeof endpointSchema>
export type CallConfig = z.output<typeof callSchema>
export type MockRouteConfig = z.output<typeof mockRoute>
export type RetryConfig = z.output<typeof retrySchema>

export function jsonSchema (): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>
  return { ...schema, title: 'Baton config' }
}

/**
 * `GET /health` (liveness: 200 while the process serves) and `GET /health/ready` (every
 * service's status — ok, degraded or down — breaker state, recent error rate, p50/p95 latency,
 * calls in flight, last failure; overall ok / degraded / down, 503 when no endpoint can be
 * served fully; the rate-limit store; draining, 503, once the gateway is shutting down), plus
 * the optional active probes that feed the same state.
 */
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { RateLimits } from '../edge/ratelimit.ts'
import type { GatewayPlan } from '../plan/types.ts'
import type { ServiceSnapshot } from '../policies/stats.ts'
import type { ServiceClient } from '../upstream/client.ts'
import { countsAgainstService, toCallError } from '../upstream/failure.ts'
import { ACCEPT_ENCODING } from '../upstream/http.ts'
import { CALL_TIMEOUT } from '../upstream/stages/deadline.ts'
import { failureLabel } from '../upstream/stages/stats.ts'

export type Readiness = 'ok' | 'degraded' | 'down' | 'draining'

export interface ServiceHealth extends ServiceSnapshot {
  /**
   * down: its breaker is open (calls to it fail at once). degraded: its breaker is half-open,
   * its last probe failed, or its recent error rate is over gateway.health.errorRate (over at
   * least minCalls calls), breaker or not. ok otherwise.
   */
  status: 'ok' | 'degraded' | 'down'
  breaker: 'closed' | 'open' | 'half-open' | null
  probe: { ok: boolean; at: string } | null
}

export interface ReadyReport {
  status: Readiness
  services: Record<string, ServiceHealth>
  /** The rate-limit store, when limits are configured. */
  rateLimits?: { store: 'memory' | 'redis'; up: boolean }
}

/** Last result of each service's active probe. */
export type ProbeResults = Map<string, { ok: boolean; at: string }>

export function readiness(
  plan: GatewayPlan,
  clients: ReadonlyMap<string, ServiceClient>,
  probes: ProbeResults,
  limits: RateLimits | null = null,
  draining = false,
): ReadyReport {
  const services: Record<string, ServiceHealth> = {}
  const unavailable = new Set<string>()
  const errorRate = plan.health?.errorRate ?? 1
  const minCalls = plan.health?.minCalls ?? Infinity
  let degraded = false
  for (const [name, client] of clients) {
    const breaker = client.breaker?.state ?? null
    const probe = probes.get(name) ?? null
    const stats = client.stats.snapshot()
    const status: Readiness =
      breaker === 'open'
        ? 'down'
        : breaker === 'half-open' ||
            (probe !== null && !probe.ok) ||
            (stats.calls >= minCalls && stats.errorRate > errorRate)
          ? 'degraded'
          : 'ok'
    if (status === 'down') unavailable.add(name)
    if (status !== 'ok') degraded = true
    services[name] = { status, breaker, probe, ...stats }
  }
  // A rate-limit store that is down is degraded service (limits not applied), or, with onStoreError: reject, no service at all for limited endpoints.
  const storeUp = limits?.storeUp ?? true
  const refusing = !storeUp && plan.edge.rateLimit?.onStoreError === 'reject'
  if (!storeUp) degraded = true
  // An endpoint is served fully unless a required call goes to a service whose breaker is open.
  const servable = plan.endpoints.filter(
    (e) => !e.calls.some((c) => c.required && unavailable.has(c.service.name)) && !(refusing && !e.rateLimit.exempt),
  )
  const status: Readiness = draining
    ? 'draining'
    : plan.endpoints.length > 0 && servable.length === 0
      ? 'down'
      : degraded
        ? 'degraded'
        : 'ok'
  const rl = plan.edge.rateLimit
  // Without a RateLimits (baton dev without --rate-limits), no limit is applied and there is no store to report.
  return {
    status,
    services,
    ...(rl === null || limits === null ? {} : { rateLimits: { store: rl.store, up: storeUp } }),
  }
}

/** What readiness reports on: the generation being served now. */
export interface Serving {
  readonly plan: GatewayPlan
  readonly clients: ReadonlyMap<string, ServiceClient>
  readonly limits: RateLimits | null
}

export function registerHealth(
  server: FastifyInstance,
  plan: GatewayPlan,
  serving: () => Serving,
  probes: ProbeResults,
  drain: { readonly draining: boolean },
): void {
  const paths = plan.health
  if (paths === null) return
  server.get(paths.path, { config: { label: `GET ${paths.path}` } }, async (_req, reply) =>
    reply.code(200).header('cache-control', 'no-store').send({ status: 'ok' }),
  )
  server.get(paths.readyPath, { config: { label: `GET ${paths.readyPath}` } }, async (_req, reply) => {
    const now = serving()
    const report = readiness(now.plan, now.clients, probes, now.limits, drain.draining)
    return reply
      .code(report.status === 'down' || report.status === 'draining' ? 503 : 200)
      .header('cache-control', 'no-store')
      .send(report)
  })
}

/** Starts each service's active probe; returns a function that stops them all. */
export function startProbes(
  clients: ReadonlyMap<string, ServiceClient>,
  probes: ProbeResults,
  logger?: Logger,
): () => void {
  const timers: NodeJS.Timeout[] = []
  for (const [name, client] of clients) {
    const probe = client.service.resilience.probe
    if (probe === null) continue
    const run = async (): Promise<void> => {
      const started = performance.now()
      let failure: string | null = null
      // A probe that does not answer in time has timed out, as a call would (AbortSignal.timeout would make it an abort).
      const controller = new AbortController()
      const timer = setTimeout(() => controller.abort(CALL_TIMEOUT), probe.timeout)
      try {
        await client.transport({
          method: 'GET',
          path: client.service.pathPrefix + probe.path,
          headers: { 'accept-encoding': ACCEPT_ENCODING },
          body: null,
          signal: controller.signal,
        })
      } catch (err) {
        // The same rule as for calls: a 4xx says the service is up; a 5xx, a timeout, a refused connection that it is not.
        const error = toCallError(err)
        if (countsAgainstService(error, true)) failure = failureLabel(error.kind, error.status)
      } finally {
        clearTimeout(timer)
      }
      client.stats.record(performance.now() - started, failure)
      const previous = probes.get(name)
      probes.set(name, { ok: failure === null, at: new Date().toISOString() })
      // A dead service opens its breaker before real traffic has to find out.
      if (failure !== null) client.breaker?.failure()
      if (previous?.ok !== (failure === null))
        logger?.[failure === null ? 'info' : 'warn'](
          { event: 'probe', service: name, ok: failure === null, failure },
          `${name} health probe ${failure === null ? 'ok' : `failed: ${failure}`}`,
        )
    }
    const tick = (): void => {
      void run()
    }
    tick()
    const timer = setInterval(tick, probe.interval)
    timer.unref()
    timers.push(timer)
  }
  return () => {
    for (const t of timers) clearInterval(t)
  }
}

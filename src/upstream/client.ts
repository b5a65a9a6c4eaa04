/**
 * A service's client: its share of a keep-alive connection pool, its policies (breaker,
 * bulkhead, retry budget, stats), and the pipeline every try of a call to it goes through,
 * composed once here.
 */
import { rootCertificates } from 'node:tls'
import { Agent, Pool } from 'undici'
import type { CallPlan, ServicePlan, TlsPlan } from '../plan/types.ts'
import { type BreakerState, CircuitBreaker } from '../policies/breaker.ts'
import { Bulkhead } from '../policies/bulkhead.ts'
import { type Clock, systemClock } from '../policies/clock.ts'
import { RetryBudget, ServiceStats } from '../policies/stats.ts'
import { type DispatcherFor, OAuth2Tokens } from './credentials.ts'
import { httpSend } from './http.ts'
import { compose, type Send, type Stage, type Transport, type Outgoing, type Try } from './pipeline.ts'
import { breakerStage } from './stages/breaker.ts'
import { bulkheadStage } from './stages/bulkhead.ts'
import { type CacheLookup, cacheStage } from './stages/cache.ts'
import { coalesceStage } from './stages/coalesce.ts'
import { credentialsStage } from './stages/credentials.ts'
import { deadlineStage } from './stages/deadline.ts'
import { observeStage } from './stages/observe.ts'
import { redirectStage } from './stages/redirect.ts'
import { statsStage } from './stages/stats.ts'

/** A stage of your own for a service's pipeline (see README "Extending the pipeline"); null leaves the service's chain as it is. */
export type ServiceStage = (service: ServicePlan) => Stage | null

export interface ServiceClient {
  readonly service: ServicePlan
  /** scheme://host:port the pool connects to (the service's, or the origin given instead). */
  readonly origin: string
  /** Every stage: what a call's try goes through. */
  readonly send: Send
  /** Credentials and HTTP only: what an active health probe goes through (it feeds stats and breaker itself). */
  readonly transport: Transport
  /** Shared by every endpoint that calls the service; null when not configured. */
  readonly breaker: CircuitBreaker | null
  readonly bulkhead: Bulkhead | null
  readonly budget: RetryBudget
  readonly stats: ServiceStats
  /** Its chain has the coalescing stage / the call cache stage (a reload keeps a client only when they still fit). */
  readonly coalesces: boolean
  readonly caches: boolean
  close(): Promise<void>
}

/**
 * Connection pools by origin: services that reach the same origin with the same pool settings
 * (size, TLS) share one pool, as a hand-written BFF would, instead of each opening its own
 * connections to the same host. Each service keeps its own policies and stats.
 */
export class PoolRegistry {
  readonly #pools = new Map<string, { pool: Pool; users: number }>()

  acquire(origin: string, service: ServicePlan): { pool: Pool; release: () => Promise<void> } {
    const key = JSON.stringify([origin, service.connections, service.tls])
    let entry = this.#pools.get(key)
    if (entry === undefined) {
      const pool = new Pool(origin, {
        connections: service.connections,
        pipelining: 1,
        // Our own per-call timers and the endpoint deadline govern time; these only stop a connection from hanging forever.
        headersTimeout: 0,
        bodyTimeout: 0,
        ...(service.tls === null ? {} : { connect: tlsOptions(service.tls) }),
      })
      entry = { pool, users: 0 }
      this.#pools.set(key, entry)
    }
    entry.users++
    const used = entry
    let released = false
    return {
      pool: used.pool,
      release: async () => {
        if (released) return
        released = true
        if (--used.users === 0) {
          this.#pools.delete(key)
          await used.pool.close()
        }
      },
    }
  }
}

export interface ClientOptions {
  /** Shared pools (a gateway passes one registry to all its clients); default: a pool of the client's own. */
  pools?: PoolRegistry
  /** Overrides the service's URL origin (baton dev points services at their mocks). */
  origin?: string
  /** Stages of your own, placed after the built-in policies and before credentials and HTTP. */
  stages?: readonly ServiceStage[]
  /** Put the observe stage in the chain (something listens to tries). */
  observeTries?: boolean
  /** Put the coalescing stage in the chain (some call to the service coalesces). */
  coalesce?: boolean
  /** Told each time a try joins an identical request already in flight. */
  onCoalesced?: (service: string) => void
  /** Put the per-call cache in the chain (some call to the service caches). */
  cache?: boolean
  /** Told how each try of a caching call went: hit, miss, stale (revalidated), bypass (not storable). */
  onCacheLookup?: (service: string, call: string, result: CacheLookup) => void
  clock?: Clock
  /** Told when the service's breaker changes state. */
  onBreakerChange?: (service: string, from: BreakerState, to: BreakerState) => void
}

export function createServiceClient(service: ServicePlan, options: ClientOptions = {}): ServiceClient {
  const origin = options.origin ?? service.origin
  const { pool, release } = (options.pools ?? new PoolRegistry()).acquire(origin, service)
  const clock = options.clock ?? systemClock
  const { resilience } = service
  const onChange = options.onBreakerChange
  const breaker =
    resilience.breaker === null
      ? null
      : new CircuitBreaker(
          resilience.breaker,
          clock,
          onChange === undefined ? {} : { onStateChange: (from, to) => onChange(service.name, from, to) },
        )
  const bulkhead =
    resilience.bulkhead === null ? null : new Bulkhead(resilience.bulkhead.maxConcurrent, resilience.bulkhead.maxQueued)
  const stats = new ServiceStats()
  // Token requests go through the service's TLS settings (see tokenDispatchers; nothing is opened until one is sent).
  const tokenRequests = tokenDispatchers(pool, origin, service.tls)
  const tokens =
    service.oauth2 === null ? null : new OAuth2Tokens(service.oauth2, service.name, clock, tokenRequests.dispatcherFor)
  // The transport (what health probes use too): same-origin redirects when the service opts in, its credentials, HTTP.
  const transport = compose<Outgoing>(
    [redirectStage(service, origin), credentialsStage(tokens)],
    httpSend(pool, service),
  )
  // The composition: outermost first. A stage that is null is not in the chain.
  const send = compose<Try>(
    [
      deadlineStage,
      options.cache === true ? cacheStage(service, clock, onCacheLookup(service.name, options.onCacheLookup)) : null,
      options.coalesce === true ? coalesceStage(onCoalesced(service.name, options.onCoalesced)) : null,
      bulkheadStage(bulkhead, service),
      breakerStage(breaker, service),
      statsStage(stats),
      options.observeTries === true ? observeStage : null,
      ...(options.stages ?? []).map((stage) => stage(service)),
    ],
    transport,
  )
  return {
    service,
    origin,
    send,
    transport,
    breaker,
    bulkhead,
    budget: new RetryBudget(resilience.retryBudget, 10, clock),
    stats,
    coalesces: options.coalesce === true,
    caches: options.cache === true,
    close: async () => {
      await release()
      await tokenRequests.close()
    },
  }
}

/**
 * What the service's token requests go through, so that its TLS settings (a private CA, a client
 * certificate) reach its token endpoint too: the service's own pool when the endpoint is on the
 * service's origin, else an agent of its own (made on first use) with the same TLS settings but
 * the token host's own name (tls.servername names the service).
 */
function tokenDispatchers(
  pool: Pool,
  origin: string,
  tls: TlsPlan | null,
): { dispatcherFor: DispatcherFor; close: () => Promise<void> } {
  const own = new URL(origin).origin
  let agent: Agent | null = null
  return {
    dispatcherFor: (url) => {
      if (url.origin === own) return pool
      agent ??= new Agent(tls === null ? {} : { connect: tokenTls(tls) })
      return agent
    },
    close: async () => {
      await agent?.close()
    },
  }
}

function onCoalesced(service: string, tell: ((service: string) => void) | undefined): (() => void) | null {
  return tell === undefined ? null : () => tell(service)
}

function onCacheLookup(
  service: string,
  tell: ((service: string, call: string, result: CacheLookup) => void) | undefined,
): ((call: CallPlan, result: CacheLookup) => void) | null {
  return tell === undefined ? null : (call, result) => tell(service, call.name, result)
}

function tlsOptions(tls: TlsPlan): Record<string, string> {
  const options: Record<string, string> = {}
  if (tls.cert !== null) options.cert = tls.cert
  if (tls.key !== null) options.key = tls.key
  if (tls.passphrase !== null) options.passphrase = tls.passphrase
  if (tls.ca !== null) options.ca = tls.ca
  if (tls.servername !== null) options.servername = tls.servername
  return options
}

/**
 * The service's TLS settings for an authorization server on another origin: its private CA is
 * trusted besides the public ones, not instead of them, since that server is often a public
 * identity provider; the client certificate is presented if it asks for one.
 */
function tokenTls(tls: TlsPlan): Record<string, string | string[]> {
  const options: Record<string, string | string[]> = tlsOptions({ ...tls, servername: null })
  if (tls.ca !== null) options.ca = [...rootCertificates, tls.ca]
  return options
}

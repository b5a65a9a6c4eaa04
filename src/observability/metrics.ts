/**
 * Prometheus metrics (prom-client). Labels are config names and endpoint labels only, never raw
 * paths or ids, so cardinality is bounded by the config. Each endpoint gets an observer with its
 * series resolved when the gateway is built; a request only records into them.
 */
import { readFileSync } from 'node:fs'
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'
import type { EdgeObserver, Rejection } from '../edge/admission.ts'
import type { EndpointPlan } from '../plan/types.ts'
import type { BreakerState } from '../policies/breaker.ts'
import type { RunObserver } from '../runtime/observer.ts'
import type { ServiceClient } from '../upstream/client.ts'
import type { WaiterObserver } from '../util/flights.ts'
import { type Answered, type AnswerObserver, answerOutcome, outcomeOf } from './outcome.ts'
import { type CounterSeries, type HistogramSeries, SeriesCounter, SeriesHistogram } from './series.ts'

/** Sub-millisecond to tens of seconds, in seconds. */
export const DEFAULT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** Keys per batch of a batched forEach (size defaults to 100). */
export const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]

/** This package's version (its package.json, beside src/ in a checkout and beside dist/ when installed). */
const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version

/**
 * An endpoint's label (`GET /v1/products/:id`) as the `method` and `route` labels Prometheus users
 * expect (HTTP semantic conventions); the gateway's own names (`unmatched`, `preflight`) are a
 * route with no method.
 */
export function routeLabels(label: string): { method: string; route: string } {
  const space = label.indexOf(' ')
  return space === -1 ? { method: '', route: label } : { method: label.slice(0, space), route: label.slice(space + 1) }
}

const BREAKER_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 }

interface CallSeries {
  readonly duration: HistogramSeries
  readonly outcome: (outcome: string) => CounterSeries
  readonly retries: CounterSeries
  /** Batched forEach calls only. */
  readonly batchSize: HistogramSeries | null
}

/** Where a partial answer's series sits in an endpoint's list, after those by status. */
const PARTIAL = 1000

export class GatewayMetrics implements EdgeObserver, AnswerObserver {
  readonly registry = new Registry()
  // The series a request records into are SeriesHistogram/SeriesCounter (see series.ts); the rare ones stay prom-client's.
  readonly #requestDuration: SeriesHistogram
  readonly #requests: SeriesCounter
  readonly #callDuration: SeriesHistogram
  readonly #callOutcomes: SeriesCounter
  readonly #retries: SeriesCounter
  readonly #batchSize: SeriesHistogram
  readonly #breakerTransitions: Counter<'service' | 'from' | 'to'>
  #inFlight = 0
  readonly #rejected: Counter<'method' | 'route' | 'reason'>
  readonly #storeErrors: Counter
  readonly #storeUp: Gauge<'store'>
  readonly #storeFailures: Counter<'store'>
  readonly #coalesced: Counter<'service'>
  readonly #coalescedRequests: SeriesCounter
  readonly #cacheLookups: SeriesCounter
  readonly #generation: Gauge
  readonly #canaryWeight: Gauge
  readonly #canaryRollbacks: Counter
  readonly #canaryRequests: SeriesCounter
  readonly #reloads: Counter<'result'>
  readonly #callCacheLookups: SeriesCounter

  constructor(clientsNow: () => ReadonlyMap<string, ServiceClient>, buckets: readonly number[] = DEFAULT_BUCKETS) {
    const registers = [this.registry]
    // The process_* and nodejs_* series every Node service exposes (CPU, memory, event loop lag, GC, handles).
    collectDefaultMetrics({ register: this.registry })
    // Gauges that prom-client names *_total, which Prometheus keeps for counters (promtool refuses them); their
    // values are also in nodejs_active_handles, nodejs_active_requests and nodejs_active_resources.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'])
      this.registry.removeSingleMetric(name)
    new Gauge({
      name: 'baton_build_info',
      help: 'Always 1; its labels say which Baton and which Node.js serve.',
      labelNames: ['version', 'node'],
      registers,
    }).set({ version: VERSION, node: process.version }, 1)
    this.#requestDuration = new SeriesHistogram({
      name: 'baton_request_duration_seconds',
      help: 'Duration of orchestrated requests, by endpoint and outcome (complete, partial, failed).',
      labelNames: ['method', 'route', 'outcome'],
      buckets: [...buckets],
      registers,
    })
    this.#requests = new SeriesCounter({
      name: 'baton_requests_total',
      help: 'Answers, by endpoint, status class and outcome: every one, including those written before or instead of a run (404, 400, 413, 415, rejections, health, metrics, preflights; route="unmatched" when no route matched).',
      labelNames: ['method', 'route', 'status_class', 'outcome'],
      registers,
    })
    this.#callDuration = new SeriesHistogram({
      name: 'baton_call_duration_seconds',
      help: "Duration of downstream calls (all tries), separate from the request's.",
      labelNames: ['method', 'route', 'call', 'service'],
      buckets: [...buckets],
      registers,
    })
    this.#callOutcomes = new SeriesCounter({
      name: 'baton_call_outcomes_total',
      help: 'Downstream call outcomes: success, fallback, or the failure kind (timeout, connect, network, status_5xx, status_4xx, circuit_open, bulkhead_full, bad_body, too_large, redirect, deadline, expression, no_match).',
      labelNames: ['method', 'route', 'call', 'service', 'outcome'],
      registers,
    })
    this.#retries = new SeriesCounter({
      name: 'baton_call_retries_total',
      help: 'Retries of downstream calls (tries after the first).',
      labelNames: ['method', 'route', 'call', 'service'],
      registers,
    })
    this.#batchSize = new SeriesHistogram({
      name: 'baton_batch_size',
      help: 'Keys per upstream request of a batched forEach call.',
      labelNames: ['method', 'route', 'call'],
      buckets: BATCH_SIZE_BUCKETS,
      registers,
    })
    this.#breakerTransitions = new Counter({
      name: 'baton_circuit_breaker_transitions_total',
      help: 'Circuit breaker state changes.',
      labelNames: ['service', 'from', 'to'],
      registers,
    })
    this.#rejected = new Counter({
      name: 'baton_requests_rejected_total',
      help: 'Requests turned away at the edge, by endpoint and reason (unauthenticated, forbidden, auth_unavailable, rate_limited, overloaded, rate_limit_unavailable, validation_failed).',
      labelNames: ['method', 'route', 'reason'],
      registers,
    })
    this.#storeErrors = new Counter({
      name: 'baton_rate_limit_store_errors_total',
      help: 'Rate limit checks the store could not make (Redis down, slow, or skipped by its breaker) and failed reconnections; requests are let through unless onStoreError is reject.',
      registers,
    })
    this.#storeUp = new Gauge({
      name: 'baton_store_up',
      help: 'Whether a Redis store is used: 1, or 0 while it is disconnected or skipped after failing commands (store: rate_limit, cache).',
      labelNames: ['store'],
      registers,
      // Summed over the workers of `baton serve --workers`, 1s would add up; 0 when any worker has it down.
      aggregator: 'min',
    })
    this.#storeFailures = new Counter({
      name: 'baton_store_failures_total',
      help: 'Failed or timed-out Redis commands and failed connections, by store (rate_limit, cache).',
      labelNames: ['store'],
      registers,
    })
    this.#coalesced = new Counter({
      name: 'baton_coalesced_calls_total',
      help: 'Tries that joined an identical request already in flight to the service instead of making their own.',
      labelNames: ['service'],
      registers,
    })
    this.#coalescedRequests = new SeriesCounter({
      name: 'baton_coalesced_requests_total',
      help: 'Requests that waited for the run of an identical request already in flight (endpoint coalescing) instead of running their own.',
      labelNames: ['method', 'route'],
      registers,
    })
    this.#cacheLookups = new SeriesCounter({
      name: 'baton_cache_lookups_total',
      help: 'Response cache lookups by endpoint and result: hit (fresh), stale (served while refreshed), miss (ran), collapsed (waited for a run already computing the entry).',
      labelNames: ['method', 'route', 'result'],
      registers,
    })
    this.#callCacheLookups = new SeriesCounter({
      name: 'baton_call_cache_lookups_total',
      help: 'Tries of calls that cache, by result: hit (answered from memory), stale (revalidated with the service), miss (the service was asked), bypass (its answer may not be stored).',
      labelNames: ['service', 'call', 'result'],
      registers,
    })
    this.#generation = new Gauge({
      name: 'baton_config_generation',
      help: 'The config generation being served: 1 at start, one more for each successful reload.',
      registers,
    })
    this.#generation.set(1)
    this.#reloads = new Counter({
      name: 'baton_config_reloads_total',
      help: 'Reloads by result: success, or failure (an invalid config was refused and the previous one kept serving).',
      labelNames: ['result'],
      registers,
    })
    this.#reloads.inc({ result: 'success' }, 0)
    this.#reloads.inc({ result: 'failure' }, 0)
    this.#canaryWeight = new Gauge({
      name: 'baton_canary_weight',
      help: "The canary candidate's share of the requests, 0 to 1 (0 once rolled back, or when none runs).",
      registers,
    })
    this.#canaryRollbacks = new Counter({
      name: 'baton_canary_rollbacks_total',
      help: 'Canaries rolled back by their guard (worse than the stable version by more than its margins).',
      registers,
    })
    this.#canaryRollbacks.inc(0)
    this.#canaryRequests = new SeriesCounter({
      name: 'baton_canary_requests_total',
      help: 'Orchestrated requests while a canary runs, by version (stable, candidate) and result (ok, failed: a 5xx answer or a failed required call).',
      labelNames: ['version', 'result'],
      registers,
    })
    const inFlight = (): number => this.#inFlight
    new Gauge({
      name: 'baton_requests_in_flight',
      help: 'Orchestrated requests being served.',
      registers,
      collect() {
        this.set(inFlight())
      },
    })
    new Gauge({
      name: 'baton_calls_in_flight',
      help: 'Downstream calls in flight, by service.',
      labelNames: ['service'],
      registers,
      collect() {
        // The current generation's services only (a reload may have removed one).
        this.reset()
        for (const [name, c] of clientsNow()) this.set({ service: name }, c.stats.inFlight)
      },
    })
    new Gauge({
      name: 'baton_circuit_breaker_state',
      help: 'Circuit breaker state by service: 0 closed, 1 half-open, 2 open.',
      labelNames: ['service'],
      registers,
      // Each worker of `baton serve --workers` has its own breakers: the most open one.
      aggregator: 'max',
      collect() {
        this.reset()
        for (const [name, c] of clientsNow())
          if (c.breaker !== null) this.set({ service: name }, BREAKER_VALUE[c.breaker.state])
      },
    })
  }

  /** Creates the endpoint's series (so that dashboards see zeros rather than gaps) and the observer that records into them. */
  observerFor(endpoint: EndpointPlan): RunObserver {
    const name = routeLabels(endpoint.label)
    const calls: CallSeries[] = endpoint.calls.map((call) => {
      const labels = { ...name, call: call.name, service: call.service.name }
      const outcomes = new Map<string, CounterSeries>()
      return {
        duration: this.#callDuration.labels(labels),
        outcome: (outcome: string) => {
          let child = outcomes.get(outcome)
          if (child === undefined) outcomes.set(outcome, (child = this.#callOutcomes.labels({ ...labels, outcome })))
          return child
        },
        retries: this.#retries.labels(labels),
        batchSize: call.forEach?.batch == null ? null : this.#batchSize.labels({ ...name, call: call.name }),
      }
    })
    const duration: Record<string, HistogramSeries> = {}
    for (const outcome of ['complete', 'partial', 'failed'])
      duration[outcome] = this.#requestDuration.labels({ ...name, outcome })
    /** By `${status_class} ${outcome}`, created on first use. */
    const requests = new Map<string, CounterSeries>()
    return {
      runStarted: () => {
        this.#inFlight++
      },
      runFinished: (_state, run, answer) => {
        this.#inFlight--
        const outcome = outcomeOf(answer, run)
        duration[outcome]?.observe((performance.now() - run.startedAt) / 1000)
        const statusClass = `${Math.floor(answer.status / 100)}xx`
        const key = `${statusClass} ${outcome}`
        let counter = requests.get(key)
        if (counter === undefined)
          requests.set(key, (counter = this.#requests.labels({ ...name, status_class: statusClass, outcome })))
        counter.inc()
        for (const call of endpoint.calls) {
          const ms = run.durations[call.index] as number
          if (Number.isNaN(ms)) continue
          const s = calls[call.index] as CallSeries
          s.duration.observe(ms / 1000)
          const error = run.errors?.[call.index]
          s.outcome(
            error === undefined
              ? 'success'
              : error.kind === 'status'
                ? `status_${Math.floor((error.status ?? 0) / 100)}xx`
                : error.kind,
          ).inc()
          // A fallback counts only when one was served: in an answer that is not an error.
          if (answer.status < 400 && run.degraded?.includes(call.name) === true) s.outcome('fallback').inc()
          const retries = run.retries?.[call.index] ?? 0
          if (retries > 0) s.retries.inc(retries)
          const batches = run.batches?.[call.index]
          if (batches !== undefined && s.batchSize !== null) for (const size of batches) s.batchSize.observe(size)
        }
      },
    }
  }

  /** Counts an answer written outside a run (its series are few: labels, never raw paths). */
  answered(answer: Answered): void {
    this.#answers(answer.endpoint, answer.status, answer.degraded).inc()
  }

  /** Creates the series an answer outside a run will count into, so that dashboards see a zero rather than a gap. */
  expectAnswers(endpoint: string, status: number): void {
    this.#answers(endpoint, status, false)
  }

  /** Per endpoint label, its answers' series by status, partial ones at status + PARTIAL (found once, then read without building labels). */
  readonly #answerSeries = new Map<string, CounterSeries[]>()

  /** An answer no route matched has route "unmatched" and no method: its method is in its log line, never a label. */
  #answers(endpoint: string, status: number, degraded: boolean): CounterSeries {
    let byStatus = this.#answerSeries.get(endpoint)
    if (byStatus === undefined) this.#answerSeries.set(endpoint, (byStatus = []))
    return (byStatus[degraded ? status + PARTIAL : status] ??= this.#answersSeries(endpoint, status, degraded))
  }

  #answersSeries(endpoint: string, status: number, degraded: boolean): CounterSeries {
    const labels = routeLabels(endpoint)
    return this.#requests.labels({
      method: labels.method,
      route: labels.route,
      status_class: `${Math.floor(status / 100)}xx`,
      outcome: answerOutcome(status, degraded),
    })
  }

  rejected(endpoint: EndpointPlan, rejection: Rejection): void {
    this.#rejected.inc({ ...routeLabels(endpoint.label), reason: rejection.reason })
  }

  canaryWeight(weight: number): void {
    this.#canaryWeight.set(weight)
  }

  canaryRolledBack(): void {
    this.#canaryRollbacks.inc()
  }

  canaryRequest(version: 'stable' | 'candidate', failed: boolean): void {
    this.#canaryRequests.labels({ version, result: failed ? 'failed' : 'ok' }).inc()
  }

  /** A reload ended: `generation` is being served (unchanged after a failure). */
  reloaded(ok: boolean, generation: number): void {
    this.#reloads.inc({ result: ok ? 'success' : 'failure' })
    this.#generation.set(generation)
  }

  /** An endpoint's cache lookups, its series resolved now (zeros from the start, not gaps). */
  cacheLookupsOf(endpoint: string): (result: 'hit' | 'stale' | 'miss' | 'collapsed') => void {
    const labels = routeLabels(endpoint)
    const series = {
      hit: this.#cacheLookups.labels({ ...labels, result: 'hit' }),
      stale: this.#cacheLookups.labels({ ...labels, result: 'stale' }),
      miss: this.#cacheLookups.labels({ ...labels, result: 'miss' }),
      collapsed: this.#cacheLookups.labels({ ...labels, result: 'collapsed' }),
    }
    return (result) => series[result].inc()
  }

  /** A request waiting for a run another request started (the response cache's collapsing): in flight until it has its answer. */
  readonly waiting: WaiterObserver = {
    joined: () => {
      this.#inFlight++
    },
    left: () => {
      this.#inFlight--
    },
  }

  /** A request waiting for an identical request's run (endpoint coalescing): counted, and in flight until it has its answer. */
  sharedRunsOf(endpoint: string): WaiterObserver {
    const joins = this.#coalescedRequests.labels(routeLabels(endpoint))
    return {
      joined: () => {
        joins.inc()
        this.waiting.joined()
      },
      left: this.waiting.left,
    }
  }

  coalesced(service: string): void {
    this.#coalesced.inc({ service })
  }

  cacheLookup(service: string, call: string, result: string): void {
    this.#callCacheLookups.labels({ service, call, result }).inc()
  }

  rateLimitStoreFailed(): void {
    this.#storeErrors.inc()
  }

  /** A Redis store exists: its series start at zero (down until it connects), so that dashboards see no gap. */
  storeCreated(store: string): void {
    this.#storeUp.set({ store }, 0)
    this.#storeFailures.inc({ store }, 0)
  }

  storeChanged(store: string, up: boolean): void {
    this.#storeUp.set({ store }, up ? 1 : 0)
  }

  storeFailed(store: string): void {
    this.#storeFailures.inc({ store })
  }

  breakerChanged(service: string, from: BreakerState, to: BreakerState): void {
    this.#breakerTransitions.inc({ service, from, to })
  }
}

/**
 * Prometheus metrics (prom-client). Labels are config names and route templates only, never raw
 * paths or ids, so cardinality is bounded by the config. Label children are resolved once per
 * endpoint and call when the gateway is built; a request only observes into them.
 */
import { Counter, Gauge, Registry } from 'prom-client'
import type { EndpointPlan, GatewayPlan } from '../plan/types.ts'
import type { BreakerState } from '../policies/breaker.ts'
import type { GatewayAnswer, RunReport } from '../runtime/execute.ts'
import type { ServiceClient } from '../upstream/client.ts'
import { outcomeOf } from './requests.ts'
import { type CounterSeries, type HistogramSeries, SeriesCounter, SeriesHistogram } from './series.ts'

/** Sub-millisecond to tens of seconds, in seconds. */
export const DEFAULT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

const BREAKER_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 }

/** An endpoint's label value and its request series, resolved once. */
interface EndpointSeries {
  readonly name: string
  readonly duration: Readonly<Record<string, HistogramSeries>>
  /** By `${status_class} ${outcome}`, created on first use. */
  readonly requests: Map<string, CounterSeries>
}

interface CallSeries {
  readonly duration: HistogramSeries
  readonly outcome: (outcome: string) => CounterSeries
  readonly retries: CounterSeries
}

export class GatewayMetrics {
  readonly registry = new Registry()
  // The series a request records into are SeriesHistogram/SeriesCounter (see series.ts); the rare ones stay prom-client's.
  readonly #requestDuration: SeriesHistogram
  readonly #requests: SeriesCounter
  readonly #callDuration: SeriesHistogram
  readonly #callOutcomes: SeriesCounter
  readonly #retries: SeriesCounter
  readonly #breakerTransitions: Counter<'service' | 'from' | 'to'>
  #inFlight = 0
  readonly #rejected: Counter<'endpoint' | 'reason'>
  readonly #storeErrors: Counter
  readonly #calls = new Map<EndpointPlan, CallSeries[]>()
  readonly #endpoints = new Map<EndpointPlan, EndpointSeries>()

  constructor(
    plan: GatewayPlan,
    clients: ReadonlyMap<string, ServiceClient>,
    buckets: readonly number[] = DEFAULT_BUCKETS,
  ) {
    const registers = [this.registry]
    this.#requestDuration = new SeriesHistogram({
      name: 'baton_request_duration_seconds',
      help: 'Duration of orchestrated requests, by endpoint and outcome (complete, partial, failed).',
      labelNames: ['endpoint', 'outcome'],
      buckets: [...buckets],
      registers,
    })
    this.#requests = new SeriesCounter({
      name: 'baton_requests_total',
      help: 'Orchestrated requests, by endpoint, status class and outcome.',
      labelNames: ['endpoint', 'status_class', 'outcome'],
      registers,
    })
    this.#callDuration = new SeriesHistogram({
      name: 'baton_call_duration_seconds',
      help: "Duration of downstream calls (all tries), separate from the request's.",
      labelNames: ['endpoint', 'call', 'service'],
      buckets: [...buckets],
      registers,
    })
    this.#callOutcomes = new SeriesCounter({
      name: 'baton_call_outcomes_total',
      help: 'Downstream call outcomes: success, fallback, or the failure kind (timeout, connect, network, status_5xx, status_4xx, circuit_open, bulkhead_full, bad_body, too_large, deadline, expression).',
      labelNames: ['endpoint', 'call', 'service', 'outcome'],
      registers,
    })
    this.#retries = new SeriesCounter({
      name: 'baton_call_retries_total',
      help: 'Retries of downstream calls (tries after the first).',
      labelNames: ['endpoint', 'call', 'service'],
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
      help: 'Requests turned away at the edge, by endpoint and reason (unauthenticated, forbidden, auth_unavailable, rate_limited, overloaded, rate_limit_unavailable).',
      labelNames: ['endpoint', 'reason'],
      registers,
    })
    this.#storeErrors = new Counter({
      name: 'baton_rate_limit_store_errors_total',
      help: 'Rate limit store failures (Redis down or slow); requests are let through unless onStoreError is reject.',
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
        for (const [name, c] of clients) this.set({ service: name }, c.stats.inFlight)
      },
    })
    new Gauge({
      name: 'baton_circuit_breaker_state',
      help: 'Circuit breaker state by service: 0 closed, 1 half-open, 2 open.',
      labelNames: ['service'],
      registers,
      collect() {
        for (const [name, c] of clients)
          if (c.breaker !== null) this.set({ service: name }, BREAKER_VALUE[c.breaker.state])
      },
    })
    for (const endpoint of plan.endpoints) {
      const name = `${endpoint.method} ${endpoint.route}`
      this.#calls.set(
        endpoint,
        endpoint.calls.map((call) => {
          const labels = { endpoint: name, call: call.name, service: call.service.name }
          const outcomes = new Map<string, CounterSeries>()
          return {
            duration: this.#callDuration.labels(labels),
            outcome: (outcome: string) => {
              let child = outcomes.get(outcome)
              if (child === undefined)
                outcomes.set(outcome, (child = this.#callOutcomes.labels({ ...labels, outcome })))
              return child
            },
            retries: this.#retries.labels(labels),
          }
        }),
      )
      // Created up front, so that dashboards see zeros rather than gaps.
      const duration: Record<string, HistogramSeries> = {}
      for (const outcome of ['complete', 'partial', 'failed'])
        duration[outcome] = this.#requestDuration.labels({ endpoint: name, outcome })
      this.#endpoints.set(endpoint, { name, duration, requests: new Map() })
    }
  }

  requestStarted(): void {
    this.#inFlight++
  }

  requestFinished(endpoint: EndpointPlan, answer: GatewayAnswer, report: RunReport, totalMs: number): void {
    this.#inFlight--
    const series = this.#endpoints.get(endpoint) as EndpointSeries
    const name = series.name
    const outcome = outcomeOf(answer, report)
    series.duration[outcome]?.observe(totalMs / 1000)
    const statusClass = `${Math.floor(answer.status / 100)}xx`
    const key = `${statusClass} ${outcome}`
    let requests = series.requests.get(key)
    if (requests === undefined)
      series.requests.set(
        key,
        (requests = this.#requests.labels({ endpoint: name, status_class: statusClass, outcome })),
      )
    requests.inc()
    const calls = this.#calls.get(endpoint) as CallSeries[]
    for (const call of endpoint.calls) {
      const ms = report.durations[call.index] as number
      if (Number.isNaN(ms)) continue
      const s = calls[call.index] as CallSeries
      s.duration.observe(ms / 1000)
      const failure = report.failures?.find((f) => f.call === call.name)
      s.outcome(
        failure === undefined
          ? 'success'
          : failure.kind === 'status'
            ? `status_${Math.floor((failure.status ?? 0) / 100)}xx`
            : failure.kind,
      ).inc()
      if (failure !== undefined && !failure.required) s.outcome('fallback').inc()
      const retries = report.retries?.[call.index] ?? 0
      if (retries > 0) s.retries.inc(retries)
    }
  }

  requestRejected(endpoint: EndpointPlan, reason: string): void {
    this.#rejected.inc({ endpoint: (this.#endpoints.get(endpoint) as EndpointSeries).name, reason })
  }

  rateLimitStoreFailed(): void {
    this.#storeErrors.inc()
  }

  breakerChanged(service: string, from: BreakerState, to: BreakerState): void {
    this.#breakerTransitions.inc({ service, from, to })
  }
}

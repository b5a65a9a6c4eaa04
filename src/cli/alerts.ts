/**
 * `baton alerts FILE`: the template's alert table, turned into Prometheus alerting rules over
 * Baton's own metrics. Thresholds come from the plan: `alerts:` on endpoints (P99 latency),
 * on services (error rate over a window) and on the gateway (any breaker open).
 */
import { stringify } from 'yaml'
import { formatDuration } from '../config/units.ts'
import { routeLabels } from '../observability/metrics.ts'
import type { GatewayPlan } from '../plan/types.ts'

interface Rule {
  alert: string
  expr: string
  for?: string
  labels: Record<string, string>
  annotations: Record<string, string>
}

/** PromQL label values are double-quoted strings. */
const quote = (value: string): string => JSON.stringify(value)

/** A Prometheus duration: whole seconds or minutes. */
function promDuration(ms: number): string {
  const s = Math.max(1, Math.round(ms / 1000))
  return s % 60 === 0 ? `${s / 60}m` : `${s}s`
}

export function alertRules(plan: GatewayPlan): string {
  const rules: Rule[] = []
  const gateway = plan.name
  for (const endpoint of plan.endpoints) {
    const alerts = endpoint.alerts
    if (alerts === null) continue
    const name = endpoint.label
    const window = promDuration(alerts.window)
    rules.push({
      alert: 'BatonEndpointLatencyP99',
      expr: `histogram_quantile(0.99, sum by (le) (rate(baton_request_duration_seconds_bucket{method=${quote(endpoint.method)},route=${quote(routeLabels(name).route)}}[${window}]))) > ${alerts.p99 / 1000}`,
      for: window,
      labels: { severity: 'warning', channel: alerts.channel, endpoint: name },
      annotations: {
        summary: `${gateway}: ${name} P99 latency above ${formatDuration(alerts.p99)}`,
        description: `P99 of ${name} over ${window} is {{ $value | humanizeDuration }} (target ${formatDuration(alerts.p99)}).`,
      },
    })
  }
  for (const { name: service, alerts } of plan.services) {
    if (alerts === null) continue
    const window = promDuration(alerts.window)
    const ratio = alerts.errorRate
    const all = `sum(rate(baton_call_outcomes_total{service=${quote(service)},outcome!="fallback"}[${window}]))`
    const failed = `sum(rate(baton_call_outcomes_total{service=${quote(service)},outcome!~"success|fallback"}[${window}]))`
    rules.push({
      alert: 'BatonDownstreamErrorRate',
      expr: `${failed} / ${all} > ${ratio}`,
      for: '1m',
      labels: { severity: 'critical', channel: alerts.channel, service },
      annotations: {
        summary: `${gateway}: ${service} error rate above ${ratio * 100}% over ${window}`,
        description: `{{ $value | humanizePercentage }} of the calls to ${service} failed over the last ${window}.`,
      },
    })
  }
  const breaker = plan.breakerAlert
  if (breaker !== null && plan.services.some((s) => s.resilience.breaker !== null)) {
    rules.push({
      alert: 'BatonCircuitBreakerOpen',
      expr: 'max by (service) (baton_circuit_breaker_state) == 2',
      labels: { severity: 'warning', channel: breaker },
      annotations: {
        summary: `${gateway}: circuit breaker of {{ $labels.service }} is open`,
        description: 'Calls to {{ $labels.service }} fail at once until the breaker lets probes through.',
      },
    })
  }
  if (plan.canary !== null) {
    rules.push({
      alert: 'BatonCanaryRolledBack',
      expr: 'increase(baton_canary_rollbacks_total[10m]) > 0',
      labels: { severity: 'warning', channel: plan.breakerAlert ?? 'slack' },
      annotations: {
        summary: `${gateway}: the canary was rolled back by its guard`,
        description:
          'The candidate config answered worse than the stable one (error rate or p99 over its margins): its weight is 0. The log line canary_rolled_back has the figures.',
      },
    })
  }
  return stringify({ groups: [{ name: `baton: ${gateway}`, rules }] }, { lineWidth: 0 })
}

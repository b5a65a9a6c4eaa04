/** `baton alerts`: rules that Prometheus accepts, and that fire on the series they are meant for. */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'

const hasPromtool = spawnSync('promtool', ['--version']).error === undefined
const skip = hasPromtool ? false : 'promtool is not installed (Debian package prometheus; .ci/run installs it)'

function baton(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['bin/baton.js', ...args], { encoding: 'utf8' })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('baton alerts', () => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-alerts-'))
  const rules = join(dir, 'rules.yaml')

  test('writes one rule per threshold in the config', () => {
    const r = baton(['alerts', 'examples/checkout/baton.yaml', '-o', rules])
    assert.equal(r.code, 0, r.stderr)
    const out = baton(['alerts', 'examples/checkout/baton.yaml']).stdout
    assert.deepEqual(
      [...out.matchAll(/- alert: (\w+)/g)].map((m) => m[1]),
      ['BatonEndpointLatencyP99', 'BatonDownstreamErrorRate', 'BatonCircuitBreakerOpen'],
    )
    assert.match(out, /method="POST",route="\/v1\/checkout\/summary"\}\[5m\]\)\)\) > 1\.5/)
    assert.match(out, /channel: pagerduty/)
  })

  test('promtool check rules accepts them', { skip }, () => {
    const check = spawnSync('promtool', ['check', 'rules', rules], { encoding: 'utf8' })
    assert.equal(check.status, 0, `${check.stdout}${check.stderr}`)
    assert.match(check.stdout, /SUCCESS: 3 rules found/)
  })

  test('promtool test rules: each alert fires on a series that breaks its threshold', { skip }, () => {
    const endpoint = 'POST /v1/checkout/summary'
    const tests = join(dir, 'tests.yaml')
    writeFileSync(
      tests,
      `
rule_files: [${JSON.stringify(rules)}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'baton_circuit_breaker_state{service="cart"}'
        values: '0 0 2 2 2 2'
      - series: 'baton_call_outcomes_total{method="POST",route="/v1/checkout/summary",call="cart",service="cart",outcome="success"}'
        values: '0+90x12'
      - series: 'baton_call_outcomes_total{method="POST",route="/v1/checkout/summary",call="cart",service="cart",outcome="timeout"}'
        values: '0+10x12'
      - series: 'baton_request_duration_seconds_bucket{method="POST",route="/v1/checkout/summary",outcome="complete",le="1"}'
        values: '0+0x12'
      - series: 'baton_request_duration_seconds_bucket{method="POST",route="/v1/checkout/summary",outcome="complete",le="2.5"}'
        values: '0+100x12'
      - series: 'baton_request_duration_seconds_bucket{method="POST",route="/v1/checkout/summary",outcome="complete",le="+Inf"}'
        values: '0+100x12'
    alert_rule_test:
      - eval_time: 1m
        alertname: BatonCircuitBreakerOpen
        exp_alerts: []
      - eval_time: 3m
        alertname: BatonCircuitBreakerOpen
        exp_alerts:
          - exp_labels: { severity: warning, channel: slack, service: cart }
            exp_annotations:
              summary: 'Checkout BFF: circuit breaker of cart is open'
              description: 'Calls to cart fail at once until the breaker lets probes through.'
      - eval_time: 8m
        alertname: BatonDownstreamErrorRate
        exp_alerts:
          - exp_labels: { severity: critical, channel: pagerduty, service: cart }
            exp_annotations:
              summary: 'Checkout BFF: cart error rate above 5% over 5m'
              description: '10% of the calls to cart failed over the last 5m.'
      - eval_time: 11m
        alertname: BatonEndpointLatencyP99
        exp_alerts:
          - exp_labels: { severity: warning, channel: slack, endpoint: '${endpoint}' }
            exp_annotations:
              summary: 'Checkout BFF: ${endpoint} P99 latency above 1500ms'
              description: 'P99 of ${endpoint} over 5m is 2.485s (target 1500ms).'
`,
    )
    const run = spawnSync('promtool', ['test', 'rules', tests], { encoding: 'utf8' })
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`)
  })

  test('a config with errors gets its diagnostics and exit 1', () => {
    const r = baton(['alerts', 'test/fixtures/broken.yaml'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /BATON_UNKNOWN_KEY/)
  })
})

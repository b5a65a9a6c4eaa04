/**
 * Retries, end to end: what is retried and what is not, how many tries the upstream sees,
 * how long the gateway waits between them, and when it gives up (the deadline, the retry
 * budget). Breakers and bulkheads have their own files (breaker.test.ts, bulkhead.test.ts).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseConfig } from '../src/config/load.ts'
import { compileConfig } from '../src/plan/compile.ts'
import { assertError, get, startGateway, stubFor } from './helpers/gateway.ts'
import { fakeClock, inSequence, inTurn, oneService } from './helpers/resilience.ts'
import { eventually, hang, json, reset, type StubRequest } from './helpers/stub.ts'

const FAIL = json({ error: 'boom' }, { status: 500 })
const OK = json({ ok: true })
/** Short fixed backoff: these tests are about counts, not about waiting. */
const RETRY = 'backoff: fixed, delay: 10ms'

describe('what is retried', () => {
  test('attempts 2 and a service that always answers 500: exactly 3 tries, then 502 naming the service', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: `retry: { attempts: 2, ${RETRY} }` })
    stub.route('GET /a', FAIL)
    assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed (500)', ['svc'])
    assert.equal(hits(), 3)
  })

  test('500, 500, 200: the client gets the 200, after exactly 3 tries', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: `retry: { attempts: 2, ${RETRY} }` })
    stub.route('GET /a', inTurn(FAIL, FAIL, OK))
    const res = await get(a)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { a: { ok: true } })
    assert.equal(hits(), 3)
  })

  test('on: [5xx] does not retry a timeout', async (t) => {
    const { stub, a, hits } = await oneService(t, {
      service: `timeout: 50ms, retry: { attempts: 2, ${RETRY}, on: [5xx] }`,
    })
    stub.route('GET /a', hang())
    assertError(await get(a), 504, 'GATEWAY_TIMEOUT', 'svc timed out', ['svc'])
    assert.equal(hits(), 1)
  })

  test('on: [timeout] retries a hanging service; each timed-out try was aborted, and the next began after it', async (t) => {
    const { stub, a, hits } = await oneService(t, {
      service: `timeout: 50ms, retry: { attempts: 2, ${RETRY}, on: [timeout] }`,
    })
    stub.route('GET /a', hang())
    assertError(await get(a), 504, 'GATEWAY_TIMEOUT', 'svc timed out', ['svc'])
    assert.equal(hits(), 3)
    const tries = stub.requestsTo('GET /a')
    await eventually(() => tries.every((r) => r.closed), "every try's connection to close")
    assert.deepEqual(
      tries.map((r) => r.aborted),
      [true, true, true],
    )
    // Causality, not speed: a retry starts only after the try before it timed out (50ms) and the backoff (10ms).
    for (let i = 1; i < tries.length; i++) {
      const gap = (tries[i] as StubRequest).arrivedAt - (tries[i - 1] as StubRequest).arrivedAt
      assert.ok(gap >= 45, `try ${i + 1} arrived ${gap.toFixed(1)}ms after try ${i}, before that one's 50ms timeout`)
    }
  })

  test('a connection reset is retried only with on: [network]', async (t) => {
    const { stub, a } = await oneService(t, { service: `retry: { attempts: 2, ${RETRY} }` })
    stub.route('GET /a', reset())
    assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed: connection error', ['svc'])
    assert.equal(stub.requestsTo('GET /a').length, 1, 'the default (5xx, timeout, connect) does not cover a reset')

    const withNetwork = await oneService(t, { service: `retry: { attempts: 2, ${RETRY}, on: [network] }` })
    withNetwork.stub.route('GET /a', reset())
    assertError(await get(withNetwork.a), 502, 'DOWNSTREAM_FAILURE', 'svc failed: connection error', ['svc'])
    assert.equal(withNetwork.hits(), 3)
  })

  test('a 404 is not retried by default', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: `retry: { attempts: 2, ${RETRY} }` })
    stub.route('GET /a', json({}, { status: 404 }))
    assertError(await get(a), 404, 'DOWNSTREAM_REJECTED', 'svc rejected the request (404)', ['svc'])
    assert.equal(hits(), 1)
  })

  test('a 404 is retried when listed in on', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: `retry: { attempts: 2, ${RETRY}, on: [404] }` })
    stub.route('GET /a', inTurn(json({}, { status: 404 }), json({}, { status: 404 }), OK))
    const res = await get(a)
    assert.equal(res.status, 200)
    assert.equal(hits(), 3)
  })

  for (const [method, tries] of [
    ['PUT', 3],
    ['DELETE', 3],
    ['POST', 1],
    ['PATCH', 1],
  ] as const) {
    test(`a ${method} call ${tries === 3 ? 'is retried: the method is idempotent' : 'is not retried without idempotent: true'}`, async (t) => {
      const { stub, a, hits } = await oneService(t, { method, service: `retry: { attempts: 2, ${RETRY} }` })
      stub.route(`${method} /a`, FAIL)
      assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed (500)', ['svc'])
      assert.equal(hits(), tries)
    })
  }

  for (const method of ['POST', 'PATCH']) {
    test(`a ${method} call with idempotent: true is retried`, async (t) => {
      const { stub, a, hits } = await oneService(t, {
        method,
        service: `retry: { attempts: 2, ${RETRY} }`,
        call: 'idempotent: true',
      })
      stub.route(`${method} /a`, FAIL)
      assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed (500)', ['svc'])
      assert.equal(hits(), 3)
    })
  }

  test("a call-level retry: false turns the service's policy off", async (t) => {
    const { stub, a, hits } = await oneService(t, { service: `retry: { attempts: 2, ${RETRY} }`, call: 'retry: false' })
    stub.route('GET /a', FAIL)
    assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed (500)', ['svc'])
    assert.equal(hits(), 1)
  })

  test("a call-level retry replaces the service's whole policy (attempts and on), it is not merged", async (t) => {
    const { stub, a, b, hits } = await oneService(t, {
      service: `retry: { attempts: 2, ${RETRY}, on: [404] }`,
      call: `retry: { attempts: 1, ${RETRY} }`,
    })
    stub.route('GET /a', FAIL)
    stub.route('GET /b', json({}, { status: 404 }))
    assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed (500)', ['svc'])
    assert.equal(hits(), 2, "the call's attempts: 1, not the service's 2")
    assertError(await get(b), 404, 'DOWNSTREAM_REJECTED', 'svc rejected the request (404)', ['svc'])
    assert.equal(hits('GET /b'), 1, "the call's on (the default, without 404), not the service's [404]")
  })
})

describe('Retry-After and the deadline', () => {
  test('Retry-After: 1 on a 503 with on: [503]: the retry waits at least ~1s, then succeeds', async (t) => {
    const { stub, a, hits } = await oneService(t, {
      service: `timeout: 500ms, retry: { attempts: 1, ${RETRY}, on: [503] }`,
    })
    stub.route('GET /a', inTurn(json({}, { status: 503, headers: { 'retry-after': '1' } }), OK))
    const res = await get(a)
    assert.equal(res.status, 200)
    assert.equal(hits(), 2)
    const [first, second] = stub.requestsTo('GET /a') as [StubRequest, StubRequest]
    const gap = second.arrivedAt - first.arrivedAt
    assert.ok(
      gap >= 900,
      `the retry arrived ${gap.toFixed(0)}ms after the 503, not after the 1s its Retry-After asked for`,
    )
  })

  test('Retry-After longer than the time left before the deadline: the retry is not started', async (t) => {
    const { stub, a, hits } = await oneService(t, {
      deadline: '500ms',
      service: `timeout: 100ms, retry: { attempts: 1, ${RETRY}, on: [503] }`,
    })
    stub.route('GET /a', inTurn(json({}, { status: 503, headers: { 'retry-after': '1' } }), OK))
    assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed (503)', ['svc'])
    assert.equal(hits(), 1)
  })

  test('deadline 300ms, timeout 200ms, attempts 5: after the first 200ms try only 100ms are left, so no retry is started', async (t) => {
    const { stub, a, hits } = await oneService(t, {
      deadline: '300ms',
      service: 'timeout: 200ms, retry: { attempts: 5, backoff: fixed, delay: 10ms }',
    })
    stub.route('GET /a', hang())
    // The try ended by its own timeout (not the deadline), and nothing was started after it.
    assertError(await get(a), 504, 'GATEWAY_TIMEOUT', 'svc timed out', ['svc'])
    assert.equal(hits(), 1)
  })

  test('a retry is started only if its backoff and a whole try fit before the deadline: exactly 5 tries of 180ms + 90ms in 1410ms', async (t) => {
    // The calls may use the deadline less its reserve (50ms): 1360ms. Try k starts at 270(k-1) ms and times out
    // 180ms later; retry k+1 fits if 270(k-1) + 180 + 90 + 180 <= 1360, i.e. k <= 4: tries 1-5 start at 0, 270,
    // 540, 810, 1080, and the 6th (at 1350, ending at 1530) is not started. attempts: 10 is not what stops it.
    // (The 5th fits with 100ms to spare, the 6th misses by 170ms: a loaded machine's late timers change neither.)
    const { stub, a, hits } = await oneService(t, {
      deadline: '1410ms',
      service: 'timeout: 180ms, retry: { attempts: 10, backoff: fixed, delay: 90ms }',
    })
    stub.route('GET /a', hang())
    assertError(await get(a), 504, 'GATEWAY_TIMEOUT', 'svc timed out', ['svc'])
    assert.equal(hits(), 5)
    const tries = stub.requestsTo('GET /a')
    await eventually(() => tries.every((r) => r.closed), "every try's connection to close")
    assert.ok(tries.every((r) => r.aborted))
  })
})

describe('retry budget', () => {
  const BUDGET = 'retry: { attempts: 1, backoff: fixed, delay: 0, budget: 20% }'

  test('a service failing for everyone: the first 10 failures are retried (the minimum), then none until the 10s window has passed', async (t) => {
    const clock = fakeClock()
    const { stub, a, b } = await oneService(t, { service: BUDGET, clock })
    stub.route('GET /a', FAIL)
    stub.route('GET /b', FAIL)
    const total = (): number => stub.requests.length
    // The budget is the service's: requests through both endpoints spend it.
    const tries: number[] = []
    await inSequence(30, async (i) => {
      const before = total()
      const res = await get(i % 2 === 0 ? a : b)
      tries.push(total() - before)
      return res
    })
    assert.deepEqual(tries, [...Array<number>(10).fill(2), ...Array<number>(20).fill(1)])

    clock.advance(9_000)
    await get(a)
    assert.equal(total(), 41, 'after 9s the spent retries are still in the window')
    clock.advance(1_000)
    await get(a)
    assert.equal(total(), 43, 'after 10s they have left the window: the next failure is retried')
  })

  test('past the minimum, retries are at most 20% of the requests: 60 failing requests get 12 retries', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: BUDGET, clock: fakeClock() })
    stub.route('GET /a', FAIL)
    const tries: number[] = []
    await inSequence(60, async () => {
      const before = hits()
      const res = await get(a)
      tries.push(hits() - before)
      return res
    })
    // Requests 1-10: the minimum of 10. Then a retry only while retries < 20% of requests:
    // request 51 (20% = 10.2 > 10 retries) and request 56 (11.2 > 11).
    const retried = tries.flatMap((n, i) => (n === 2 ? [i + 1] : []))
    assert.deepEqual(retried, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 51, 56])
    assert.equal(hits(), 72)
  })
})

describe('baton check: BATON_RETRY_OVER_DEADLINE', () => {
  const config = (service: string, call: string, deadline: string, method = 'GET'): string => `version: 1
gateway: { name: Test }
services:
  svc: { url: "http://svc.local", ${service} }
endpoints:
  GET /a:
    timeout: ${deadline}
    calls:
      a: { request: ${method} svc /a${call === '' ? '' : `, ${call}`} }
`
  const warnings = (
    text: string,
  ): { severity: string; message: string; line: number | undefined; col: number | undefined; path: string }[] =>
    compileConfig(parseConfig('baton.yaml', text), { env: {} })
      .diagnostics.filter((d) => d.code === 'BATON_RETRY_OVER_DEADLINE')
      .map((d) => ({ severity: d.severity, message: d.message, line: d.line, col: d.col, path: d.path.join(' › ') }))

  test('3 tries of 200ms plus 2 × 100ms of backoff (800ms) under a 500ms deadline: warned, at the call', () => {
    const found = warnings(config('timeout: 200ms, retry: { attempts: 2, backoff: fixed, delay: 100ms }', '', '500ms'))
    assert.equal(found.length, 1)
    assert.deepEqual(found[0], {
      severity: 'warning',
      message: "worst case 800ms (3 tries of 200ms plus backoff) does not fit the endpoint's 500ms deadline",
      line: 9,
      col: 21,
      path: 'endpoints › GET /a › calls › a › request',
    })
  })

  test('the same worst case under an 800ms deadline fits: no warning', () => {
    assert.deepEqual(
      warnings(config('timeout: 200ms, retry: { attempts: 2, backoff: fixed, delay: 100ms }', '', '800ms')),
      [],
    )
  })

  test('exponential backoff counts its ceilings, capped at maxDelay: 4 × 100ms + 100 + 150 + 150 = 800ms', () => {
    const service = 'timeout: 100ms, retry: { attempts: 3, backoff: exponential, delay: 100ms, maxDelay: 150ms }'
    assert.deepEqual(warnings(config(service, '', '800ms')), [])
    assert.match(
      warnings(config(service, '', '799ms'))[0]?.message ?? '',
      /^worst case 800ms \(4 tries of 100ms plus backoff\)/,
    )
  })

  test('a call-level retry is checked, and the warning points at it', () => {
    const [found] = warnings(config('timeout: 200ms', 'retry: { attempts: 3, backoff: fixed, delay: 10ms }', '500ms'))
    assert.equal(found?.path, 'endpoints › GET /a › calls › a › retry')
    assert.match(found?.message ?? '', /^worst case 830ms \(4 tries of 200ms plus backoff\)/)
  })

  test('no warning when nothing is retried: retry: false, or a POST without idempotent: true (but a warning with it)', () => {
    const service = 'timeout: 200ms, retry: { attempts: 2, backoff: fixed, delay: 100ms }'
    assert.deepEqual(warnings(config(service, 'retry: false', '500ms')), [])
    assert.deepEqual(warnings(config(service, '', '500ms', 'POST')), [])
    assert.equal(warnings(config(service, 'idempotent: true', '500ms', 'POST')).length, 1)
  })

  test('retries without a timeout are unbounded: warned', () => {
    assert.match(
      warnings(config('retry: { attempts: 1 }', '', '5s'))[0]?.message ?? '',
      /^worst case unbounded \(2 tries of no timeout plus backoff\)/,
    )
  })
})

describe("a call waiting for one of its service's connections", () => {
  test('times out on time, while the call holding the only connection goes on', async (t) => {
    const stub = await stubFor(t)
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    stub.route('GET /held', () => released.then(() => OK))
    stub.route('GET /queued', OK)
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Queued }
services:
  s: { url: "${stub.url}", connections: 1, coalesce: false }
endpoints:
  GET /x:
    timeout: 5s
    calls:
      held: { request: GET s /held, timeout: 4s, required: false }
      queued: { request: GET s /queued, timeout: 200ms }
    response: { held: "\${held}", queued: "\${queued}" }
`,
    )
    // Its own timeout fails it (a required call): it did not wait for the connection to be free (it did before the
    // transport was undici's dispatch; with coalescing on, the coalescing stage gave up on it on time anyway).
    const res = await get(`${url}/x`)
    assertError(res, 502, 'DOWNSTREAM_FAILURE', 's failed: timed out', ['s'])
    assert.deepEqual(
      stub.requests.map((r) => r.url),
      ['/held'],
    )
    release()
  })
})

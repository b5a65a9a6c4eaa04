/**
 * What /health/ready reports per service (ServiceStats) and the retry budget, on their own.
 * The budget runs on a fake clock: no test waits for its 10-second window.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { RetryBudget, ServiceStats } from './stats.ts'

describe('ServiceStats', () => {
  test('nothing recorded: no calls, no error rate, no latency, no last failure', () => {
    assert.deepEqual(new ServiceStats().snapshot(), {
      calls: 0,
      errorRate: 0,
      p50: null,
      p95: null,
      inFlight: 0,
      lastFailure: null,
    })
  })

  test('error rate and p50/p95 over the recorded samples (the quantile q is sorted[floor(q·n)])', () => {
    const stats = new ServiceStats()
    // 1..100 ms in a scrambled order (37 is prime to 100); every 4th one failed.
    for (let i = 0; i < 100; i++) stats.record(((i * 37) % 100) + 1, i % 4 === 0 ? 'timeout' : null)
    const snapshot = stats.snapshot()
    assert.equal(snapshot.calls, 100)
    assert.equal(snapshot.errorRate, 0.25)
    assert.equal(snapshot.p50, 51)
    assert.equal(snapshot.p95, 96)
  })

  test('small samples: one sample is both quantiles; with 20, p95 is the slowest', () => {
    const one = new ServiceStats()
    one.record(7, null)
    assert.equal(one.snapshot().p50, 7)
    assert.equal(one.snapshot().p95, 7)

    const twenty = new ServiceStats()
    for (let ms = 20; ms >= 1; ms--) twenty.record(ms, null)
    assert.equal(twenty.snapshot().p50, 11)
    assert.equal(twenty.snapshot().p95, 20)
  })

  test('latencies are rounded to 0.1 ms and the error rate to 3 decimals', () => {
    const stats = new ServiceStats()
    stats.record(12.345, 'network')
    stats.record(12.36, null)
    stats.record(12.36, null)
    const snapshot = stats.snapshot()
    assert.equal(snapshot.errorRate, 0.333)
    assert.equal(snapshot.p50, 12.4)
    const slow = new ServiceStats()
    slow.record(12.345, null)
    assert.equal(slow.snapshot().p95, 12.3)
    slow.record(1, 'timeout')
    slow.record(1, 'timeout')
    assert.equal(slow.snapshot().errorRate, 0.667)
  })

  test('the window keeps only the last 256 samples: the oldest are overwritten', () => {
    const stats = new ServiceStats()
    for (let ms = 0; ms < 300; ms++) stats.record(ms, null)
    const snapshot = stats.snapshot()
    // 44..299 remain: p50 is the 129th of them, p95 the 244th.
    assert.equal(snapshot.calls, 256)
    assert.equal(snapshot.p50, 44 + 128)
    assert.equal(snapshot.p95, 44 + 243)
  })

  test('failures that left the window no longer count in the error rate', () => {
    const stats = new ServiceStats()
    for (let i = 0; i < 256; i++) stats.record(1_000, 'status 503')
    assert.equal(stats.snapshot().errorRate, 1)
    for (let i = 0; i < 200; i++) stats.record(5, null)
    // 56 failures of 1 s and 200 successes of 5 ms left.
    let snapshot = stats.snapshot()
    assert.equal(snapshot.calls, 256)
    assert.equal(snapshot.errorRate, 0.219)
    assert.equal(snapshot.p50, 5)
    assert.equal(snapshot.p95, 1_000)
    for (let i = 0; i < 56; i++) stats.record(5, null)
    snapshot = stats.snapshot()
    assert.equal(snapshot.errorRate, 0)
    assert.equal(snapshot.p95, 5)
  })

  test('lastFailure: the kind of the latest failure and when (wall clock), kept through successes', () => {
    const stats = new ServiceStats()
    stats.record(3, null)
    assert.equal(stats.snapshot().lastFailure, null)

    const before = Date.now()
    stats.record(30_000, 'timeout')
    const after = Date.now()
    stats.record(3, null)
    const failure = stats.snapshot().lastFailure
    assert.ok(failure !== null)
    assert.equal(failure.kind, 'timeout')
    assert.match(failure.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    const at = Date.parse(failure.at)
    assert.ok(at >= before && at <= after, `${failure.at} between ${before} and ${after}`)

    stats.record(8, 'status 502')
    assert.equal(stats.snapshot().lastFailure?.kind, 'status 502')
    // Still reported once the failure itself has left the 256-sample window.
    for (let i = 0; i < 300; i++) stats.record(3, null)
    assert.equal(stats.snapshot().errorRate, 0)
    assert.equal(stats.snapshot().lastFailure?.kind, 'status 502')
  })

  test('inFlight is reported as it stands, apart from the recorded samples', () => {
    const stats = new ServiceStats()
    stats.inFlight = 3
    assert.equal(stats.snapshot().inFlight, 3)
    assert.equal(stats.snapshot().calls, 0)
    stats.record(10, null)
    stats.inFlight--
    assert.equal(stats.snapshot().inFlight, 2)
    assert.equal(stats.snapshot().calls, 1)
  })
})

describe('RetryBudget', () => {
  /** A budget on a fake clock starting at 0 ms. */
  function budgetAt(ratio: number, minRetries: number) {
    let t = 0
    const budget = new RetryBudget(ratio, minRetries, { now: () => t })
    return {
      budget,
      at: (ms: number): void => {
        t = ms
      },
      /** How many retries the budget grants in a row right now (it stops at the first refusal). */
      drain: (): number => {
        let granted = 0
        while (budget.tryRetry()) granted++
        return granted
      },
      requests: (n: number): void => {
        for (let i = 0; i < n; i++) budget.request()
      },
    }
  }

  test('a quiet service may retry minRetries times per window, no more', () => {
    const b = budgetAt(0.2, 3)
    assert.equal(b.budget.tryRetry(), true)
    assert.equal(b.budget.tryRetry(), true)
    assert.equal(b.budget.tryRetry(), true)
    assert.equal(b.budget.tryRetry(), false)
    assert.equal(b.budget.tryRetry(), false)
    b.requests(5) // 0.2 × 5 = 1 is below the floor of 3
    assert.equal(b.budget.tryRetry(), false)
  })

  test('a busy service may retry ratio × its requests; the floor is not added on top', () => {
    const b = budgetAt(0.2, 3)
    b.requests(50)
    assert.equal(b.drain(), 10)
    b.requests(5) // 55 requests: 11
    assert.equal(b.drain(), 1)
    assert.equal(b.budget.tryRetry(), false)
  })

  test('a retry is taken while the retries are under ratio × requests: 12 requests at 20% (2.4) allow a third', () => {
    // The rule of test/resilience.test.ts over HTTP (60 failing requests get 12 retries, at requests 51 and 56).
    const b = budgetAt(0.2, 1)
    b.requests(12)
    assert.equal(b.drain(), 3)
  })

  test('retries taken leave the window 10 s later (at the start of the 11th second), one bucket at a time', () => {
    const b = budgetAt(0.2, 3)
    assert.equal(b.drain(), 3)
    b.at(5_000)
    assert.equal(b.budget.tryRetry(), false)
    b.at(9_999)
    assert.equal(b.budget.tryRetry(), false)
    b.at(10_000) // the 3 retries of second 0 are gone
    assert.equal(b.drain(), 3)
    b.at(19_999)
    assert.equal(b.budget.tryRetry(), false)
    b.at(20_000)
    assert.equal(b.drain(), 3)
  })

  test('staggered retries come back in the order they were taken', () => {
    const b = budgetAt(0.2, 3)
    assert.equal(b.budget.tryRetry(), true) // second 0
    b.at(5_500)
    assert.equal(b.drain(), 2) // second 5
    b.at(9_999)
    assert.equal(b.budget.tryRetry(), false)
    b.at(10_000)
    assert.equal(b.drain(), 1)
    b.at(14_999)
    assert.equal(b.budget.tryRetry(), false)
    b.at(15_000)
    assert.equal(b.drain(), 2)
  })

  test('requests leave the window too, shrinking the cap back to the floor', () => {
    const b = budgetAt(0.2, 3)
    b.requests(50) // second 0
    b.at(5_000)
    assert.equal(b.drain(), 10) // second 5
    b.at(9_999)
    assert.equal(b.budget.tryRetry(), false)
    b.at(10_000) // the 50 requests are gone; the 10 retries are still there
    b.requests(1)
    assert.equal(b.budget.tryRetry(), false)
    b.at(15_000) // and now the retries too: the floor again
    assert.equal(b.drain(), 3)
  })

  test('a long pause clears every bucket', () => {
    for (const pause of [10_000, 25_000, 3_600_000]) {
      const b = budgetAt(0.2, 3)
      // 5 requests and a retry in each of the 10 seconds, so every bucket holds something.
      for (let s = 0; s < 10; s++) {
        b.at(s * 1_000)
        b.requests(5)
        assert.equal(b.budget.tryRetry(), true)
      }
      assert.equal(b.budget.tryRetry(), false, '50 requests: 10 retries, all taken')
      b.at(9_000 + pause)
      assert.equal(b.drain(), 3, `after ${pause} ms: the floor, and nothing left over`)
    }
  })
})

/**
 * The circuit breaker's state machine, on its own and driven by a fake clock: no test waits.
 * test/breaker.test.ts covers the same breaker end to end, over HTTP.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { type BreakerOptions, type BreakerState, CircuitBreaker } from './breaker.ts'

const OPTIONS: BreakerOptions = { failures: 3, window: 10_000, openFor: 5_000, halfOpenProbes: 2 }

/** A breaker on a fake clock (starting at `start` ms), recording its state changes. */
function breakerAt(start = 0, options: Partial<BreakerOptions> = {}) {
  let t = start
  const clock = { now: () => t }
  const changes: [BreakerState, BreakerState][] = []
  const breaker = new CircuitBreaker({ ...OPTIONS, ...options }, clock, {
    onStateChange: (from, to) => {
      changes.push([from, to])
    },
  })
  return {
    breaker,
    changes,
    at: (ms: number): void => {
      t = ms
    },
  }
}

type Fixture = ReturnType<typeof breakerAt>

/** `failures` failures without tickets at `at`: opens a closed breaker. */
function open(b: Fixture, at: number): void {
  b.at(at)
  for (let i = 0; i < b.breaker.options.failures; i++) b.breaker.failure()
  assert.equal(b.breaker.state, 'open')
}

/** Opened at `openedAt`, half-open at `openedAt + openFor`. */
function halfOpen(b: Fixture, openedAt: number): void {
  open(b, openedAt)
  b.at(openedAt + b.breaker.options.openFor)
  assert.equal(b.breaker.state, 'half-open')
}

describe('closed', () => {
  test('stays closed below the threshold: 2 of 3 failures, calls still go through', () => {
    const b = breakerAt()
    const ticket = b.breaker.tryAcquire()
    assert.ok(ticket >= 0)
    b.at(100)
    b.breaker.failure(ticket)
    b.at(200)
    b.breaker.failure()
    assert.equal(b.breaker.state, 'closed')
    for (let i = 0; i < 10; i++) assert.notEqual(b.breaker.tryAcquire(), -1)
    assert.deepEqual(b.changes, [])
    assert.equal(b.breaker.changedAt, 0)
  })

  test('successes while closed neither count nor reset the failures', () => {
    const b = breakerAt()
    b.breaker.failure()
    b.breaker.failure()
    for (let i = 0; i < 5; i++) b.breaker.success(b.breaker.tryAcquire())
    assert.equal(b.breaker.state, 'closed')
    b.breaker.failure()
    assert.equal(b.breaker.state, 'open')
  })

  test('consecutive: a success while closed forgets the failures before it; `failures` in a row open it', () => {
    const b = breakerAt(0, { consecutive: true, window: Number.POSITIVE_INFINITY })
    b.breaker.failure()
    b.breaker.failure()
    b.breaker.success(b.breaker.tryAcquire())
    b.breaker.failure()
    b.breaker.failure()
    assert.equal(b.breaker.state, 'closed')
    b.at(1_000_000)
    b.breaker.failure()
    assert.equal(b.breaker.state, 'open')
    assert.deepEqual(b.changes, [['closed', 'open']])
  })

  test('opens at exactly `failures` failures within `window`', () => {
    const b = breakerAt()
    const ticket = b.breaker.tryAcquire()
    b.at(1_000)
    b.breaker.failure(ticket)
    b.at(2_000)
    b.breaker.failure(ticket)
    assert.equal(b.breaker.state, 'closed')
    b.at(3_000)
    b.breaker.failure(ticket)
    assert.equal(b.breaker.state, 'open')
    assert.deepEqual(b.changes, [['closed', 'open']])
    assert.equal(b.breaker.changedAt, 3_000)
  })

  test('the window is rolling: a failure `window` ms old no longer counts, one ms younger still does', () => {
    const late = breakerAt()
    late.breaker.failure() // t 0
    late.at(5_000)
    late.breaker.failure()
    late.at(10_000) // the first failure is exactly `window` old: two in the window
    late.breaker.failure()
    assert.equal(late.breaker.state, 'closed')
    late.at(14_999) // 5 000, 10 000 and 14 999: three within 10 s
    late.breaker.failure()
    assert.equal(late.breaker.state, 'open')
    assert.equal(late.breaker.changedAt, 14_999)

    const inTime = breakerAt()
    inTime.breaker.failure() // t 0
    inTime.at(5_000)
    inTime.breaker.failure()
    inTime.at(9_999)
    inTime.breaker.failure()
    assert.equal(inTime.breaker.state, 'open')
  })

  test('failures spread wider than the window never open it', () => {
    const b = breakerAt()
    for (let t = 0; t <= 100_000; t += 5_000) {
      b.at(t)
      b.breaker.failure()
      assert.equal(b.breaker.state, 'closed', `at ${t}`)
    }
    assert.deepEqual(b.changes, [])
  })
})

describe('open', () => {
  test('while open every tryAcquire returns -1', () => {
    const b = breakerAt()
    open(b, 1_000)
    for (const t of [1_000, 2_000, 5_999]) {
      b.at(t)
      assert.equal(b.breaker.tryAcquire(), -1, `at ${t}`)
    }
  })

  test('half-open after exactly `openFor` ms, not 1 ms before', () => {
    const b = breakerAt()
    open(b, 1_000)
    b.at(5_999)
    assert.equal(b.breaker.state, 'open')
    assert.equal(b.breaker.tryAcquire(), -1)
    b.at(6_000)
    assert.equal(b.breaker.state, 'half-open')
    assert.deepEqual(b.changes, [
      ['closed', 'open'],
      ['open', 'half-open'],
    ])
    assert.equal(b.breaker.changedAt, 6_000)
  })

  test('tryAcquire notices openFor has passed too (without reading state first)', () => {
    const b = breakerAt()
    open(b, 1_000)
    b.at(6_000)
    assert.notEqual(b.breaker.tryAcquire(), -1)
    assert.equal(b.breaker.state, 'half-open')
  })

  test('failures and successes while open change nothing and do not restart openFor', () => {
    const b = breakerAt()
    const ticket = b.breaker.tryAcquire()
    open(b, 1_000)
    b.at(5_999)
    for (let i = 0; i < OPTIONS.failures; i++) b.breaker.failure()
    b.breaker.failure(ticket)
    b.breaker.success(ticket)
    b.breaker.release(ticket)
    assert.equal(b.breaker.changedAt, 1_000)
    b.at(6_000)
    assert.equal(b.breaker.state, 'half-open')
    assert.deepEqual(b.changes, [
      ['closed', 'open'],
      ['open', 'half-open'],
    ])
  })
})

describe('half-open', () => {
  test('hands out exactly `halfOpenProbes` tickets, then -1', () => {
    const b = breakerAt(0, { halfOpenProbes: 3 })
    halfOpen(b, 1_000)
    const probes = [b.breaker.tryAcquire(), b.breaker.tryAcquire(), b.breaker.tryAcquire()]
    for (const probe of probes) assert.notEqual(probe, -1)
    assert.equal(b.breaker.tryAcquire(), -1)
    assert.equal(b.breaker.tryAcquire(), -1)
    assert.equal(b.breaker.state, 'half-open')
  })

  test('closes only when all probes succeed', () => {
    const b = breakerAt()
    halfOpen(b, 1_000)
    const first = b.breaker.tryAcquire()
    const second = b.breaker.tryAcquire()
    b.at(6_100)
    b.breaker.success(first)
    assert.equal(b.breaker.state, 'half-open')
    assert.equal(b.breaker.tryAcquire(), -1, 'a success does not hand out another probe')
    b.at(6_200)
    b.breaker.success(second)
    assert.equal(b.breaker.state, 'closed')
    assert.equal(b.breaker.changedAt, 6_200)
    assert.deepEqual(b.changes, [
      ['closed', 'open'],
      ['open', 'half-open'],
      ['half-open', 'closed'],
    ])
    for (let i = 0; i < 10; i++) assert.notEqual(b.breaker.tryAcquire(), -1)
  })

  test('closed again, it counts failures afresh: the ones that opened it are gone', () => {
    const b = breakerAt()
    halfOpen(b, 1_000)
    b.breaker.success(b.breaker.tryAcquire())
    b.breaker.success(b.breaker.tryAcquire())
    assert.equal(b.breaker.state, 'closed')
    b.breaker.failure()
    b.breaker.failure()
    assert.equal(b.breaker.state, 'closed')
    b.breaker.failure()
    assert.equal(b.breaker.state, 'open')
  })

  test('a probe failure reopens it, even after another probe succeeded, and openFor restarts from then', () => {
    const b = breakerAt()
    halfOpen(b, 1_000)
    const first = b.breaker.tryAcquire()
    const second = b.breaker.tryAcquire()
    b.breaker.success(first)
    b.at(7_000)
    b.breaker.failure(second)
    assert.equal(b.breaker.state, 'open')
    assert.equal(b.breaker.changedAt, 7_000)
    assert.equal(b.breaker.tryAcquire(), -1)
    b.at(11_999)
    assert.equal(b.breaker.state, 'open')
    b.at(12_000)
    assert.equal(b.breaker.state, 'half-open')
    assert.deepEqual(b.changes, [
      ['closed', 'open'],
      ['open', 'half-open'],
      ['half-open', 'open'],
      ['open', 'half-open'],
    ])
  })

  test('the first probe failing reopens it at once; the other probe succeeding later does not close it', () => {
    const b = breakerAt()
    halfOpen(b, 1_000)
    const first = b.breaker.tryAcquire()
    const second = b.breaker.tryAcquire()
    b.at(6_500)
    b.breaker.failure(first)
    assert.equal(b.breaker.state, 'open')
    b.breaker.success(second)
    assert.equal(b.breaker.state, 'open')
    // The new half-open period needs its own probes: the old one's success is not carried over.
    b.at(11_500)
    assert.equal(b.breaker.state, 'half-open')
    b.breaker.success(second)
    b.breaker.success(b.breaker.tryAcquire())
    assert.equal(b.breaker.state, 'half-open')
    b.breaker.success(b.breaker.tryAcquire())
    assert.equal(b.breaker.state, 'closed')
  })

  test('release() gives a probe back: another call may take it, and its success counts', () => {
    const b = breakerAt(0, { halfOpenProbes: 1 })
    halfOpen(b, 1_000)
    const probe = b.breaker.tryAcquire()
    assert.equal(b.breaker.tryAcquire(), -1)
    b.breaker.release(probe)
    assert.equal(b.breaker.state, 'half-open')
    const again = b.breaker.tryAcquire()
    assert.notEqual(again, -1)
    assert.equal(b.breaker.tryAcquire(), -1, 'one probe given back, one handed out')
    b.breaker.success(again)
    assert.equal(b.breaker.state, 'closed')
  })

  test('release() after a probe succeeded frees only the probes still out', () => {
    const b = breakerAt()
    halfOpen(b, 1_000)
    const first = b.breaker.tryAcquire()
    const second = b.breaker.tryAcquire()
    b.breaker.success(first)
    b.breaker.release(second)
    const third = b.breaker.tryAcquire()
    assert.notEqual(third, -1)
    assert.equal(b.breaker.tryAcquire(), -1)
    b.breaker.success(third)
    assert.equal(b.breaker.state, 'closed')
  })

  test('release() of a ticket from an earlier state gives no probe back', () => {
    const b = breakerAt(0, { halfOpenProbes: 1 })
    const stale = b.breaker.tryAcquire()
    halfOpen(b, 1_000)
    b.breaker.tryAcquire()
    b.breaker.release(stale)
    assert.equal(b.breaker.tryAcquire(), -1)
  })

  test('failure() without a ticket (an active probe) does nothing while half-open', () => {
    const b = breakerAt()
    halfOpen(b, 1_000)
    const probe = b.breaker.tryAcquire()
    b.at(6_500)
    b.breaker.failure()
    b.breaker.failure()
    b.breaker.failure()
    assert.equal(b.breaker.state, 'half-open')
    assert.equal(b.breaker.changedAt, 6_000)
    assert.notEqual(b.breaker.tryAcquire(), -1, 'the second probe is still there')
    b.breaker.failure(probe)
    assert.equal(b.breaker.state, 'open')
  })
})

describe('tickets from an earlier state', () => {
  test('a call let through while closed, answering while open, changes nothing', () => {
    const b = breakerAt()
    const stale = b.breaker.tryAcquire()
    open(b, 1_000)
    b.breaker.success(stale)
    b.breaker.failure(stale)
    assert.equal(b.breaker.state, 'open')
    assert.equal(b.breaker.changedAt, 1_000)
    assert.equal(b.changes.length, 1)
  })

  test('its success is not a probe success while half-open', () => {
    const b = breakerAt(0, { halfOpenProbes: 1 })
    const stale = b.breaker.tryAcquire()
    halfOpen(b, 1_000)
    b.breaker.success(stale)
    assert.equal(b.breaker.state, 'half-open')
    const probe = b.breaker.tryAcquire()
    assert.notEqual(probe, -1, 'the probe is still to be handed out')
    b.breaker.success(probe)
    assert.equal(b.breaker.state, 'closed')
  })

  test('its failure is not a probe failure while half-open', () => {
    const b = breakerAt(0, { halfOpenProbes: 1 })
    const stale = b.breaker.tryAcquire()
    halfOpen(b, 1_000)
    const probe = b.breaker.tryAcquire()
    b.at(6_500)
    b.breaker.failure(stale)
    assert.equal(b.breaker.state, 'half-open')
    assert.equal(b.breaker.changedAt, 6_000)
    b.breaker.success(probe)
    assert.equal(b.breaker.state, 'closed')
  })

  test('a probe of an earlier half-open period counts for nothing in the next one', () => {
    const b = breakerAt(0, { halfOpenProbes: 2 })
    halfOpen(b, 1_000)
    const failed = b.breaker.tryAcquire()
    const late = b.breaker.tryAcquire()
    b.breaker.failure(failed)
    b.at(11_000)
    assert.equal(b.breaker.state, 'half-open')
    b.breaker.failure(late)
    assert.equal(b.breaker.state, 'half-open')
    b.breaker.success(late)
    b.breaker.success(late)
    assert.equal(b.breaker.state, 'half-open')
    assert.notEqual(b.breaker.tryAcquire(), -1)
    assert.notEqual(b.breaker.tryAcquire(), -1)
    assert.equal(b.breaker.tryAcquire(), -1)
  })
})

describe('failure() without a ticket', () => {
  test('counts while closed, like any failure', () => {
    const b = breakerAt()
    b.breaker.failure()
    b.breaker.failure()
    assert.equal(b.breaker.state, 'closed')
    b.at(500)
    b.breaker.failure()
    assert.equal(b.breaker.state, 'open')
    assert.equal(b.breaker.changedAt, 500)
  })

  test('mixes with ticketed failures in the same window', () => {
    const b = breakerAt()
    const ticket = b.breaker.tryAcquire()
    b.breaker.failure(ticket)
    b.breaker.failure()
    b.breaker.failure(ticket)
    assert.equal(b.breaker.state, 'open')
  })
})

describe('onStateChange and changedAt', () => {
  test('one event per transition, (from, to), through a whole cycle; none without a real change', () => {
    const b = breakerAt()
    assert.equal(b.breaker.state, 'closed')
    b.breaker.failure()
    b.breaker.success(b.breaker.tryAcquire())
    assert.deepEqual(b.changes, [])

    open(b, 1_000)
    assert.equal(b.breaker.state, 'open')
    b.at(3_000)
    assert.equal(b.breaker.state, 'open')
    assert.equal(b.changes.length, 1)

    b.at(6_000)
    assert.equal(b.breaker.state, 'half-open')
    assert.equal(b.breaker.state, 'half-open')
    b.breaker.tryAcquire()
    b.at(6_100)
    b.breaker.failure(b.breaker.tryAcquire())
    assert.equal(b.breaker.changedAt, 6_100)

    b.at(11_100)
    b.breaker.success(b.breaker.tryAcquire())
    assert.equal(b.breaker.changedAt, 11_100)
    b.at(11_200)
    b.breaker.success(b.breaker.tryAcquire())
    assert.equal(b.breaker.state, 'closed')
    assert.equal(b.breaker.changedAt, 11_200)
    assert.equal(b.breaker.state, 'closed')

    assert.deepEqual(b.changes, [
      ['closed', 'open'],
      ['open', 'half-open'],
      ['half-open', 'open'],
      ['open', 'half-open'],
      ['half-open', 'closed'],
    ])
  })

  test('changedAt starts at construction time and moves only with transitions', () => {
    const b = breakerAt(42)
    assert.equal(b.breaker.changedAt, 42)
    b.at(100)
    b.breaker.failure()
    b.breaker.failure()
    assert.equal(b.breaker.changedAt, 42)
    b.at(200)
    b.breaker.failure()
    assert.equal(b.breaker.changedAt, 200)
    b.at(5_199)
    assert.equal(b.breaker.state, 'open')
    assert.equal(b.breaker.changedAt, 200)
    b.at(5_200)
    assert.equal(b.breaker.state, 'half-open')
    assert.equal(b.breaker.changedAt, 5_200)
  })

  test('changedAt of half-open is when openFor ran out, however late the state is read', () => {
    const b = breakerAt()
    open(b, 1_000)
    b.at(20_000)
    assert.equal(b.breaker.state, 'half-open')
    assert.equal(b.breaker.changedAt, 6_000)
  })

  test('changedAt alone sees that openFor ran out', () => {
    const b = breakerAt()
    open(b, 1_000)
    b.at(20_000)
    assert.equal(b.breaker.changedAt, 6_000)
  })
})

/**
 * The bulkhead on its own: slots, the waiting queue, overflow and aborts. Nothing here waits
 * for time to pass; a test only lets pending promise callbacks run (one event-loop turn).
 * test/bulkhead.test.ts covers the same bulkhead end to end, over HTTP.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { setImmediate as turn } from 'node:timers/promises'
import { Bulkhead, BulkheadFull } from './bulkhead.ts'

type Outcome = { state: 'pending' } | { state: 'resolved' } | { state: 'rejected'; reason: unknown }

/** Follows a waiter's promise without awaiting it. */
function watch(promise: Promise<void> | null): { readonly outcome: Outcome } {
  assert.ok(promise !== null, 'expected to wait for a slot')
  const watched: { outcome: Outcome } = { outcome: { state: 'pending' } }
  promise.then(
    () => {
      watched.outcome = { state: 'resolved' }
    },
    (reason: unknown) => {
      watched.outcome = { state: 'rejected', reason }
    },
  )
  return watched
}

/** Rejected with exactly `reason` (the same object, not an equal one). */
function assertRejectedWith(watched: { readonly outcome: Outcome }, reason: unknown): void {
  assert.equal(watched.outcome.state, 'rejected')
  assert.equal((watched.outcome as { reason: unknown }).reason, reason)
}

const signal = (): AbortSignal => new AbortController().signal

function assertFull(bulkhead: Bulkhead, service = 'svc'): void {
  assert.throws(
    () => bulkhead.acquire(service, signal()),
    (err: unknown) => {
      assert.ok(err instanceof BulkheadFull)
      assert.equal(err.name, 'BulkheadFull')
      assert.equal(err.message, `${service}: too many calls in flight (bulkhead full)`)
      return true
    },
  )
}

describe('slots and queue', () => {
  test('up to maxConcurrent calls take a slot synchronously: acquire returns null', () => {
    const bulkhead = new Bulkhead(3, 2)
    assert.equal(bulkhead.active, 0)
    for (let i = 1; i <= 3; i++) {
      assert.equal(bulkhead.acquire('svc', signal()), null)
      assert.equal(bulkhead.active, i)
      assert.equal(bulkhead.queued, 0)
    }
  })

  test('the next maxQueued calls get promises, still pending; the one after that gets BulkheadFull', async () => {
    const bulkhead = new Bulkhead(2, 2)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    const first = bulkhead.acquire('svc', signal())
    assert.ok(first instanceof Promise)
    assert.equal(bulkhead.queued, 1)
    const second = bulkhead.acquire('svc', signal())
    assert.ok(second instanceof Promise)
    assert.equal(bulkhead.queued, 2)
    assertFull(bulkhead, 'cart')
    assertFull(bulkhead, 'cart')
    assert.equal(bulkhead.active, 2)
    assert.equal(bulkhead.queued, 2, 'a refused call is not queued')
    const waiting = [watch(first), watch(second)]
    await turn()
    assert.deepEqual(
      waiting.map((w) => w.outcome.state),
      ['pending', 'pending'],
    )
  })

  test('release wakes the oldest waiter first (FIFO), handing it the slot; counts are exact', async () => {
    const bulkhead = new Bulkhead(2, 3)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    const waiting = [1, 2, 3].map(() => watch(bulkhead.acquire('svc', signal())))
    const states = (): string[] => waiting.map((w) => w.outcome.state)
    assert.equal(bulkhead.queued, 3)

    bulkhead.release()
    assert.equal(bulkhead.active, 2, 'the slot went to the waiter')
    assert.equal(bulkhead.queued, 2)
    await turn()
    assert.deepEqual(states(), ['resolved', 'pending', 'pending'])

    bulkhead.release()
    assert.equal(bulkhead.active, 2)
    assert.equal(bulkhead.queued, 1)
    await turn()
    assert.deepEqual(states(), ['resolved', 'resolved', 'pending'])

    // A new call while the queue still has room joins its end, behind the third.
    const fourth = watch(bulkhead.acquire('svc', signal()))
    assert.equal(bulkhead.queued, 2)
    bulkhead.release()
    await turn()
    assert.deepEqual(states(), ['resolved', 'resolved', 'resolved'])
    assert.equal(fourth.outcome.state, 'pending')
    bulkhead.release()
    await turn()
    assert.equal(fourth.outcome.state, 'resolved')
    assert.equal(bulkhead.active, 2)
    assert.equal(bulkhead.queued, 0)

    bulkhead.release()
    assert.equal(bulkhead.active, 1)
    bulkhead.release()
    assert.equal(bulkhead.active, 0)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    assert.equal(bulkhead.active, 1)
  })

  test('with the queue full, a release makes room for exactly one more waiter', () => {
    const bulkhead = new Bulkhead(1, 1)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    watch(bulkhead.acquire('svc', signal()))
    assertFull(bulkhead)
    bulkhead.release()
    assert.equal(bulkhead.queued, 0)
    watch(bulkhead.acquire('svc', signal()))
    assertFull(bulkhead)
  })

  test('maxQueued 0: no waiting at all, a call beyond maxConcurrent fails at once', () => {
    const bulkhead = new Bulkhead(1, 0)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    assertFull(bulkhead)
    assert.equal(bulkhead.active, 1)
    assert.equal(bulkhead.queued, 0)
    bulkhead.release()
    assert.equal(bulkhead.active, 0)
    assert.equal(bulkhead.acquire('svc', signal()), null)
  })
})

describe('aborts', () => {
  test("aborting a queued waiter rejects its promise with the signal's reason and takes it out of the queue", async () => {
    const bulkhead = new Bulkhead(1, 3)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    const controller = new AbortController()
    const aborted = watch(bulkhead.acquire('svc', controller.signal))
    const next = watch(bulkhead.acquire('svc', signal()))
    assert.equal(bulkhead.queued, 2)

    const reason = new Error('client went away')
    controller.abort(reason)
    assert.equal(bulkhead.queued, 1)
    assert.equal(bulkhead.active, 1)
    await turn()
    assertRejectedWith(aborted, reason)

    // The slot goes to the next waiter, not to the aborted one.
    bulkhead.release()
    assert.equal(bulkhead.queued, 0)
    assert.equal(bulkhead.active, 1)
    await turn()
    assert.equal(next.outcome.state, 'resolved')
  })

  test('an abort without a reason rejects with the AbortError DOMException of the signal', async () => {
    const bulkhead = new Bulkhead(1, 1)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    const controller = new AbortController()
    const waiter = watch(bulkhead.acquire('svc', controller.signal))
    controller.abort()
    await turn()
    const reason: unknown = controller.signal.reason
    assertRejectedWith(waiter, reason)
    assert.ok(reason instanceof DOMException)
    assert.equal(reason.name, 'AbortError')
  })

  test('an aborted waiter does not consume a slot: after the holder releases, the bulkhead is empty', () => {
    const bulkhead = new Bulkhead(1, 1)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    const controller = new AbortController()
    watch(bulkhead.acquire('svc', controller.signal))
    controller.abort(new Error('gone'))
    assert.equal(bulkhead.queued, 0)
    bulkhead.release()
    assert.equal(bulkhead.active, 0)
    assert.equal(bulkhead.queued, 0)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    assert.equal(bulkhead.active, 1)
  })

  test('an abort frees a place in the queue', () => {
    const bulkhead = new Bulkhead(1, 1)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    const controller = new AbortController()
    watch(bulkhead.acquire('svc', controller.signal))
    assertFull(bulkhead)
    controller.abort(new Error('gone'))
    watch(bulkhead.acquire('svc', signal()))
    assert.equal(bulkhead.queued, 1)
  })

  test('aborting after the waiter got its slot changes nothing', async () => {
    const bulkhead = new Bulkhead(1, 1)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    const controller = new AbortController()
    const waiter = watch(bulkhead.acquire('svc', controller.signal))
    bulkhead.release()
    controller.abort(new Error('too late'))
    await turn()
    assert.equal(waiter.outcome.state, 'resolved')
    assert.equal(bulkhead.active, 1)
    assert.equal(bulkhead.queued, 0)
  })

  test('an already aborted signal with a slot free: the slot is taken synchronously (the call itself sees the abort)', () => {
    const bulkhead = new Bulkhead(1, 1)
    assert.equal(bulkhead.acquire('svc', AbortSignal.abort(new Error('gone'))), null)
    assert.equal(bulkhead.active, 1)
  })

  test('an already aborted signal with no slot free: rejected at once with its reason, never queued', async () => {
    const bulkhead = new Bulkhead(1, 1)
    assert.equal(bulkhead.acquire('svc', signal()), null)
    const reason = new Error('gone')
    const waiter = watch(bulkhead.acquire('svc', AbortSignal.abort(reason)))
    await turn()
    assertRejectedWith(waiter, reason)
    assert.equal(bulkhead.queued, 0)
    bulkhead.release()
    assert.equal(bulkhead.active, 0)
  })
})

/**
 * Bulkheads, end to end: a slow service gets at most maxConcurrent calls and maxQueued
 * waiting; the rest fail at once with 503, without touching its breaker, and endpoints that
 * do not call it keep answering.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { assertError, type ClientResponse, get, startGateway, stubFor } from './helpers/gateway.ts'
import { fire, gate, inSequence, oneService, settled } from './helpers/resilience.ts'
import { eventually, hang, json } from './helpers/stub.ts'

const assertFull = (res: ClientResponse, service = 'svc'): void => {
  assertError(res, 503, 'BULKHEAD_FULL', `too many calls in flight to ${service}`, [service])
}

describe('bulkhead', () => {
  test('maxConcurrent 2, maxQueued 1: two calls in flight, one waiting, and a fourth fails at once, unseen by the service', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: 'bulkhead: { maxConcurrent: 2, maxQueued: 1 }' })
    const held = gate()
    stub.route('GET /a', held.hold(json({ ok: true })))
    const first = [fire(a), fire(a)]
    await eventually(() => stub.inFlight('GET /a') === 2, 'two calls in flight')
    // Which of the next two waits and which is refused depends on which the gateway sees first.
    const next = [fire(a), fire(a)]
    await eventually(() => settled(next).length === 1, 'one of them to be refused')
    assertFull(settled(next)[0] as ClientResponse)
    assert.deepEqual(settled(first), [], 'the calls in flight are still in flight')
    assert.equal(hits(), 2)

    held.open()
    const all = await Promise.all([...first, ...next].map(async (r) => await r.done))
    assert.deepEqual(all.map((r) => r.status).sort(), [200, 200, 200, 503])
    assert.equal(hits(), 3, 'the queued call went through once a slot was free')
    assert.equal(stub.peak('GET /a'), 2)
  })

  test('a full bulkhead does not trip the breaker (failures: 1 would open at the first failure counted)', async (t) => {
    const { stub, a, hits } = await oneService(t, {
      service: 'bulkhead: { maxConcurrent: 1 }, circuitBreaker: { failures: 1, window: 60s, openFor: 30s }',
    })
    const held = gate()
    stub.route('GET /a', held.hold(json({ ok: true })))
    const inFlight = fire(a)
    await eventually(() => hits() === 1, 'the call in flight')
    for (const res of await inSequence(3, async () => await get(a))) assertFull(res)
    held.open()
    assert.equal((await inFlight.done).status, 200)
    const res = await get(a)
    assert.equal(res.status, 200, 'the overflows opened the breaker')
    assert.equal(hits(), 2)
  })

  test('waiting calls take the slots as they free up, never more than maxConcurrent at the service', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: 'bulkhead: { maxConcurrent: 2, maxQueued: 8 }' })
    stub.route('GET /a', json({ ok: true }, { delay: 20 }))
    const answers = await Promise.all(Array.from({ length: 10 }, async () => await get(a)))
    assert.deepEqual(
      answers.map((r) => r.status),
      Array<number>(10).fill(200),
    )
    assert.equal(hits(), 10)
    assert.equal(stub.peak('GET /a'), 2)
  })

  test('slots freed by clients that hang up go to the waiting calls; the service never has more than maxConcurrent at once', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: 'bulkhead: { maxConcurrent: 2, maxQueued: 2 }' })
    stub.route('GET /a', hang())
    const first = [fire(a), fire(a)]
    await eventually(() => stub.inFlight('GET /a') === 2, 'two calls in flight')
    // Three more: two wait, one is refused; once one is refused the other two are surely waiting.
    const rest = [fire(a), fire(a), fire(a)]
    await eventually(() => settled(rest).length === 1, 'one of them to be refused')
    assertFull(settled(rest)[0] as ClientResponse)

    for (const r of first) r.abort()
    await eventually(() => hits() === 4, 'the two waiting calls to reach the service')
    const [one, two] = stub.requestsTo('GET /a')
    await eventually(() => one?.closed === true && two?.closed === true, "the abandoned calls' connections to close")
    assert.deepEqual([one?.aborted, two?.aborted], [true, true])
    assert.equal(stub.inFlight('GET /a'), 2)
    assert.equal(stub.peak('GET /a'), 2)
    for (const r of rest) r.abort()
    await eventually(() => stub.inFlight('GET /a') === 0, 'every connection to close')
    assert.equal(hits(), 4)
  })

  test('isolation: while a hanging service is saturated, an endpoint that does not call it answers every request of a burst', async (t) => {
    const stub = await stubFor(t)
    const held = gate()
    stub.route('GET /slow', held.hold(json({ slow: true })))
    stub.route('GET /fast', json({ fast: true }))
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Isolation }
services:
  # Each client request makes its own call here (these tests count them); coalescing is test/coalesce.test.ts's.
  slow: { url: "${stub.url}", bulkhead: { maxConcurrent: 2, maxQueued: 2 }, coalesce: false }
  fast: { url: "${stub.url}", coalesce: false }
endpoints:
  GET /slow:
    calls:
      slow: { request: GET slow /slow }
  GET /fast:
    calls:
      fast: { request: GET fast /fast }
`,
    )
    const slow = Array.from({ length: 8 }, () => fire(`${url}/slow`))
    await eventually(
      () => stub.inFlight('GET /slow') === 2 && settled(slow).length === 4,
      '2 slow calls in flight, 2 queued, 4 refused',
    )
    for (const res of settled(slow)) assertFull(res, 'slow')

    const burst = await Promise.all(Array.from({ length: 20 }, async () => await get(`${url}/fast`)))
    for (const res of burst) {
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { fast: { fast: true } })
    }
    assert.equal(stub.inFlight('GET /slow'), 2, 'the slow service was still saturated during the burst')
    assert.equal(settled(slow).length, 4)

    held.open()
    const answers = await Promise.all(slow.map(async (r) => await r.done))
    assert.deepEqual(answers.map((r) => r.status).sort(), [200, 200, 200, 200, 503, 503, 503, 503])
    assert.equal(stub.requestsTo('GET /slow').length, 4)
    assert.equal(stub.peak('GET /slow'), 2)
  })
})

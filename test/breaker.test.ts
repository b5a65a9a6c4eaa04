/**
 * The circuit breaker, end to end: when it opens, what a short-circuited request gets, what
 * reaches the upstream while it is half-open, and what does not count as a failure. Time is
 * a fake clock: no test waits for `openFor` or `window`.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { assertError, type ClientResponse, get, startGateway, stubFor } from './helpers/gateway.ts'
import { fakeClock, fire, gate, holdEach, inSequence, oneService, settled, switchable } from './helpers/resilience.ts'
import { eventually, hang, json } from './helpers/stub.ts'

const BREAKER = 'circuitBreaker: { failures: 5, window: 60s, openFor: 30s, halfOpenProbes: 3 }'
const FAIL = json({ error: 'boom' }, { status: 500 })
const OK = json({ ok: true })

const assertOpen = (res: ClientResponse): void => {
  assertError(res, 502, 'CIRCUIT_OPEN', 'svc is failing: its circuit breaker is open', ['svc'])
}

/** Five failing requests: each reaches the service and gets its 502. */
async function fail5(url: string): Promise<void> {
  for (const res of await inSequence(5, async () => await get(url)))
    assertError(res, 502, 'DOWNSTREAM_FAILURE', 'svc failed (500)', ['svc'])
}

describe('opening', () => {
  test('after 5 failures the 6th request never reaches the service: 502 CIRCUIT_OPEN naming it', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: BREAKER })
    stub.route('GET /a', FAIL)
    await fail5(a)
    assert.equal(hits(), 5)
    assertOpen(await get(a))
    assert.equal(hits(), 5)
  })

  test('an optional call whose breaker is open gets its fallback, with partialData', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: BREAKER, call: 'fallback: { cached: true }' })
    stub.route('GET /a', FAIL)
    await inSequence(5, async () => await get(a))
    assert.equal(hits(), 5)
    const res = await get(a)
    assert.equal(hits(), 5)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { a: { cached: true }, partialData: true })
    assert.equal(res.headers['baton-degraded'], 'a')
  })

  test('4xx answers are not failures: 10 × 404 and 4 × 500 leave it closed, the next 500 opens it', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: BREAKER })
    const answer = switchable(stub, 'GET /a', json({}, { status: 404 }))
    for (const res of await inSequence(10, async () => await get(a))) assert.equal(res.status, 404)
    answer.set(FAIL)
    await inSequence(4, async () => await get(a))
    assert.equal(hits(), 14)
    assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed (500)', ['svc'])
    assert.equal(hits(), 15)
    assertOpen(await get(a))
    assert.equal(hits(), 15)
  })

  test('failures older than the window do not count: 4, then 60s later 4 more leave it closed; a 5th within the window opens it', async (t) => {
    const clock = fakeClock()
    const { stub, a, hits } = await oneService(t, { service: BREAKER, clock })
    stub.route('GET /a', FAIL)
    await inSequence(4, async () => await get(a))
    clock.advance(61_000)
    await inSequence(4, async () => await get(a))
    assert.equal(hits(), 8)
    assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed (500)', ['svc'])
    assert.equal(hits(), 9)
    assertOpen(await get(a))
    assert.equal(hits(), 9)
  })

  test('one breaker per service: failures through GET /a open it for GET /b too', async (t) => {
    const { stub, a, b } = await oneService(t, { service: BREAKER })
    stub.route('GET /a', FAIL)
    stub.route('GET /b', OK)
    await fail5(a)
    assertOpen(await get(b))
    assert.equal(stub.requestsTo('GET /b').length, 0)
  })
})

describe('half-open', () => {
  test('it stays open for openFor; then exactly 3 probes reach the service, the others are short-circuited; 3 successes close it', async (t) => {
    const clock = fakeClock()
    const { stub, a, hits } = await oneService(t, { service: BREAKER, clock })
    const answer = switchable(stub, 'GET /a', FAIL)
    await fail5(a)
    clock.advance(29_999)
    assertOpen(await get(a))
    assert.equal(hits(), 5)

    clock.advance(1)
    const held = holdEach(OK)
    answer.set(held.handler)
    const five = Array.from({ length: 5 }, () => fire(a))
    await eventually(
      () => settled(five).length + hits() - 5 >= 5,
      'every request to reach the service or be short-circuited',
    )
    assert.equal(hits(), 8)
    assert.equal(stub.inFlight('GET /a'), 3)
    const shortCircuited = settled(five)
    assert.equal(shortCircuited.length, 2)
    shortCircuited.forEach(assertOpen)

    // One probe back is not enough: still half-open, with no probe left to hand out.
    held.release(0)
    await eventually(() => settled(five).length === 3, 'the first probe to answer')
    assertOpen(await get(a))
    assert.equal(hits(), 8)

    held.release(1)
    held.release(2)
    const answers = await Promise.all(five.map(async (r) => await r.done))
    assert.deepEqual(answers.map((r) => r.status).sort(), [200, 200, 200, 502, 502])
    assert.equal(hits(), 8)
    // Closed: every request reaches the service again (half-open would let none past its 3 probes).
    for (let i = 3; i < 13; i++) held.release(i)
    for (const res of await inSequence(10, async () => await get(a))) assert.equal(res.status, 200)
    assert.equal(hits(), 18)
  })

  test('a failed probe opens it again, for another openFor', async (t) => {
    const clock = fakeClock()
    const { stub, a, hits } = await oneService(t, { service: BREAKER, clock })
    stub.route('GET /a', FAIL)
    await fail5(a)
    clock.advance(30_000)
    assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed (500)', ['svc'])
    assert.equal(hits(), 6)
    assertOpen(await get(a))
    assert.equal(hits(), 6)
    clock.advance(29_999)
    assertOpen(await get(a))
    assert.equal(hits(), 6)
    clock.advance(1)
    assertError(await get(a), 502, 'DOWNSTREAM_FAILURE', 'svc failed (500)', ['svc'])
    assert.equal(hits(), 7)
  })

  test('a client that hangs up during a probe gives the probe back: 3 more can still go', async (t) => {
    const clock = fakeClock()
    const { stub, a, hits } = await oneService(t, { service: BREAKER, clock })
    const answer = switchable(stub, 'GET /a', FAIL)
    await fail5(a)
    clock.advance(30_000)
    const held = gate()
    answer.set(held.hold(OK))

    const leaver = fire(a)
    await eventually(() => hits() === 6, 'the probe to reach the service')
    leaver.abort()
    await assert.rejects(leaver.done)
    await eventually(() => stub.requestsTo('GET /a')[5]?.closed === true, "the abandoned probe's connection to close")

    const four = Array.from({ length: 4 }, () => fire(a))
    await eventually(
      () => settled(four).length + hits() - 6 >= 4,
      'every request to reach the service or be short-circuited',
    )
    assert.equal(hits(), 9)
    assert.equal(settled(four).length, 1)
    settled(four).forEach(assertOpen)
    held.open()
    assert.deepEqual(
      (await Promise.all(four.map(async (r) => await r.done))).map((r) => r.status).sort(),
      [200, 200, 200, 502],
    )
    assert.equal((await get(a)).status, 200, 'closed after 3 successful probes')
    assert.equal(hits(), 10)
  })

  test('exactly 3 probes even when a call let through before it opened is abandoned while half-open', async (t) => {
    // A call admitted while the breaker was closed is not a probe: when its client hangs up,
    // nothing may be given back to the half-open breaker.
    const clock = fakeClock()
    const { stub, a, b, hits } = await oneService(t, { service: BREAKER, clock })
    const held = gate()
    stub.route('GET /a', held.hold(OK))
    stub.route('GET /b', FAIL)
    const straggler = fire(a)
    await eventually(() => hits() === 1, 'the early call to reach the service')
    await fail5(b)
    assertOpen(await get(b))

    clock.advance(30_000)
    const probes = Array.from({ length: 3 }, () => fire(a))
    await eventually(() => hits() === 4, 'the 3 probes to reach the service')
    straggler.abort()
    await assert.rejects(straggler.done)
    await eventually(() => stub.requestsTo('GET /a')[0]?.closed === true, "the early call's connection to close")

    const extra = fire(a)
    await eventually(
      () => extra.result !== null || hits() > 4,
      'the 4th request to be short-circuited (or to reach the service)',
    )
    assert.equal(hits(), 4, 'a 4th request reached the service while 3 probes were out')
    assertOpen(extra.result as ClientResponse)
    held.open()
    for (const res of await Promise.all(probes.map(async (r) => await r.done))) assert.equal(res.status, 200)
  })

  test('an answer to a call let through before it opened is not a probe: 2 of 3 probes back do not close it', async (t) => {
    const clock = fakeClock()
    const { stub, a, b, hits } = await oneService(t, { service: BREAKER, clock })
    const held = holdEach(OK)
    stub.route('GET /a', held.handler)
    stub.route('GET /b', FAIL)
    const straggler = fire(a)
    await eventually(() => hits() === 1, 'the early call to reach the service')
    await fail5(b)
    assertOpen(await get(b))

    clock.advance(30_000)
    const probes = Array.from({ length: 3 }, () => fire(a))
    await eventually(() => hits() === 4, 'the 3 probes to reach the service')
    held.release(0)
    assert.equal((await straggler.done).status, 200)
    held.release(1)
    held.release(2)
    await eventually(() => settled(probes).length === 2, '2 probes to answer')

    // One probe is still out: the breaker is still half-open, with no probe left to give.
    const extra = fire(a)
    await eventually(
      () => extra.result !== null || hits() > 4,
      'the request to be short-circuited (or to reach the service)',
    )
    assert.equal(hits(), 4, 'the breaker closed before its 3rd probe answered')
    assertOpen(extra.result as ClientResponse)
    held.release(3)
    held.release(4)
  })
})

describe('what does not count against the breaker', () => {
  // failures: 1, so any outcome counted as a failure would open it.
  const TOUCHY =
    'circuitBreaker: { failures: 1, window: 60s, openFor: 30s }, bulkhead: { maxConcurrent: 1, maxQueued: 1 }'

  test('clients that hang up while their call is queued or in flight', async (t) => {
    const { stub, a, hits } = await oneService(t, { service: TOUCHY })
    const answer = switchable(stub, 'GET /a', hang())
    const inFlight = fire(a)
    await eventually(() => hits() === 1, 'the first call to reach the service')
    // Of two more, one waits in the queue and the other is refused (whichever the gateway saw second).
    const [x, y] = [fire(a), fire(a)]
    await eventually(() => settled([x, y]).length === 1, 'one of them to be refused')
    const [refused] = settled([x, y])
    assertError(refused as ClientResponse, 503, 'BULKHEAD_FULL', 'too many calls in flight to svc', ['svc'])
    const queued = x.result === null ? x : y

    queued.abort()
    await assert.rejects(queued.done)
    inFlight.abort()
    await assert.rejects(inFlight.done)
    await eventually(() => stub.requestsTo('GET /a')[0]?.closed === true, 'the call in flight to be aborted')
    assert.equal(stub.requestsTo('GET /a')[0]?.aborted, true)
    assert.equal(hits(), 1, 'the queued call never reached the service')

    answer.set(OK)
    const res = await get(a)
    assert.equal(res.status, 200)
    assert.equal(hits(), 2)
  })

  test('a call cut short by the endpoint deadline, which an earlier call used up, long before its own timeout', async (t) => {
    // first takes 250ms of the 500ms deadline; second (timeout 2s, answers in 600ms) gets the 250ms
    // left and is cut at the deadline. That says nothing about second: counted, two slow answers
    // from first would open second's breaker (failures: 2) for every endpoint that calls it. (The
    // margins are wide so that a loaded machine cannot make first itself miss the deadline.)
    const stub = await stubFor(t)
    stub.route('GET /first', json({ id: 1 }, { delay: 250 }))
    stub.route('GET /second', json({ ok: true }, { delay: 600 }))
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Chain }
services:
  first: { url: "${stub.url}" }
  second: { url: "${stub.url}", timeout: 2s, circuitBreaker: { failures: 2, window: 60s, openFor: 30s } }
endpoints:
  GET /chain:
    timeout: 500ms
    calls:
      first: { request: GET first /first }
      second: { request: "GET second /second?id=\${first.id}" }
  GET /second:
    calls:
      second: { request: GET second /second }
`,
    )
    for (const res of await inSequence(2, async () => await get(`${url}/chain`))) {
      assertError(res, 504, 'GATEWAY_TIMEOUT', "the endpoint's 500ms deadline passed", ['second'])
    }
    assert.equal(stub.requestsTo('GET /second').length, 2, 'second was called, and cut, twice')
    const res = await get(`${url}/second`)
    assert.equal(res.status, 200, `second's breaker opened: ${JSON.stringify(res.body)}`)
    assert.deepEqual(res.body, { second: { ok: true } })
  })
})

import assert from 'node:assert/strict'
import { setImmediate as tick } from 'node:timers/promises'
import { describe, test } from 'node:test'
import { InFlight, TryCancel } from './cancel.ts'
import { CallError } from './failure.ts'

const TIMEOUT = new CallError('timeout', 'call timed out')
const DEADLINE = new CallError('deadline', 'endpoint deadline passed')
const CANCELLED = new CallError('aborted', 'request settled')

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await tick()
}

describe('TryCancel', () => {
  test("tells the transport's listener (the EventEmitter form) once, with the first reason", () => {
    const cancel = new TryCancel(Infinity, null)
    const heard: (CallError | null)[] = []
    cancel.once('abort', () => heard.push(cancel.reason))
    cancel.abort(TIMEOUT)
    cancel.abort(CANCELLED)
    assert.deepEqual(heard, [TIMEOUT])
    assert.equal(cancel.reason, TIMEOUT)
  })

  test('a removed listener is not told; a second listener is', () => {
    const cancel = new TryCancel(Infinity, null)
    const heard: string[] = []
    const first = (): void => void heard.push('first')
    cancel.on('abort', first)
    cancel.on('abort', () => heard.push('second'))
    cancel.removeListener('abort', first)
    cancel.abort(CANCELLED)
    assert.deepEqual(heard, ['second'])
  })

  test('has no `aborted` property, so it is told from an AbortSignal (the transport, undici) as an EventEmitter', () => {
    assert.equal('aborted' in new TryCancel(Infinity, null), false)
  })

  test('its AbortSignal, made before or after the abort, aborts with the same reason', () => {
    const before = new TryCancel(Infinity, null)
    const signal = before.signal
    assert.equal(signal.aborted, false)
    before.abort(DEADLINE)
    assert.equal(signal.aborted, true)
    assert.equal(signal.reason, DEADLINE)
    const after = new TryCancel(Infinity, null)
    after.abort(CANCELLED)
    assert.equal(after.signal.aborted, true)
    assert.equal(after.signal.reason, CANCELLED)
  })
})

describe('InFlight', () => {
  test('one timer for all: each try is aborted with its own reason when its time is up, the earliest first', async () => {
    const inFlight = new InFlight()
    const now = performance.now()
    const late = new TryCancel(now + 40, DEADLINE)
    const early = new TryCancel(now + 20, TIMEOUT)
    const order: string[] = []
    late.on('abort', () => order.push('late'))
    early.on('abort', () => order.push('early'))
    inFlight.hold(late)
    inFlight.hold(early)
    await until(() => late.reason !== null)
    assert.deepEqual(order, ['early', 'late'])
    assert.equal(early.reason, TIMEOUT)
    assert.equal(late.reason, DEADLINE)
    assert.equal(inFlight.size, 0)
  })

  test('a timer that fires late aborts the tries it finds due in the order of their times', async () => {
    const inFlight = new InFlight()
    const now = performance.now()
    const late = new TryCancel(now + 6, DEADLINE)
    const early = new TryCancel(now + 3, TIMEOUT)
    const order: string[] = []
    late.on('abort', () => order.push('late'))
    early.on('abort', () => order.push('early'))
    inFlight.hold(late)
    inFlight.hold(early)
    // Keep the loop busy past both times: one firing finds both due.
    const until = performance.now() + 20
    while (performance.now() < until);
    await new Promise((resolve) => setTimeout(resolve, 5))
    assert.deepEqual(order, ['early', 'late'])
    assert.equal(inFlight.size, 0)
  })

  test('a try dropped before its time is not aborted', async () => {
    const inFlight = new InFlight()
    const now = performance.now()
    const done = new TryCancel(now + 10, TIMEOUT)
    const running = new TryCancel(now + 30, TIMEOUT)
    inFlight.hold(done)
    inFlight.hold(running)
    inFlight.drop(done)
    assert.equal(inFlight.size, 1)
    await until(() => running.reason !== null)
    assert.equal(done.reason, null)
  })

  test('abortAll aborts every try with its reason, and the timer no longer fires', async () => {
    const inFlight = new InFlight()
    const now = performance.now()
    const a = new TryCancel(now + 10, TIMEOUT)
    const b = new TryCancel(Infinity, null)
    inFlight.hold(a)
    inFlight.hold(b)
    inFlight.abortAll(CANCELLED)
    assert.equal(a.reason, CANCELLED)
    assert.equal(b.reason, CANCELLED)
    assert.equal(inFlight.size, 0)
    // A later try, held after: its own timer still works, and the first one's reason stays.
    const c = new TryCancel(performance.now() + 15, TIMEOUT)
    inFlight.hold(c)
    await until(() => c.reason !== null)
    assert.equal(a.reason, CANCELLED)
  })

  test('end stops the timer: nothing held is aborted afterwards by it', async () => {
    const inFlight = new InFlight()
    const held = new TryCancel(performance.now() + 5, TIMEOUT)
    inFlight.hold(held)
    inFlight.end()
    const witness = new InFlight()
    const other = new TryCancel(performance.now() + 25, TIMEOUT)
    witness.hold(other)
    await until(() => other.reason !== null)
    assert.equal(held.reason, null)
  })
})

/**
 * What the resilience tests share: a fake clock for breakers and retry budgets, stub answers
 * that change over time or wait for the test's word, and client requests a test can watch
 * settle (or hang up) while others are still in flight.
 */
import type { TestContext } from 'node:test'
import type { Clock } from '../../src/policies/clock.ts'
import { type ClientResponse, startGateway, stubFor, toResponse } from './gateway.ts'
import type { Handler, Reply, Stub, StubRequest } from './stub.ts'

/** Breakers and retry budgets read this instead of the time: a test moves it on instead of waiting 30 s. */
export interface FakeClock extends Clock {
  advance(ms: number): void
}

export function fakeClock(): FakeClock {
  let now = 0
  return {
    now: () => now,
    advance: (ms) => {
      now += ms
    },
  }
}

/** Answers in turn: the first request gets the first reply, and so on; the last one is repeated. */
export function inTurn(...replies: Reply[]): Handler {
  let next = 0
  return () => replies[Math.min(next++, replies.length - 1)] as Reply
}

/** Holds requests at the stub until the test opens it; once open, requests are answered at once. */
export interface Gate {
  hold(reply: Reply): (req: StubRequest) => Promise<Reply>
  open(): void
}

export function gate(): Gate {
  let open!: () => void
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return {
    hold: (reply) => async () => {
      await opened
      return reply
    },
    open: () => {
      open()
    },
  }
}

/** Holds each request at the stub until the test releases it, by arrival order (0 is the first to arrive). */
export function holdEach(reply: Reply): { handler: Handler; release(arrival: number): void } {
  const gates: Gate[] = []
  const at = (i: number): Gate => (gates[i] ??= gate())
  let arrived = 0
  return {
    handler: async (req) => await at(arrived++).hold(reply)(req),
    release: (arrival) => {
      at(arrival).open()
    },
  }
}

/** A stub route whose handler the test can change between requests. */
export function switchable(stub: Stub, key: string, initial: Handler): { set(handler: Handler): void } {
  let current = initial
  stub.route(key, (req) => (typeof current === 'function' ? current(req) : current))
  return {
    set: (handler) => {
      current = handler
    },
  }
}

/** A client request in flight: `result` is set once it has settled; `abort()` hangs up. */
export interface InFlight {
  readonly done: Promise<ClientResponse>
  result: ClientResponse | null
  abort(): void
}

export function fire(url: string): InFlight {
  const controller = new AbortController()
  const request: InFlight = {
    done: fetch(url, { signal: AbortSignal.any([controller.signal, AbortSignal.timeout(10_000)]) }).then(toResponse),
    result: null,
    abort: () => {
      controller.abort()
    },
  }
  // A request the test hangs up on rejects; the test asserts that where it matters.
  request.done.then(
    (res) => {
      request.result = res
    },
    () => {},
  )
  return request
}

export function settled(requests: readonly InFlight[]): ClientResponse[] {
  return requests.flatMap((r) => (r.result === null ? [] : [r.result]))
}

/** Sends `n` requests one after the other; resolves with their answers in order. */
export async function inSequence(n: number, send: (i: number) => Promise<ClientResponse>): Promise<ClientResponse[]> {
  const out: ClientResponse[] = []
  for (let i = 0; i < n; i++) out.push(await send(i))
  return out
}

export interface OneService {
  /** Settings of the service svc, e.g. `retry: { attempts: 2 }`. */
  service?: string
  /** Settings of both calls, e.g. `timeout: 50ms`. */
  call?: string
  /** Method of the call of GET /a (GET /b's is always GET). */
  method?: string
  /** Deadline of both endpoints. */
  deadline?: string
  clock?: Clock
}

/**
 * One service, svc, on a fresh stub, called by two endpoints: GET /a calls `<method> svc /a`,
 * GET /b calls `GET svc /b`. Routes are the test's to declare.
 */
export async function oneService(
  t: TestContext,
  o: OneService = {},
): Promise<{ stub: Stub; a: string; b: string; hits: (route?: string) => number }> {
  const stub = await stubFor(t)
  const extra = (s: string | undefined): string => (s === undefined || s === '' ? '' : `, ${s}`)
  const gateway = await startGateway(
    t,
    `
version: 1
gateway: { name: Chaos }
services:
  # Each client request makes its own call here (these tests count them); coalescing is test/coalesce.test.ts's.
  svc: { url: "${stub.url}", coalesce: false${extra(o.service)} }
endpoints:
  GET /a:
    timeout: ${o.deadline ?? '5s'}
    calls:
      a: { request: ${o.method ?? 'GET'} svc /a${extra(o.call)} }
  GET /b:
    timeout: ${o.deadline ?? '5s'}
    calls:
      b: { request: GET svc /b${extra(o.call)} }
`,
    o.clock === undefined ? {} : { clock: o.clock },
  )
  return {
    stub,
    a: `${gateway.url}/a`,
    b: `${gateway.url}/b`,
    hits: (route = `${o.method ?? 'GET'} /a`) => stub.requestsTo(route).length,
  }
}

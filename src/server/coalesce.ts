/**
 * Endpoint coalescing: identical requests in flight at the same moment share one run and its
 * serialised answer, as their calls would share upstream requests anyway. Identical: the same
 * method and target (path and query), the same caller, and the same request headers except
 * those that differ per request without changing the answer (the request id and the trace
 * context, as for calls). Each request is still admitted on its own (credentials, rate limits,
 * validation) and gets its own request id, metrics and log line.
 *
 * The plan turns it on for a GET endpoint whose every call coalesces and which has no response
 * cache (the cache collapses identical requests itself); `coalesce: false` turns it off.
 */
import type { IncomingMessage } from 'node:http'
import type { SpanIds } from '../observability/outcome.ts'
import type { Principal } from '../plan/scope.ts'
import { type ClientHandle, Flights, type SharedRun, type WaiterObserver } from '../util/flights.ts'
import { PER_REQUEST } from '../plan/headers.ts'

/** An answer as a run gives it (runtime's GatewayAnswer). */
export interface RunAnswer {
  status: number
  body: unknown
  headers: Record<string, string> | null
}

/** A run's answer, serialised once for every request that shares it. */
export interface SharedAnswer {
  readonly status: number
  /** JSON, encoded once for every request that shares it; null when the answer could not be serialised (the caller answers 502 RESPONSE_ASSEMBLY_FAILED). */
  readonly bytes: Buffer | null
  readonly headers: Readonly<Record<string, string>>
  /** The request id of the request whose run made it (its log line and trace hold the run's details). */
  readonly requestId: string
  /** That run's server span, when the gateway traces. */
  readonly span: SpanIds | null
}

export interface Shared {
  readonly answer: SharedAnswer
  /** This request's own run (its observers have counted and logged it). */
  readonly ran: boolean
}

/** A run as coalescing drives it: shared, and cut by the drain. */
export interface CoalescedRun extends SharedRun<RunAnswer> {
  cut(): boolean
  /** Its trace ids, set when the run started (null when the gateway does not trace). */
  readonly report: { readonly traceId: string | null; readonly spanId: string | null }
}

export class EndpointCoalescing<R extends CoalescedRun = CoalescedRun> {
  readonly #flights: Flights<SharedAnswer, R>

  /** `observer` is told about the requests that wait for another's run (metrics). */
  constructor(observer: WaiterObserver | null = null) {
    this.#flights = new Flights(observer)
  }

  /** What makes two requests the same: method, target, caller, and the headers that may change the answer. */
  keyOf(raw: IncomingMessage, auth: Principal | null): string {
    // The caller as JSON: a subject is the issuer's text, and must not be able to spell a header line.
    let key = `${raw.method} ${raw.url}\n${auth === null ? '' : `${auth.method}:${JSON.stringify(auth.sub ?? '')}`}`
    const headers = raw.rawHeaders
    for (let i = 0; i < headers.length; i += 2) {
      const name = (headers[i] as string).toLowerCase()
      if (!PER_REQUEST.has(name)) key += `\n${name}:${headers[i + 1]}`
    }
    return key
  }

  /**
   * The answer of the run in flight for `key`, or of one `start` begins; null when the client left
   * first. `using` is told the run this request waits for (the drain cuts it when it times out).
   */
  async serve(
    key: string,
    requestId: string,
    start: () => R,
    client: ClientHandle,
    using: (run: R) => void,
  ): Promise<Shared | null> {
    let flight = this.#flights.get(key)
    const joined = flight !== undefined
    if (flight === undefined) {
      const run = start()
      flight = this.#flights.start(key, run, (answer: RunAnswer) => serialise(answer, requestId, run.report))
    }
    using(flight.run)
    const answer = await this.#flights.wait(flight, client, joined)
    return answer === null ? null : { answer, ran: !joined }
  }
}

function serialise(answer: RunAnswer, requestId: string, trace: CoalescedRun['report']): SharedAnswer {
  let bytes: Buffer | null
  try {
    bytes = Buffer.from(JSON.stringify(answer.body))
  } catch {
    bytes = null
  }
  // Answers are made per request (an endpoint with a response cache does not coalesce).
  const headers = answer.headers === null ? NO_STORE : { ...answer.headers, 'cache-control': 'no-store' }
  const { traceId, spanId } = trace
  const span = traceId === null || spanId === null ? null : { traceId, spanId }
  return { status: answer.status, bytes, headers, requestId, span }
}

const NO_STORE: Readonly<Record<string, string>> = Object.freeze({ 'cache-control': 'no-store' })

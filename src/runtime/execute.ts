/**
 * Runs one endpoint plan for one request. Calls start the moment the calls they read have
 * finished; every call gets min(its timeout, time left before the deadline); when the
 * request's fate is sealed (a required call failed, the deadline passed) every call still in
 * flight is aborted, and the abort reaches its socket.
 */
import { type ErrorCode, ErrorCodes, errorEnvelope } from '../errors.ts'
import { type Evaluator, ExpressionEvalError } from '../expr/index.ts'
import { endCall, type EndpointTracing, type RequestTrace, withTraceContext } from '../observability/tracing.ts'
import { type CallMeta, type RequestView, Scope } from '../plan/scope.ts'
import { setTimeout as sleep } from 'node:timers/promises'
import { backoffCeiling, type RetryPlan } from '../plan/resilience.ts'
import type { CallPlan, EndpointPlan } from '../plan/types.ts'
import { type ServiceClient, UpstreamError, type UpstreamRequest, type UpstreamResponse } from '../upstream/client.ts'
import { answerFor, CallFailed, type Failure } from './outcome.ts'

export interface GatewayAnswer {
  status: number
  body: unknown
  headers: Record<string, string> | null
}

/** An endpoint plan bound to the clients of the services its calls use (built once per gateway). */
export interface BoundEndpoint {
  readonly plan: EndpointPlan
  /** clients[i] serves plan.calls[i]. */
  readonly clients: readonly ServiceClient[]
  readonly retryAfterSeconds: number
  /** Span names and attributes; null when tracing is off. */
  readonly tracing: EndpointTracing | null
}

export interface Inbound {
  readonly request: RequestView
  readonly requestId: string
  /** The request's server span; null when tracing is off. */
  readonly trace: RequestTrace | null
}

/** Name of the response header that lists the calls whose section is a fallback. */
export const DEGRADED_HEADER = 'baton-degraded'

const CALL_TIMEOUT = new UpstreamError('timeout', 'call timed out')
const DEADLINE = new UpstreamError('deadline', 'endpoint deadline passed')
const CANCELLED = new UpstreamError('aborted', 'request settled')

const RUNNING = 1
const FINISHED = 2

/** A request being run: its answer, and a way to drop it when the client has gone away. */
export interface Run {
  readonly answer: Promise<GatewayAnswer>
  /** Aborts every call in flight and starts no more; the answer resolves as a 499 nobody reads. */
  readonly abandon: () => void
  /** What happened, for logs and Server-Timing; complete once the answer has resolved. */
  readonly report: RunReport
}

/** A failed call, as logs tell it. */
export interface CallFailure {
  readonly call: string
  readonly service: string
  /** Failure kind (timeout, connect, status, circuit_open, …). */
  readonly kind: string
  readonly status: number | null
  readonly required: boolean
}

export interface RunReport {
  /** Per call, ms from its start to its end; NaN for calls not made. */
  readonly durations: readonly number[]
  /** Calls whose section is a fallback. */
  readonly degraded: readonly string[] | null
  readonly failures: readonly CallFailure[] | null
  /** Per call, tries after the first; null when nothing was retried. */
  readonly retries: readonly number[] | null
}

export function execute(endpoint: BoundEndpoint, inbound: Inbound): Run {
  let execution!: Execution
  const answer = new Promise<GatewayAnswer>((resolve) => {
    execution = new Execution(endpoint, inbound, resolve)
  })
  execution.start()
  return { answer, abandon: execution.abandon, report: execution }
}

class Execution implements RunReport {
  readonly endpoint: BoundEndpoint
  readonly plan: EndpointPlan
  readonly scope: Scope
  readonly requestId: string
  /** Parent of a client span per try; null when tracing is off, and then tries pay one null check. */
  readonly trace: RequestTrace | null
  readonly deadlineAt: number
  /** Per call: how many of its dependencies have not finished yet. */
  readonly waitingOn: number[]
  /** Per call: 0 not started, RUNNING, FINISHED. */
  readonly state: number[]
  /** AbortControllers of requests in flight, to cancel them when the answer is decided. */
  readonly inFlight: AbortController[] = []
  readonly resolve: (answer: GatewayAnswer) => void
  unfinished: number
  started = 0
  /** Services of the calls that timed out (their own timeout, not the deadline); allocated on the first. */
  timedOut: string[] | null = null
  degraded: string[] | null = null
  /** Per call, ms from start to end (NaN: not made). */
  readonly durations: number[]
  failures: CallFailure[] | null = null
  retries: number[] | null = null
  /** Serialised bodies shared by calls with identical body templates (CallPlan.bodySlot). */
  bodies: (string | undefined)[] | null = null
  done = false

  constructor(endpoint: BoundEndpoint, inbound: Inbound, resolve: (answer: GatewayAnswer) => void) {
    this.endpoint = endpoint
    this.plan = endpoint.plan
    this.scope = new Scope(inbound.request, this.plan.calls.length, this.plan.readsCallMeta)
    this.requestId = inbound.requestId
    this.trace = inbound.trace
    this.deadlineAt = performance.now() + this.plan.timeout
    // Copies of arrays prepared at compile time: cheaper than building them per request.
    this.waitingOn = this.plan.dependencyCounts.slice()
    this.state = this.plan.dependencyCounts.map(zero)
    this.durations = this.plan.dependencyCounts.map(notMade)
    this.unfinished = this.plan.calls.length
    this.resolve = resolve
  }

  /** An arrow so that it can be handed to an event emitter as it is. */
  readonly abandon = (): void => {
    if (this.done) return
    this.fail(499, 'CLIENT_CLOSED_REQUEST', 'the client closed the connection', [])
  }

  start(): void {
    if (this.unfinished === 0) {
      this.assemble()
      return
    }
    for (const i of this.plan.roots) this.startCall(this.plan.calls[i] as CallPlan)
  }

  startCall(call: CallPlan): void {
    if (this.done) return
    this.state[call.index] = RUNNING
    if (call.when !== null) {
      let run: unknown
      try {
        run = call.when(this.scope)
      } catch (err) {
        this.finishCall(call, null, failure('expression', null, message(err)))
        return
      }
      if (!truthy(run)) {
        this.skip(call)
        return
      }
    }
    this.started++
    void this.runCall(call)
  }

  /** Makes the call and records its outcome. Never rejects: a bug becomes a 500, not an unhandled rejection. */
  async runCall(call: CallPlan): Promise<void> {
    let res: UpstreamResponse | null = null
    let fail: Failure | null = null
    const started = performance.now()
    try {
      res = call.forEach === null ? await this.send(call, this.buildRequest(call)) : await this.callEach(call)
    } catch (err) {
      fail = toFailure(err)
    }
    this.durations[call.index] = performance.now() - started
    try {
      this.finishCall(call, res, fail)
    } catch {
      // A bug, not a service problem: the client gets the generic message, never our internals.
      if (!this.done) this.fail(500, 'INTERNAL_ERROR', ErrorCodes.INTERNAL_ERROR.message, [])
    }
  }

  /** forEach: one request per item; identical requests are made once; at most `concurrency` in flight. */
  async callEach(call: CallPlan): Promise<UpstreamResponse> {
    const each = call.forEach!
    const items = each.items(this.scope) ?? []
    if (!Array.isArray(items)) throw new UpstreamError('expression', `forEach of ${call.name} is not a list`)
    const unique = new Map<string, number>()
    const requests: Omit<UpstreamRequest, 'signal'>[] = []
    const slot = new Int32Array(items.length)
    for (let i = 0; i < items.length; i++) {
      this.scope.item = items[i]
      const req = this.buildRequest(call)
      const key = `${req.method} ${req.path} ${req.body ?? ''}`
      let at = unique.get(key)
      if (at === undefined) {
        at = requests.length
        unique.set(key, at)
        requests.push(req)
      }
      slot[i] = at
    }
    this.scope.item = undefined
    const results = new Array<unknown>(requests.length)
    // The first failed item fails the call: its siblings still in flight are aborted.
    const group = new Set<AbortController>()
    let failed = false
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < requests.length && !this.done && !failed) {
        const at = next++
        const res = await this.send(call, requests[at] as Omit<UpstreamRequest, 'signal'>, group)
        if (res.status < 200 || res.status >= 300) throw new CallFailed(statusFailure(res))
        results[at] = res.body
      }
    }
    const workers: Promise<void>[] = []
    for (let w = 0; w < Math.min(each.concurrency, requests.length); w++) workers.push(worker())
    try {
      await Promise.all(workers)
    } catch (err) {
      failed = true
      for (const controller of group) controller.abort(CANCELLED)
      throw err
    }
    const into = each.into
    const value = items.map((item: unknown, i) => {
      const result = results[slot[i] as number]
      if (into === null) return result
      return item !== null && typeof item === 'object' && !Array.isArray(item) ? { ...item, [into]: result } : result
    })
    return { status: 200, headers: {}, body: value }
  }

  buildRequest(call: CallPlan): Omit<UpstreamRequest, 'signal'> {
    const scope = this.scope
    let path = call.path(scope) as string
    if (call.query !== null) path += queryString(call.query, scope)
    const headers: Record<string, string> = { 'x-request-id': this.requestId }
    const service = call.service
    for (const [name, value] of service.headers) headers[name] = value
    if (service.forwardHeaders.length > 0) forwardHeaders(service.forwardHeaders, scope.request.headers, headers)
    if (service.authHeaders.length > 0) setHeaders(service.authHeaders, scope, call.name, headers)
    if (call.headers !== null) setHeaders(call.headers, scope, call.name, headers)
    let body: string | null = null
    if (call.body !== null) {
      if (call.bodySlot === -1) {
        body = JSON.stringify(call.body(scope))
      } else {
        const bodies = (this.bodies ??= new Array<string | undefined>(this.plan.sharedBodies))
        body = bodies[call.bodySlot] ??= JSON.stringify(call.body(scope))
      }
      headers['content-type'] = 'application/json'
    }
    return { method: call.method, path, headers, body }
  }

  /**
   * Sends a call's request, retrying as its policy allows. Each try gets min(call timeout,
   * time left); a retry whose backoff plus timeout cannot finish before the deadline is not
   * started, and neither is one the service's retry budget has no room for.
   */
  async send(
    call: CallPlan,
    request: Omit<UpstreamRequest, 'signal'>,
    group?: Set<AbortController>,
  ): Promise<UpstreamResponse> {
    const client = this.endpoint.clients[call.index] as ServiceClient
    const retry = call.retry
    if (retry === null) return await this.attempt(call, client, request, 1, group)
    client.budget.request()
    for (let tries = 1; ; tries++) {
      let res: UpstreamResponse | null = null
      let error: unknown = null
      try {
        res = await this.attempt(call, client, request, tries, group)
      } catch (err) {
        error = err
      }
      const wait = tries > retry.attempts || this.done ? null : retryDelay(retry, tries, res, error)
      if (wait === null || !this.fits(wait, call.timeout) || !client.budget.tryRetry()) {
        if (res !== null) return res
        throw error
      }
      await this.pause(wait)
      const retries = (this.retries ??= this.plan.dependencyCounts.map(zero))
      retries[call.index] = (retries[call.index] as number) + 1
    }
  }

  /**
   * One try: bulkhead slot, breaker permit, timer, request; the outcome feeds the breaker and the
   * service's stats. Traced, a try is a client span (its wait for a bulkhead slot included) whose
   * id the service receives in traceparent.
   */
  async attempt(
    call: CallPlan,
    client: ServiceClient,
    request: Omit<UpstreamRequest, 'signal'>,
    tries: number,
    group?: Set<AbortController>,
  ): Promise<UpstreamResponse> {
    const left = this.deadlineAt - performance.now()
    if (left <= 0) throw DEADLINE
    const span = this.trace === null ? null : this.trace.startCall(call, request.path, tries)
    const byDeadline = left <= call.timeout
    const controller = new AbortController()
    const timer = setTimeout(
      () => controller.abort(byDeadline ? DEADLINE : CALL_TIMEOUT),
      byDeadline ? left : call.timeout,
    )
    this.inFlight.push(controller)
    group?.add(controller)
    const { bulkhead, breaker, stats } = client
    let slot = false
    try {
      if (bulkhead !== null) {
        let queued: Promise<void> | null
        try {
          queued = bulkhead.acquire(call.service.name, controller.signal)
          if (queued !== null) await queued
        } catch (err) {
          // Full, or no slot freed up within the call's own timeout: the gateway's limit, not the service's failure.
          if (err === DEADLINE || err === CANCELLED) throw err
          throw new UpstreamError('bulkhead_full', `${call.service.name}: too many calls in flight`)
        }
        slot = true
      }
      const ticket = breaker === null ? 0 : breaker.tryAcquire()
      if (ticket === -1) throw new UpstreamError('circuit_open', `${call.service.name}: circuit breaker open`)
      const started = performance.now()
      stats.inFlight++
      let res: UpstreamResponse
      try {
        const headers = span === null ? request.headers : withTraceContext(span, request.headers)
        res = await client.send({
          method: request.method,
          path: request.path,
          headers,
          body: request.body,
          signal: controller.signal,
        })
      } catch (err) {
        const kind = err instanceof UpstreamError ? err.kind : 'network'
        // Abandoned, or cut by a deadline that other calls used up (this call had a timeout of its own that had not run out): says nothing about the service.
        if (kind === 'aborted' || (kind === 'deadline' && Number.isFinite(call.timeout))) {
          breaker?.release(ticket)
        } else {
          breaker?.failure(ticket)
          stats.record(performance.now() - started, kind)
        }
        throw err
      } finally {
        stats.inFlight--
      }
      const failed = res.status >= 500
      if (failed) breaker?.failure(ticket)
      else breaker?.success(ticket)
      stats.record(performance.now() - started, failed ? `status ${res.status}` : null)
      if (span !== null) endCall(span, res, null)
      return res
    } catch (err) {
      if (span !== null) endCall(span, null, err)
      throw err
    } finally {
      clearTimeout(timer)
      if (slot) bulkhead?.release()
      removeItem(this.inFlight, controller)
      group?.delete(controller)
    }
  }

  /** Can a retry after `wait` ms, with a try of `timeout` ms, finish before the deadline? */
  fits(wait: number, timeout: number): boolean {
    const left = this.deadlineAt - performance.now() - wait
    return Number.isFinite(timeout) ? timeout <= left : left > 0
  }

  /** Waits out a backoff; cut short (with CANCELLED) when the request is decided meanwhile. */
  async pause(ms: number): Promise<void> {
    const controller = new AbortController()
    this.inFlight.push(controller)
    try {
      await sleep(ms, undefined, { signal: controller.signal })
    } catch {
      throw CANCELLED
    } finally {
      removeItem(this.inFlight, controller)
    }
  }

  skip(call: CallPlan): void {
    this.scope.values[call.index] = this.fallbackOf(call)
    if (this.scope.meta !== null) this.scope.meta[call.index] = meta(null, null, true)
    this.advance(call)
  }

  finishCall(call: CallPlan, res: UpstreamResponse | null, fail: Failure | null): void {
    if (this.done) return
    let f = fail
    if (res !== null && (res.status < 200 || res.status >= 300)) f = statusFailure(res)
    if (f === null && res !== null) {
      this.scope.values[call.index] = res.body
      if (this.scope.meta !== null) this.scope.meta[call.index] = meta(res, null, false)
      this.advance(call)
      return
    }
    const failed = f as Failure
    if (failed.kind === 'aborted') return
    ;(this.failures ??= []).push({
      call: call.name,
      service: call.service.name,
      kind: failed.kind,
      status: failed.status,
      required: call.required,
    })
    if (failed.kind === 'deadline') {
      this.fail(
        504,
        'GATEWAY_TIMEOUT',
        `the endpoint's ${this.plan.timeout}ms deadline passed`,
        this.failedInFlight(call),
      )
      return
    }
    if (failed.kind === 'timeout') (this.timedOut ??= []).push(call.service.name)
    if (call.required) {
      if (failed.kind === 'timeout' && this.timedOut?.length === this.started && this.inFlight.length === 0) {
        // Every call started has timed out (the optional ones before this one too): name them all.
        this.fail(504, 'GATEWAY_TIMEOUT', `${call.service.name} timed out`, [...new Set(this.timedOut)])
        return
      }
      const answer = answerFor(failed, call.service.name)
      this.fail(
        answer.status,
        answer.code,
        answer.message,
        [call.service.name],
        failed.kind === 'status' && failed.status === 429
          ? (failed.retryAfter ?? String(this.endpoint.retryAfterSeconds))
          : null,
      )
      return
    }
    this.scope.values[call.index] = this.fallbackOf(call)
    if (this.scope.meta !== null) this.scope.meta[call.index] = meta(res, failed, false)
    ;(this.degraded ??= []).push(call.name)
    this.advance(call)
  }

  /** A call is finished: start the calls that were waiting only for it; answer when none is left. */
  advance(call: CallPlan): void {
    this.state[call.index] = FINISHED
    this.unfinished--
    for (const d of call.dependents) {
      const waiting = (this.waitingOn[d] as number) - 1
      this.waitingOn[d] = waiting
      if (waiting === 0) this.startCall(this.plan.calls[d] as CallPlan)
    }
    if (this.unfinished === 0 && !this.done) this.assemble()
  }

  fallbackOf(call: CallPlan): unknown {
    if (call.fallback === null) return null
    try {
      return call.fallback(this.scope) ?? null
    } catch {
      return null
    }
  }

  assemble(): void {
    if (this.timedOut !== null && this.timedOut.length === this.started) {
      this.fail(504, 'GATEWAY_TIMEOUT', 'every call timed out', [...new Set(this.timedOut)])
      return
    }
    let body: unknown
    try {
      body = this.plan.response(this.scope)
    } catch (err) {
      this.fail(502, 'RESPONSE_ASSEMBLY_FAILED', `the response could not be assembled: ${message(err)}`, [])
      return
    }
    this.done = true
    const degraded = this.degraded
    if (degraded === null) {
      this.resolve({ status: this.plan.status, body, headers: null })
      return
    }
    if (body !== null && typeof body === 'object' && !Array.isArray(body)) body = { ...body, partialData: true }
    this.resolve({ status: this.plan.status, body, headers: { [DEGRADED_HEADER]: degraded.join(', ') } })
  }

  /** Services of the calls cut off by the deadline, plus the one that noticed. */
  failedInFlight(call: CallPlan): string[] {
    const names = new Set([call.service.name])
    for (const c of this.plan.calls) if (this.state[c.index] === RUNNING) names.add(c.service.name)
    return [...names]
  }

  fail(
    status: number,
    code: ErrorCode,
    text: string,
    failedServices: string[],
    retryAfter: string | null = null,
  ): void {
    this.done = true
    for (const controller of this.inFlight.splice(0)) controller.abort(CANCELLED)
    this.resolve({
      status,
      body: errorEnvelope(code, text, failedServices),
      headers: retryAfter === null ? null : { 'retry-after': retryAfter },
    })
  }
}

const zero = (): number => 0
const notMade = (): number => NaN

/** Truthiness of the expression language: false, null, 0 and "" are false. */
function truthy(value: unknown): boolean {
  return value !== false && value !== null && value !== undefined && value !== 0 && value !== ''
}

function removeItem<T>(list: T[], item: T): void {
  const at = list.indexOf(item)
  if (at === -1) return
  list[at] = list[list.length - 1] as T
  list.pop()
}

/** ms to wait before the next try, or null when this outcome is not retried. */
function retryDelay(plan: RetryPlan, tries: number, res: UpstreamResponse | null, error: unknown): number | null {
  if (res !== null) {
    const status = res.status
    if (!((status >= 500 && plan.on5xx) || plan.statuses.includes(status))) return null
    return Math.max(backoff(plan, tries), retryAfterMs(res.headers['retry-after']))
  }
  const kind = error instanceof UpstreamError ? error.kind : null
  const retried =
    (kind === 'timeout' && plan.onTimeout) ||
    (kind === 'connect' && plan.onConnect) ||
    (kind === 'network' && plan.onNetwork)
  return retried ? backoff(plan, tries) : null
}

/** Exponential backoff with "equal jitter" (between half and all of the step), or a fixed delay. */
function backoff(plan: RetryPlan, tries: number): number {
  const step = backoffCeiling(plan, tries)
  return plan.backoff === 'fixed' ? step : step / 2 + Math.random() * (step / 2)
}

/** Retry-After in seconds or as an HTTP date, in ms (0 when absent or unreadable). */
function retryAfterMs(value: string | string[] | undefined): number {
  if (typeof value !== 'string') return 0
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(value)
  return Number.isNaN(date) ? 0 : Math.max(0, date - Date.now())
}

function failure(
  kind: Failure['kind'],
  status: number | null,
  text: string,
  retryAfter: string | null = null,
): Failure {
  return { kind, status, retryAfter, message: text }
}

function statusFailure(res: UpstreamResponse): Failure {
  const retryAfter = res.headers['retry-after']
  return failure('status', res.status, `answered ${res.status}`, typeof retryAfter === 'string' ? retryAfter : null)
}

function toFailure(err: unknown): Failure {
  if (err instanceof CallFailed) return err.failure
  if (err instanceof UpstreamError) return failure(err.kind, null, err.message)
  if (err instanceof ExpressionEvalError) return failure('expression', null, err.message)
  // JSON.stringify of a request body nested too deeply to serialise: the request cannot be built.
  if (err instanceof RangeError) return failure('expression', null, err.message)
  return failure('network', null, message(err))
}

function meta(res: UpstreamResponse | null, fail: Failure | null, skipped: boolean): CallMeta {
  return {
    status: res?.status ?? fail?.status ?? null,
    headers: res?.headers ?? {},
    ok: fail === null && !skipped,
    error: fail === null ? null : fail.kind === 'status' ? 'status' : fail.kind,
    skipped,
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function queryString(query: NonNullable<CallPlan['query']>, scope: Scope): string {
  let out = ''
  for (const [key, evaluate] of query) {
    const value = evaluate(scope)
    if (value === null || value === undefined) continue
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v === null || v === undefined) continue
      out += `${out === '' ? '?' : '&'}${encodeURIComponent(key)}=${encodeURIComponent(typeof v === 'object' ? JSON.stringify(v) : String(v))}`
    }
  }
  return out
}

const INVALID_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/

/** Evaluated header values; a value a header cannot carry (from a client, a claim, a service) fails the call as a bad request. */
function setHeaders(
  list: readonly (readonly [string, Evaluator])[],
  scope: Scope,
  call: string,
  to: Record<string, string>,
): void {
  for (const [name, evaluate] of list) {
    const value = evaluate(scope)
    if (value === null || value === undefined) continue
    const text = typeof value === 'object' ? JSON.stringify(value) : String(value)
    // RFC 9110 field values: visible ASCII, space, tab and obs-text. A line break would inject a header;
    // other characters would make the HTTP client throw, which must not count against the service.
    if (INVALID_FIELD_VALUE.test(text)) {
      throw new UpstreamError(
        'bad_request',
        /[\r\n]/.test(text)
          ? `a value for header ${name} of ${call} contains line breaks`
          : `a value for header ${name} of ${call} has characters a header cannot carry`,
      )
    }
    to[name] = text
  }
}

function forwardHeaders(names: readonly string[], from: RequestView['headers'], to: Record<string, string>): void {
  const connection = from.connection
  const perHop =
    typeof connection === 'string'
      ? connection
          .toLowerCase()
          .split(',')
          .map((s) => s.trim())
      : null
  for (const name of names) {
    const value = from[name]
    if (value === undefined || perHop?.includes(name) === true) continue
    to[name] = Array.isArray(value) ? value.join(', ') : value
  }
}

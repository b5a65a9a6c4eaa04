/**
 * The scheduler: runs one endpoint plan for one request. Calls start the moment the calls they
 * read have finished; every try gets min(its timeout, time left before the deadline) from the
 * service's pipeline; when the request's fate is sealed (a required call failed, the deadline
 * passed) every try still in flight is aborted, and the abort reaches its socket. Building a
 * request, forEach, retries and the error table live in modules of their own.
 */
import { ErrorCodes, type ErrorCode, errorEnvelope } from '../errors.ts'
import { type CallMeta, type RequestView, Scope } from '../plan/scope.ts'
import type { CallPlan, EndpointPlan } from '../plan/types.ts'
import { InFlight, type TryCancel } from '../upstream/cancel.ts'
import type { ServiceClient } from '../upstream/client.ts'
import { CallError, toCallError } from '../upstream/failure.ts'
import type { CallResponse, Try, TryListener } from '../upstream/pipeline.ts'
import { CANCELLED } from '../upstream/stages/deadline.ts'
import { sendBatches } from './batch.ts'
import { sendEach, type ForEachHost } from './foreach.ts'
import type { GatewayAnswer, Observers, RunView } from './observer.ts'
import { answerFor } from './outcome.ts'
import { buildRequest, type SharedBodies } from './request.ts'
import { send } from './retry.ts'

export type { GatewayAnswer, RunReport, RunView } from './observer.ts'

/** An endpoint plan bound to the clients of the services its calls use (built once per gateway). */
export interface BoundEndpoint {
  readonly plan: EndpointPlan
  /** clients[i] serves plan.calls[i]. */
  readonly clients: readonly ServiceClient[]
  readonly retryAfterSeconds: number
  readonly observers: Observers | null
  /** The config version (release) that serves it, while a canary runs; null otherwise. */
  readonly version: string | null
}

/** Name of the response header that lists the calls whose section is a fallback. */
export const DEGRADED_HEADER = 'baton-degraded'

const RUNNING = 1
const FINISHED = 2

/** A request being run: its answer, and a way to drop it when the client has gone away. */
export interface Run {
  readonly answer: Promise<GatewayAnswer>
  /** Aborts every call in flight and starts no more; the answer resolves as a 499 nobody reads. */
  readonly abandon: () => void
  /**
   * Aborts every call in flight and answers 503 SHUTTING_DOWN: the gateway is closing and will
   * not wait any longer. False when the run had already ended.
   */
  readonly cut: () => boolean
  /** What happened, for observers; complete once the answer has resolved. */
  readonly report: RunView
}

export function execute(endpoint: BoundEndpoint, request: RequestView, requestId: string): Run {
  let execution!: Execution
  const answer = new Promise<GatewayAnswer>((resolve) => {
    execution = new Execution(endpoint, request, requestId, resolve)
  })
  execution.start()
  return { answer, abandon: execution.abandon, cut: execution.cut, report: execution }
}

class Execution implements RunView, ForEachHost, TryListener {
  readonly bound: BoundEndpoint
  readonly endpoint: EndpointPlan
  readonly request: RequestView
  readonly scope: Scope
  readonly requestId: string
  readonly startedAt: number
  readonly deadlineAt: number
  traceId: string | null = null
  spanId: string | null = null
  readonly version: string | null
  /** Per call: how many of its dependencies have not finished yet. */
  readonly waitingOn: number[]
  /** Per call: 0 not started, RUNNING, FINISHED. */
  readonly state: number[]
  /** Tries (and backoffs) in flight: aborted when their time is up, or all at once when the answer is decided. */
  readonly inFlight = new InFlight()
  readonly settle: (answer: GatewayAnswer) => void
  /** Each observer's state for this run; null without observers. */
  readonly observed: unknown[] | null
  readonly listener: TryListener | null
  unfinished: number
  started = 0
  /** Services of the calls that timed out (their own timeout, not the deadline); allocated on the first. */
  timedOut: string[] | null = null
  degraded: string[] | null = null
  /** Per call, ms from start to end (NaN: not made). */
  readonly durations: number[]
  errors: (CallError | undefined)[] | null = null
  retries: number[] | null = null
  batches: number[][] | null = null
  /** Serialised bodies shared by calls with identical body templates (CallPlan.bodySlot). */
  bodies: SharedBodies | null = null
  done = false

  constructor(bound: BoundEndpoint, request: RequestView, requestId: string, settle: (answer: GatewayAnswer) => void) {
    const plan = bound.plan
    this.bound = bound
    this.endpoint = plan
    this.request = request
    this.scope = new Scope(request, plan.calls.length, plan.readsCallMeta)
    this.requestId = requestId
    this.version = bound.version
    this.startedAt = performance.now()
    // Calls end a little before the deadline, leaving time to assemble and write the answer.
    this.deadlineAt = this.startedAt + plan.callWindow
    // Copies of arrays prepared at compile time: cheaper than building them per request.
    this.waitingOn = plan.dependencyCounts.slice()
    this.state = plan.dependencyCounts.map(zero)
    this.durations = plan.dependencyCounts.map(notMade)
    this.unfinished = plan.calls.length
    this.settle = settle
    const observers = bound.observers
    this.observed = observers === null ? null : new Array<unknown>(observers.all.length)
    this.listener = observers?.tries == null ? null : this
  }

  /** An arrow so that it can be handed to an event emitter as it is. */
  readonly abandon = (): void => {
    if (this.done) return
    this.fail(499, 'CLIENT_CLOSED_REQUEST', 'the client closed the connection', [])
  }

  readonly cut = (): boolean => {
    if (this.done) return false
    this.fail(503, 'SHUTTING_DOWN', 'the gateway shut down before the answer was ready', [])
    return true
  }

  start(): void {
    const observers = this.bound.observers
    if (observers !== null) {
      const observed = this.observed as unknown[]
      for (let i = 0; i < observers.all.length; i++) observed[i] = observers.all[i]?.runStarted?.(this)
    }
    if (this.unfinished === 0) {
      this.assemble()
      return
    }
    for (const i of this.endpoint.roots) this.startCall(this.endpoint.calls[i] as CallPlan)
  }

  // --- what tries need of the run (TryOwner, RetryHost, ForEachHost) ---

  hold(cancel: TryCancel): void {
    this.inFlight.hold(cancel)
  }

  drop(cancel: TryCancel): void {
    this.inFlight.drop(cancel)
  }

  retried(call: CallPlan): void {
    const retries = (this.retries ??= this.endpoint.dependencyCounts.map(zero))
    retries[call.index] = (retries[call.index] as number) + 1
  }

  itemsFellBack(call: CallPlan, error: CallError): void {
    ;(this.errors ??= new Array<CallError | undefined>(this.endpoint.calls.length))[call.index] = error
    ;(this.degraded ??= []).push(call.name)
  }

  batchSent(call: CallPlan, size: number): void {
    const batches = (this.batches ??= this.endpoint.calls.map(() => []))
    batches[call.index]?.push(size)
  }

  sharedBodies(): SharedBodies {
    return (this.bodies ??= new Array<string | undefined>(this.endpoint.sharedBodies))
  }

  // --- TryListener: the observers that watch tries ---

  tryStarted(attempt: Try): unknown {
    const { all, tries } = this.bound.observers as Observers
    const observed = this.observed as unknown[]
    if (tries?.length === 1) {
      const i = tries[0] as number
      return all[i]?.tryStarted?.(observed[i], this, attempt)
    }
    return tries?.map((i) => all[i]?.tryStarted?.(observed[i], this, attempt))
  }

  tryEnded(attempt: Try, state: unknown, response: CallResponse | null, error: CallError | null): void {
    const { all, tries } = this.bound.observers as Observers
    const observed = this.observed as unknown[]
    if (tries === null) return
    for (let k = 0; k < tries.length; k++) {
      const i = tries[k] as number
      const tryState = tries.length === 1 ? state : (state as unknown[])[k]
      all[i]?.tryEnded?.(observed[i], attempt, tryState, response, error)
    }
  }

  // --- the scheduler ---

  startCall(call: CallPlan): void {
    if (this.done) return
    this.state[call.index] = RUNNING
    if (call.when !== null) {
      let run: unknown
      try {
        run = call.when(this.scope)
      } catch (err) {
        this.finishCall(call, null, new CallError('expression', message(err), { cause: err }))
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
    let res: CallResponse | null = null
    let error: CallError | null = null
    const started = performance.now()
    const client = this.bound.clients[call.index] as ServiceClient
    try {
      const each = call.forEach
      res =
        each === null
          ? await send(this, call, client, buildRequest(call, this))
          : each.batch === null
            ? await sendEach(this, call, client)
            : await sendBatches(this, call, each.batch, client)
    } catch (err) {
      error = toCallError(err)
    }
    this.durations[call.index] = performance.now() - started
    try {
      this.finishCall(call, res, error)
    } catch {
      // A bug, not a service problem: the client gets the generic message, never our internals.
      if (!this.done) this.fail(500, 'INTERNAL_ERROR', ErrorCodes.INTERNAL_ERROR.message, [])
    }
  }

  skip(call: CallPlan): void {
    this.scope.values[call.index] = this.fallbackOf(call)
    if (this.scope.meta !== null) this.scope.meta[call.index] = meta(null, null, true)
    this.advance(call)
  }

  finishCall(call: CallPlan, res: CallResponse | null, error: CallError | null): void {
    if (this.done) return
    if (error === null) {
      this.scope.values[call.index] = (res as CallResponse).body
      if (this.scope.meta !== null) this.scope.meta[call.index] = meta(res, null, false)
      this.advance(call)
      return
    }
    if (error.kind === 'aborted') return
    const errors = (this.errors ??= new Array<CallError | undefined>(this.endpoint.calls.length))
    errors[call.index] = error
    if (error.kind === 'bad_request') {
      // The client's own mistake (a value its request lacks, a list that is not one): 400, even for an optional call.
      this.fail(400, 'BAD_REQUEST', error.message, [call.service.name])
      return
    }
    if (error.kind === 'deadline' && call.required) {
      // Only a required call still running makes it a 504; the optional ones take their fallback.
      this.fail(
        504,
        'GATEWAY_TIMEOUT',
        `the endpoint's ${this.endpoint.timeout}ms deadline passed`,
        this.requiredInFlight(call),
      )
      return
    }
    if (error.kind === 'timeout') (this.timedOut ??= []).push(call.service.name)
    if (call.required) {
      if (error.kind === 'timeout' && this.timedOut?.length === this.started && this.inFlight.size === 0) {
        // Every call started has timed out (the optional ones before this one too): name them all.
        this.fail(504, 'GATEWAY_TIMEOUT', `${call.service.name} timed out`, [...new Set(this.timedOut)])
        return
      }
      const answer = answerFor(error, call.service.name)
      const retryAfter =
        error.kind === 'status' && error.status === 429
          ? (error.retryAfter ?? String(this.bound.retryAfterSeconds))
          : null
      this.fail(answer.status, answer.code, answer.message, [call.service.name], retryAfter)
      return
    }
    this.scope.values[call.index] = this.fallbackOf(call)
    if (this.scope.meta !== null) this.scope.meta[call.index] = meta(null, error, false)
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
      if (waiting === 0) this.startCall(this.endpoint.calls[d] as CallPlan)
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
      body = this.endpoint.response(this.scope)
    } catch (err) {
      this.fail(502, 'RESPONSE_ASSEMBLY_FAILED', `the response could not be assembled: ${message(err)}`, [])
      return
    }
    this.done = true
    const degraded = this.degraded
    if (degraded === null) {
      this.answer({ status: this.endpoint.status, body, headers: null })
      return
    }
    if (body !== null && typeof body === 'object' && !Array.isArray(body)) body = { ...body, partialData: true }
    this.answer({ status: this.endpoint.status, body, headers: { [DEGRADED_HEADER]: degraded.join(', ') } })
  }

  /** Services of the required calls cut off by the deadline, the one that noticed first. */
  requiredInFlight(call: CallPlan): string[] {
    const names = new Set([call.service.name])
    for (const c of this.endpoint.calls) if (c.required && this.state[c.index] === RUNNING) names.add(c.service.name)
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
    this.inFlight.abortAll(CANCELLED)
    this.answer({
      status,
      body: errorEnvelope(code, text, failedServices),
      headers: retryAfter === null ? null : { 'retry-after': retryAfter },
    })
  }

  /** Tells the observers, then hands the answer to the server. */
  answer(answer: GatewayAnswer): void {
    // Nothing of the run is in flight any more: its timer goes.
    this.inFlight.end()
    const observers = this.bound.observers
    if (observers !== null) {
      const observed = this.observed as unknown[]
      for (let i = 0; i < observers.all.length; i++) {
        try {
          observers.all[i]?.runFinished?.(observed[i], this, answer)
        } catch {
          // An observer's bug must not cost the client its answer.
        }
      }
    }
    this.settle(answer)
  }
}

const zero = (): number => 0
const notMade = (): number => NaN

/** Truthiness of the expression language: false, null, 0 and "" are false. */
function truthy(value: unknown): boolean {
  return value !== false && value !== null && value !== undefined && value !== 0 && value !== ''
}

function meta(res: CallResponse | null, error: CallError | null, skipped: boolean): CallMeta {
  return {
    status: res?.status ?? error?.status ?? null,
    headers: res?.headers ?? error?.headers ?? {},
    ok: error === null && !skipped,
    error: error === null ? null : error.kind,
    skipped,
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

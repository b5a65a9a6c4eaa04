/**
 * Sends a call's request, retrying as its policy allows. Each try goes through the service's
 * pipeline (which gives it min(call timeout, time left)); a retry whose backoff plus timeout
 * cannot finish before the deadline is not started, and neither is one the service's retry
 * budget has no room for.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { backoffCeiling, type RetryPlan } from '../plan/resilience.ts'
import type { CallPlan } from '../plan/types.ts'
import { TryCancel } from '../upstream/cancel.ts'
import type { ServiceClient } from '../upstream/client.ts'
import type { CallError } from '../upstream/failure.ts'
import { toCallError } from '../upstream/failure.ts'
import { type CallRequest, type CallResponse, newTry, type TryOwner } from '../upstream/pipeline.ts'
import { CANCELLED } from '../upstream/stages/deadline.ts'

/** What retrying needs of the request being run. */
export interface RetryHost extends TryOwner {
  /** The request's answer is decided: no more tries. */
  readonly done: boolean
  /** Counts one retry of the call. */
  retried(call: CallPlan): void
}

export function send(
  host: RetryHost,
  call: CallPlan,
  client: ServiceClient,
  request: CallRequest,
  owner: TryOwner = host,
): Promise<CallResponse> {
  // Most calls have no retry policy: their one try is the pipeline's promise itself, without another async frame.
  if (call.retry === null) return client.send(newTry(call, request, 1, owner))
  return sendWithRetries(host, call, call.retry, client, request, owner)
}

async function sendWithRetries(
  host: RetryHost,
  call: CallPlan,
  retry: RetryPlan,
  client: ServiceClient,
  request: CallRequest,
  owner: TryOwner,
): Promise<CallResponse> {
  client.budget.request()
  for (let tries = 1; ; tries++) {
    let error: CallError
    try {
      return await client.send(newTry(call, request, tries, owner))
    } catch (err) {
      error = toCallError(err)
    }
    const wait = tries > retry.attempts || host.done ? null : retryDelay(retry, tries, error)
    if (wait === null || !fits(host, wait, call.timeout) || !client.budget.tryRetry()) throw error
    await pause(owner, wait)
    host.retried(call)
  }
}

/** Can a retry after `wait` ms, with a try of `timeout` ms, finish before the deadline? */
function fits(host: TryOwner, wait: number, timeout: number): boolean {
  const left = host.deadlineAt - performance.now() - wait
  return Number.isFinite(timeout) ? timeout <= left : left > 0
}

/** Waits out a backoff; cut short (with CANCELLED) when the request is decided meanwhile. */
async function pause(owner: TryOwner, ms: number): Promise<void> {
  const cancel = new TryCancel(Infinity, null)
  owner.hold(cancel)
  try {
    await sleep(ms, undefined, { signal: cancel.signal })
  } catch {
    throw CANCELLED
  } finally {
    owner.drop(cancel)
  }
}

/** ms to wait before the next try, or null when this failure is not retried. */
function retryDelay(plan: RetryPlan, tries: number, error: CallError): number | null {
  if (error.kind === 'status') {
    const status = error.status as number
    if (!((status >= 500 && plan.on5xx) || plan.statuses.includes(status))) return null
    return Math.max(backoff(plan, tries), retryAfterMs(error.retryAfter))
  }
  const kind = error.kind
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
function retryAfterMs(value: string | null): number {
  if (value === null) return 0
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(value)
  return Number.isNaN(date) ? 0 : Math.max(0, date - Date.now())
}

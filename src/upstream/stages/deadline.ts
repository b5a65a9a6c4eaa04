/**
 * Deadline and abort, the outermost stage: each try gets min(the call's timeout, the time left
 * before the endpoint's deadline), through one AbortController whose abort reaches the socket.
 * The controller is held by the request, which aborts it when its answer is decided without
 * this try (a required call failed elsewhere, the client left).
 */
import { CallError } from '../failure.ts'
import type { Stage } from '../pipeline.ts'

/** The call's own timeout ran out. */
export const CALL_TIMEOUT = new CallError('timeout', 'call timed out')
/** The endpoint's deadline passed. */
export const DEADLINE = new CallError('deadline', 'endpoint deadline passed')
/** The request's answer was decided (or the client left) while the try ran. */
export const CANCELLED = new CallError('aborted', 'request settled')

function abort(controller: AbortController, reason: CallError): void {
  controller.abort(reason)
}

export const deadlineStage: Stage = (next) => async (attempt) => {
  const owner = attempt.owner
  const left = owner.deadlineAt - performance.now()
  if (left <= 0) throw DEADLINE
  const timeout = attempt.call.timeout
  const byDeadline = left <= timeout
  const controller = new AbortController()
  const timer = setTimeout(abort, byDeadline ? left : timeout, controller, byDeadline ? DEADLINE : CALL_TIMEOUT)
  owner.hold(controller)
  attempt.signal = controller.signal
  try {
    return await next(attempt)
  } finally {
    clearTimeout(timer)
    owner.drop(controller)
  }
}

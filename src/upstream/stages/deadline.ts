/**
 * Deadline and abort, the outermost stage: each try gets min(the call's timeout, the time left
 * before the endpoint's deadline). Its TryCancel is held by the request, which aborts it when
 * that time is up (one timer per request, see cancel.ts) or when its answer is decided without
 * this try (a required call failed elsewhere, the client left); the abort reaches the socket.
 */
import { TryCancel } from '../cancel.ts'
import { CallError } from '../failure.ts'
import { cancelWith, type Stage } from '../pipeline.ts'

/** The call's own timeout ran out. */
export const CALL_TIMEOUT = new CallError('timeout', 'call timed out')
/** The endpoint's deadline passed. */
export const DEADLINE = new CallError('deadline', 'endpoint deadline passed')
/** The request's answer was decided (or the client left) while the try ran. */
export const CANCELLED = new CallError('aborted', 'request settled')

export const deadlineStage: Stage = (next) => async (attempt) => {
  const owner = attempt.owner
  const now = performance.now()
  const deadlineAt = owner.deadlineAt
  if (deadlineAt <= now) throw DEADLINE
  const expiresAt = now + attempt.call.timeout
  const cancel = deadlineAt <= expiresAt ? new TryCancel(deadlineAt, DEADLINE) : new TryCancel(expiresAt, CALL_TIMEOUT)
  owner.hold(cancel)
  cancelWith(attempt, cancel)
  try {
    return await next(attempt)
  } finally {
    owner.drop(cancel)
  }
}

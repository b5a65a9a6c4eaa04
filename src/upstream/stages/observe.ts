/**
 * Tells the request's observers (tracing) when a try starts and how it ended. In the chain only
 * when some observer listens to tries; a request nobody listens to passes straight through.
 */
import { toCallError } from '../failure.ts'
import type { Stage } from '../pipeline.ts'

export const observeStage: Stage = (next) => async (attempt) => {
  const listener = attempt.owner.listener
  if (listener === null) return next(attempt)
  const state = listener.tryStarted(attempt)
  try {
    const res = await next(attempt)
    listener.tryEnded(attempt, state, res, null)
    return res
  } catch (err) {
    const error = toCallError(err)
    listener.tryEnded(attempt, state, null, error)
    throw error
  }
}

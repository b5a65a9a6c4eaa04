/** Time, injectable: the resilience tests drive breakers and budgets with a fake clock instead of waiting. */
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number
}

export const systemClock: Clock = { now: () => performance.now() }

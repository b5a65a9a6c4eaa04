/**
 * The service's circuit breaker: while open a try fails at once (`circuit_open`); otherwise its
 * outcome is reported: a failure that counts against the service, a success (2xx, or a 4xx:
 * the service is up), or neither (the try was cut short for reasons of the gateway's own).
 */
import type { ServicePlan } from '../../plan/types.ts'
import type { CircuitBreaker } from '../../policies/breaker.ts'
import { CallError, countsAgainstService, toCallError } from '../failure.ts'
import type { Stage } from '../pipeline.ts'

export function breakerStage(breaker: CircuitBreaker | null, service: ServicePlan): Stage | null {
  if (breaker === null) return null
  const name = service.name
  return (next) => async (attempt) => {
    const ticket = breaker.tryAcquire()
    if (ticket === -1) throw new CallError('circuit_open', `${name}: circuit breaker open`)
    try {
      const res = await next(attempt)
      breaker.success(ticket)
      return res
    } catch (err) {
      const error = toCallError(err)
      if (countsAgainstService(error, Number.isFinite(attempt.call.timeout))) breaker.failure(ticket)
      else if (error.kind === 'status') breaker.success(ticket)
      else breaker.release(ticket)
      throw error
    }
  }
}

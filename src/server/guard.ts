/**
 * An endpoint's admission (edge/admission.ts) as a fastify onRequest hook, run before the body
 * is read. A rejection is answered in the envelope and told to the edge observers (metrics, the
 * log); an admitted caller becomes `req.principal`, and the limits' headers go on the answer.
 */
import type { onRequestAsyncHookHandler } from 'fastify'
import { errorEnvelope } from '../errors.ts'
import type { Admit, EdgeObserver } from '../edge/admission.ts'
import type { EndpointPlan } from '../plan/types.ts'
import { LOGGED, requestIdOf, send } from './answers.ts'

export function guardFor(
  endpoint: EndpointPlan,
  admit: Admit | null,
  observers: readonly EdgeObserver[],
): onRequestAsyncHookHandler | null {
  if (admit === null) return null
  return async (req, reply) => {
    const admission = await admit({ ip: req.ip, headers: req.headers, query: req.query as Record<string, unknown> })
    if (admission.admitted) {
      req.principal = admission.principal
      for (const name in admission.headers) reply.header(name, admission.headers[name])
      return undefined
    }
    const { rejection } = admission
    const requestId = requestIdOf(req)
    for (const observer of observers) observer.rejected(endpoint, rejection, { ip: req.ip, requestId })
    // Its `rejected` line is its log line; the gateway's onSend hook counts it.
    req.recorded = LOGGED
    return send(
      reply,
      {
        status: rejection.status,
        body: errorEnvelope(rejection.code, rejection.message),
        headers: { ...rejection.headers },
      },
      requestId,
    )
  }
}

/**
 * Redirects, for a service that opts in (`followRedirects: n`): a 301, 302, 303, 307 or 308
 * whose Location is on the service's own origin is followed, at most n times per try; one to
 * another origin fails the call (`redirect`) and nothing is sent there. The transport below
 * only ever talks to the service's own connection pool, so its credentials cannot follow a
 * redirect elsewhere. A 303, and a 301 or 302 answering a POST, is followed with a GET without
 * a body, as browsers do; 307 and 308 resend the method and body. Part of the transport, so
 * that health probes follow the same redirects as calls; each hop goes through credentials.
 * Not in the chain of a service that does not opt in: there a redirect is a `status` failure.
 */
import type { ServicePlan } from '../../plan/types.ts'
import { CallError } from '../failure.ts'
import type { Outgoing, Transport } from '../pipeline.ts'

const FOLLOWED = new Set([301, 302, 303, 307, 308])

export function redirectStage(service: ServicePlan, origin: string): ((next: Transport) => Transport) | null {
  const most = service.followRedirects
  if (most === 0) return null
  const own = new URL(origin).origin
  return (next) => async (request) => {
    let outgoing: Outgoing = request
    for (let hops = 0; ; hops++) {
      try {
        return await next(outgoing)
      } catch (err) {
        const location = err instanceof CallError ? redirectedTo(err) : null
        if (location === null) throw err
        const status = (err as CallError).status as number
        if (hops === most) {
          throw new CallError('redirect', `redirected more than ${most} time${most === 1 ? '' : 's'}`, { cause: err })
        }
        let target: URL
        try {
          target = new URL(location, own + outgoing.path)
        } catch (cause) {
          throw new CallError('redirect', `redirected to a Location that is not a URL`, { cause })
        }
        if (target.origin !== own) {
          // Never a request to another origin: nothing of the call (its credentials) leaves the service.
          throw new CallError('redirect', `redirected to another origin (${target.origin}), which is never followed`, {
            cause: err,
          })
        }
        const method = outgoing.method
        const toGet = (status === 303 && method !== 'HEAD') || ((status === 301 || status === 302) && method === 'POST')
        outgoing = {
          method: toGet ? 'GET' : method,
          path: target.pathname + target.search,
          body: toGet ? null : outgoing.body,
          headers: toGet ? withoutContent(outgoing.headers) : outgoing.headers,
          signal: request.signal,
        }
      }
    }
  }
}

/** The Location of a redirect this stage follows; null for any other failure (or a 3xx without one). */
function redirectedTo(error: CallError): string | null {
  if (error.kind !== 'status' || !FOLLOWED.has(error.status as number)) return null
  const location = error.headers?.location
  return typeof location === 'string' && location !== '' ? location : null
}

/** A GET after a 303 carries no body, so none of the headers that described it. */
function withoutContent(headers: Record<string, string>): Record<string, string> {
  const copy: Record<string, string> = {}
  for (const name in headers) if (!name.startsWith('content-')) copy[name] = headers[name] as string
  return copy
}

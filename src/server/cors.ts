/**
 * CORS through @fastify/cors: allowed origins (exact, or one wildcard subdomain level), the
 * preflight answered by the gateway, and the headers scripts may read.
 */
import fastifyCors, { type FastifyCorsOptions } from '@fastify/cors'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { CorsPlan } from '../plan/types.ts'
import { requestIdOf, sendError } from './answers.ts'

export function registerCors(server: FastifyInstance, cors: CorsPlan): void {
  // An OPTIONS that is not a preflight would get @fastify/cors's own text/plain 400; it gets the envelope's 404 instead,
  // as it does without CORS. Added before the plugin, so it runs first.
  server.addHook('onRequest', (req, reply, done) => {
    if (req.method === 'OPTIONS' && req.routeOptions.url === '*' && !isPreflight(req)) {
      sendError(reply, 'NOT_FOUND', requestIdOf(req))
      return
    }
    done()
  })
  void server.register(fastifyCors, corsOptions(cors))
}

/** A CORS preflight: an OPTIONS with an Origin and the method it asks about. */
export function isPreflight(req: FastifyRequest): boolean {
  return (
    req.method === 'OPTIONS' &&
    req.headers.origin !== undefined &&
    req.headers['access-control-request-method'] !== undefined
  )
}

/** `https://*.example.com` matches one subdomain level of example.com; other origins match exactly. */
function originMatcher(origin: string): string | RegExp {
  if (!origin.includes('*')) return origin
  const [scheme, host] = origin.split('://*.') as [string, string]
  const escaped = host.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  return new RegExp(`^${scheme}://[a-z0-9-]+\\.${escaped}$`, 'i')
}

function corsOptions(cors: CorsPlan): FastifyCorsOptions {
  return {
    origin: cors.origins === '*' ? '*' : cors.origins.map(originMatcher),
    methods: [...cors.methods],
    allowedHeaders: [...cors.headers],
    exposedHeaders: [...cors.exposeHeaders],
    credentials: cors.credentials,
    maxAge: Math.floor(cors.maxAge / 1000),
    strictPreflight: true,
  }
}

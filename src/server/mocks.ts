/**
 * `baton dev`: each service with `mock:` routes gets an in-process server on a free port, and
 * the gateway is pointed at it. `down` services answer 503, `slow` ones answer late, so a
 * front-end developer can see every degraded state of a screen without any backend.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import Router, { type HTTPMethod } from 'find-my-way'
import type { GatewayPlan, ServicePlan } from '../plan/types.ts'

export interface MockOptions {
  /** Services that fail: every request answers 503. */
  down?: ReadonlySet<string>
  /** Extra delay per service, in ms. */
  slow?: ReadonlyMap<string, number>
}

export interface MockFleet {
  /** Service name → origin of its mock (a reload that adds a mocked service adds its origin). */
  readonly origins: ReadonlyMap<string, string>
  /** A reload: each service's mock answers with its routes in `plan` (same port); new ones get a server. */
  update(plan: GatewayPlan): Promise<void>
  close(): Promise<void>
}

type Handle = (req: FastifyRequest, reply: FastifyReply, params: Record<string, string | undefined>) => Promise<unknown>

export async function startMocks(plan: GatewayPlan, options: MockOptions = {}): Promise<MockFleet> {
  const servers = new Map<string, { server: FastifyInstance; serve: (service: ServicePlan) => void }>()
  const origins = new Map<string, string>()
  const update = async (next: GatewayPlan): Promise<void> => {
    for (const service of next.services) {
      const known = servers.get(service.name)
      if (known !== undefined) {
        known.serve(service)
        continue
      }
      if (service.mock === null && options.down?.has(service.name) !== true) continue
      const mock = mockServer(service, options)
      servers.set(service.name, mock)
      await mock.server.listen({ host: '127.0.0.1', port: 0 })
      const address = mock.server.server.address()
      if (typeof address === 'object' && address !== null) origins.set(service.name, `http://127.0.0.1:${address.port}`)
    }
  }
  const close = async (): Promise<void> => {
    await Promise.all([...servers.values()].map(async (s) => await s.server.close()))
  }
  try {
    await update(plan)
  } catch (err) {
    await close()
    throw err
  }
  return { origins, update, close }
}

/** One service's mock: a server whose routes (a router of its own) a reload can replace. */
function mockServer(
  first: ServicePlan,
  options: MockOptions,
): { server: FastifyInstance; serve: (service: ServicePlan) => void } {
  const server = Fastify({ logger: false, forceCloseConnections: true })
  const down = options.down?.has(first.name) === true
  const extra = options.slow?.get(first.name) ?? 0
  const failing = async (): Promise<{ error: string }> => {
    if (extra > 0) await sleep(extra)
    return { error: `${first.name} is down (baton dev --down)` }
  }
  let router = routerOf(first, extra)
  server.route({
    method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    url: '*',
    handler: async (req, reply) => {
      if (down) return reply.code(503).send(await failing())
      const found = router.find(req.method as HTTPMethod, req.url)
      if (found === null)
        return reply.code(404).send({ error: `no mock for ${req.method} ${req.url} in service ${first.name}` })
      return await (found.handler as unknown as Handle)(req, reply, found.params)
    },
  })
  return { server, serve: (service) => (router = routerOf(service, extra)) }
}

function routerOf(service: ServicePlan, extra: number): Router.Instance<Router.HTTPVersion.V1> {
  const router = Router({ ignoreTrailingSlash: true })
  for (const route of service.mock ?? []) {
    const handle: Handle = async (req, reply, params) => {
      const delay = route.latency + extra
      if (delay > 0) await sleep(delay)
      const request = {
        method: req.method,
        path: req.url.split('?')[0],
        params,
        query: req.query,
        headers: req.headers,
        body: req.body ?? null,
      }
      const body = route.body === null ? null : route.body({ request })
      reply.code(route.status).headers(route.headers)
      return body === null ? reply.send() : reply.send(body)
    }
    const handler = handle as unknown as Router.Handler<Router.HTTPVersion.V1>
    router.on(route.method as HTTPMethod, route.path, handler)
    if (route.method === 'GET' && !service.mock?.some((r) => r.method === 'HEAD' && r.path === route.path))
      router.on('HEAD', route.path, handler)
  }
  return router
}

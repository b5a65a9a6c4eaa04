/**
 * `baton dev`: each service with `mock:` routes gets an in-process server on a free port, and
 * the gateway is pointed at it. `down` services answer 503, `slow` ones answer late, so a
 * front-end developer can see every degraded state of a screen without any backend.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import type { GatewayPlan, ServicePlan } from '../plan/types.ts'

export interface MockOptions {
  /** Services that fail: every request answers 503. */
  down?: ReadonlySet<string>
  /** Extra delay per service, in ms. */
  slow?: ReadonlyMap<string, number>
}

export interface MockFleet {
  /** Service name → origin of its mock. */
  readonly origins: ReadonlyMap<string, string>
  close(): Promise<void>
}

export async function startMocks(plan: GatewayPlan, options: MockOptions = {}): Promise<MockFleet> {
  const servers: FastifyInstance[] = []
  const origins = new Map<string, string>()
  try {
    for (const service of plan.services) {
      if (service.mock === null && options.down?.has(service.name) !== true) continue
      const server = mockServer(service, options)
      servers.push(server)
      await server.listen({ host: '127.0.0.1', port: 0 })
      const address = server.server.address()
      if (typeof address === 'object' && address !== null) origins.set(service.name, `http://127.0.0.1:${address.port}`)
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.close()))
    throw err
  }
  return {
    origins,
    close: async () => {
      await Promise.all(servers.map((s) => s.close()))
    },
  }
}

function mockServer(service: ServicePlan, options: MockOptions): FastifyInstance {
  const server = Fastify({ logger: false, forceCloseConnections: true })
  const down = options.down?.has(service.name) === true
  const extra = options.slow?.get(service.name) ?? 0
  const failing = async (): Promise<{ error: string }> => {
    if (extra > 0) await sleep(extra)
    return { error: `${service.name} is down (baton dev --down)` }
  }
  server.setNotFoundHandler(async (req, reply) => {
    if (down) return reply.code(503).send(await failing())
    return reply.code(404).send({ error: `no mock for ${req.method} ${req.url} in service ${service.name}` })
  })
  for (const route of service.mock ?? []) {
    server.route({
      method: route.method as 'GET',
      url: route.path,
      handler: async (req, reply) => {
        if (down) return reply.code(503).send(await failing())
        const delay = route.latency + extra
        if (delay > 0) await sleep(delay)
        const request = {
          method: req.method,
          path: req.url.split('?')[0],
          params: req.params,
          query: req.query,
          headers: req.headers,
          body: req.body ?? null,
        }
        const body = route.body === null ? null : route.body({ request })
        reply.code(route.status).headers(route.headers)
        return body === null ? reply.send() : reply.send(body)
      },
    })
  }
  return server
}

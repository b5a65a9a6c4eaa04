/**
 * The cache invalidation webhook: `POST {"tags": ["product:42"]}` drops every entry with one of
 * the tags, here, in Redis and (through the Redis channel) on every other instance. It is served
 * on the admin port, which is private, and on the main port only behind a bearer token.
 */
import { timingSafeEqual } from 'node:crypto'
import type { RouteOptions } from 'fastify'
import type { GatewayCaches } from '../cache/caches.ts'
import { requestIdOf, send, sendError } from './answers.ts'

/** At most this many tags per call. */
const MAX_TAGS = 100

export function invalidationRoute(path: string, token: string | null, caches: GatewayCaches): RouteOptions {
  const expected = token === null ? null : Buffer.from(`Bearer ${token}`)
  return {
    method: 'POST',
    url: path,
    config: { label: `POST ${path}` },
    handler: async (req, reply) => {
      const requestId = requestIdOf(req)
      if (expected !== null) {
        const given = Buffer.from(req.headers.authorization ?? '')
        if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
          reply.header('www-authenticate', 'Bearer realm="baton-admin"')
          return sendError(reply, 'UNAUTHENTICATED', requestId, 'The invalidation webhook needs its bearer token')
        }
      }
      const tags = (req.body as { tags?: unknown } | null)?.tags
      if (
        !Array.isArray(tags) ||
        tags.length === 0 ||
        tags.length > MAX_TAGS ||
        !tags.every((t) => typeof t === 'string' && t.length > 0 && t.length <= 1024)
      ) {
        return sendError(
          reply,
          'BAD_REQUEST',
          requestId,
          `Send {"tags": [...]}: 1 to ${MAX_TAGS} non-empty strings, e.g. {"tags": ["product:42"]}`,
        )
      }
      const result = await caches.invalidate(tags as string[])
      return send(reply, { status: 200, body: { tags, ...result }, headers: null }, requestId)
    },
  }
}

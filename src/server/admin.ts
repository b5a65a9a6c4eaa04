/**
 * The admin endpoints, never open by default: served on the admin port (gateway.metrics.port),
 * which is private, and on the main port only behind a bearer token.
 *
 * - `POST /admin/cache/invalidate {"tags": ["product:42"]}` drops every cached answer with one of
 *   the tags, here, in Redis and (through the Redis channel) on every other instance.
 * - `POST /admin/reload` reads the config file again and serves it (or refuses it, with its
 *   diagnostics, and the running config keeps serving).
 */
import { timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import { ConfigError } from '../errors.ts'
import { requestIdOf, send, sendError } from './answers.ts'

/**
 * What an admin endpoint did in this process, as `baton serve --workers` passes it on to the
 * other workers (each has its own memory cache, generation and canary).
 */
export type AdminAction =
  | { readonly type: 'invalidate'; readonly tags: readonly string[] }
  | { readonly type: 'reload' }
  | { readonly type: 'canary'; readonly how: 'promote' | 'abort' }

/** At most this many tags per call. */
const MAX_TAGS = 100

/** The route, made for a port: `token` null on the admin port, the bearer token on the main one. */
export type AdminRoute = (token: string | null) => RouteOptions

/** Answers 401 and returns false unless the request carries the token (always true without one). */
function authorized(req: FastifyRequest, reply: FastifyReply, token: string | null): boolean {
  if (token === null) return true
  const expected = Buffer.from(`Bearer ${token}`)
  const given = Buffer.from(req.headers.authorization ?? '')
  if (given.length === expected.length && timingSafeEqual(given, expected)) return true
  reply.header('www-authenticate', 'Bearer realm="baton-admin"')
  void sendError(reply, 'UNAUTHENTICATED', requestIdOf(req), 'The admin endpoints need their bearer token')
  return false
}

/** A POST admin route: the token checked (on the main port), then `handle` with the request id. */
function adminRoute(
  path: string,
  handle: (req: FastifyRequest, reply: FastifyReply, requestId: string) => Promise<FastifyReply>,
): AdminRoute {
  return (token) => ({
    method: 'POST',
    url: path,
    config: { label: `POST ${path}` },
    handler: async (req, reply) => {
      if (!authorized(req, reply, token)) return reply
      return await handle(req, reply, requestIdOf(req))
    },
  })
}

export function invalidationRoute(
  path: string,
  invalidate: (tags: string[]) => Promise<{ dropped: number; published: boolean }>,
): AdminRoute {
  return adminRoute(path, async (req, reply, requestId) => {
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
    const result = await invalidate(tags as string[])
    return send(reply, { status: 200, body: { tags, ...result }, headers: null }, requestId)
  })
}

export function reloadRoute(path: string, reload: () => Promise<unknown>): AdminRoute {
  return adminRoute(path, async (_req, reply, requestId) => {
    try {
      const report = await reload()
      return send(reply, { status: 200, body: report, headers: null }, requestId)
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      // The config as it is now on disk does not compile: the running one keeps serving.
      const errors = err.diagnostics.filter((d) => d.severity === 'error')
      return send(
        reply,
        {
          status: 422,
          body: {
            error: {
              code: 'CONFIG_INVALID',
              message: `The config has ${errors.length} error${errors.length === 1 ? '' : 's'}; the running one keeps serving`,
              diagnostics: errors.map((d) => ({
                code: d.code,
                message: d.message,
                at: `${d.file ?? ''}:${d.line ?? 0}:${d.col ?? 0}`,
                ...(d.hint === undefined ? {} : { hint: d.hint }),
              })),
            },
          },
          headers: null,
        },
        requestId,
      )
    }
  })
}

/** `POST /admin/canary/promote` or `/abort`: 200 with what happened, or 409 when no canary runs. */
export function canaryRoute(path: string, end: () => boolean): AdminRoute {
  return adminRoute(path, async (_req, reply, requestId) => {
    if (!end())
      return send(
        reply,
        { status: 409, body: { error: { code: 'NO_CANARY', message: 'No canary is running' } }, headers: null },
        requestId,
      )
    return send(
      reply,
      { status: 200, body: { ended: path.slice(path.lastIndexOf('/') + 1) }, headers: null },
      requestId,
    )
  })
}

/**
 * Which methods a path has, for 405 METHOD_NOT_ALLOWED and its Allow header. A router of every
 * route the gateway serves (find-my-way, the router fastify itself uses, with fastify's options
 * as the gateway sets them), built once at start-up and asked only when fastify found no route
 * for a request: a path with parameters, a static path beside a parameter, a trailing slash
 * all match exactly as they would for the real routes.
 */
import Router, { type HTTPMethod } from 'find-my-way'

/** The order of the Allow header. */
const ORDER: readonly HTTPMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

export interface ServedRoute {
  readonly method: string
  /** In the server's syntax (`/users/:id`), basePath included. */
  readonly path: string
}

/** The methods that `url` (path and query, as received) is served with, in a fixed order; [] for a path nobody serves. */
export type AllowedMethods = (url: string) => readonly string[]

export function allowedMethods(routes: readonly ServedRoute[]): AllowedMethods {
  // As the gateway's fastify: routerOptions.ignoreTrailingSlash, and fastify's defaults for the rest.
  const router = Router({ ignoreTrailingSlash: true, caseSensitive: true, maxParamLength: 100 })
  const declared = new Set<string>()
  const add = (method: HTTPMethod, path: string): void => {
    if (declared.has(`${method} ${path}`)) return
    declared.add(`${method} ${path}`)
    router.on(method, path, () => {})
  }
  for (const route of routes) {
    add(route.method as HTTPMethod, route.path)
    // fastify answers HEAD for every GET route (exposeHeadRoutes).
    if (route.method === 'GET') add('HEAD', route.path)
  }
  const methods = ORDER.filter((m) => [...declared].some((key) => key.startsWith(`${m} `)))
  return (url) => {
    const allowed: string[] = []
    for (const method of methods) if (router.find(method, url) !== null) allowed.push(method)
    return allowed
  }
}

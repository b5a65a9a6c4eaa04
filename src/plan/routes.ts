/** Endpoint paths as written in the template (`/users/{id}`) and as the server routes them (`/users/:id`). */

const PARAM = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g

export function routeParams(path: string): string[] {
  return [...path.matchAll(PARAM)].map((m) => m[1] as string)
}

export function routeToServerPath(path: string): string {
  return path.replace(PARAM, ':$1')
}

/** Two routes collide when they differ only in parameter names. */
export function routeShape(method: string, path: string): string {
  return `${method} ${path.replace(PARAM, '{}').replace(/\/$/, '') || '/'}`
}

/** Segments a route may not have: a `{` that is not a well-formed parameter, or a `:` the server would read as one. */
export function invalidRouteSegment(path: string): string | undefined {
  return path
    .split('/')
    .find(
      (seg) =>
        seg.replace(PARAM, '').includes('{') ||
        seg.replace(PARAM, '').includes('}') ||
        seg.startsWith(':') ||
        seg.includes('*'),
    )
}

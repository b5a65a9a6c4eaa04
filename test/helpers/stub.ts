/**
 * A real HTTP upstream for end-to-end tests: routes declared per test, every request
 * recorded (what arrived, when, and whether the gateway hung up before the answer), and
 * how many requests were in flight at once, per route and overall.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** What a route answers. Build one with json(), text(), hang() or reset(). */
export type Reply =
  | {
      readonly kind: 'send'
      readonly status: number
      readonly headers: Record<string, string>
      readonly body: string | Buffer
      readonly delay: number
      readonly chunked: boolean
    }
  | { readonly kind: 'hang' }
  | { readonly kind: 'reset'; readonly delay: number }

export interface ReplyOptions {
  status?: number
  headers?: Record<string, string>
  /** ms before answering; cut short when the client goes away. */
  delay?: number
  /** Send the body chunked, without a content-length. */
  chunked?: boolean
}

export function json(body: unknown, options: ReplyOptions = {}): Reply {
  return text(JSON.stringify(body), { ...options, headers: { 'content-type': 'application/json', ...options.headers } })
}

/** Any body as is: a non-JSON answer, an empty one, a huge one, bytes (a compressed one). */
export function text(
  body: string | Buffer,
  { status = 200, headers = {}, delay = 0, chunked = false }: ReplyOptions = {},
): Reply {
  return { kind: 'send', status, headers, body, delay, chunked }
}

/** Never answers; the request stays open until the client gives up. */
export function hang(): Reply {
  return { kind: 'hang' }
}

/** Destroys the socket without an answer (a connection reset, as the client sees it). */
export function reset(delay = 0): Reply {
  return { kind: 'reset', delay }
}

export interface StubRequest {
  /** The route pattern that matched (`GET /carts/:id`), or null when none did (answered 404). */
  readonly route: string | null
  readonly method: string
  /** As received, still percent-encoded. */
  readonly url: string
  /** Decoded values of the route's `:name` segments. */
  readonly params: Record<string, string>
  readonly headers: IncomingHttpHeaders
  /** Parsed JSON body, the raw text when it is not JSON, null when empty (set once the body is read). */
  body: unknown
  /** performance.now() when the request's headers arrived. */
  readonly arrivedAt: number
  /** performance.now() just before the answer was written; null when never answered. */
  respondedAt: number | null
  /** The connection closed before the answer was complete. */
  aborted: boolean
  /** The connection closed (answered or not). */
  closed: boolean
}

export type Handler = Reply | ((req: StubRequest) => Reply | Promise<Reply>)

interface Route {
  readonly key: string
  readonly method: string
  readonly segments: readonly string[]
  readonly handler: Handler
}

export interface Stub {
  readonly url: string
  readonly port: number
  /** Every request, in arrival order. */
  readonly requests: StubRequest[]
  route(key: string, handler: Handler): void
  /** Requests that matched a route. */
  requestsTo(key: string): StubRequest[]
  inFlight(key?: string): number
  peak(key?: string): number
  close(): Promise<void>
}

export async function startStub(): Promise<Stub> {
  const routes: Route[] = []
  const requests: StubRequest[] = []
  const inFlight = new Map<string, number>()
  const peaks = new Map<string, number>()
  const ALL = '*'

  const enter = (key: string): void => {
    const n = (inFlight.get(key) ?? 0) + 1
    inFlight.set(key, n)
    peaks.set(key, Math.max(peaks.get(key) ?? 0, n))
  }
  const leave = (key: string): void => {
    inFlight.set(key, (inFlight.get(key) ?? 1) - 1)
  }

  const server = createServer((req, res) => {
    const arrivedAt = performance.now()
    const path = (req.url ?? '/').split('?')[0] as string
    const match = matchRoute(routes, req.method ?? 'GET', path)
    const key = match?.route.key ?? null
    const counted = key === null ? [ALL] : [ALL, key]
    counted.forEach(enter)
    const record: StubRequest = {
      route: key,
      method: req.method ?? '',
      url: req.url ?? '',
      params: match?.params ?? {},
      headers: req.headers,
      body: null,
      arrivedAt,
      respondedAt: null,
      aborted: false,
      closed: false,
    }
    requests.push(record)
    res.on('close', () => {
      record.closed = true
      record.aborted = !res.writableFinished
      counted.forEach(leave)
    })
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      record.body = parseBody(Buffer.concat(chunks).toString('utf8'))
      const handler =
        match?.route.handler ?? json({ error: `no stub route for ${req.method} ${path}` }, { status: 404 })
      respond(handler, record, req, res).catch((err: unknown) => {
        if (!res.headersSent && !res.destroyed) res.writeHead(500).end(String(err))
      })
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    route(key, handler) {
      const [method, path] = key.split(' ') as [string, string]
      routes.push({ key, method, segments: path.split('/'), handler })
    },
    requestsTo: (key) => requests.filter((r) => r.route === key),
    inFlight: (key = ALL) => inFlight.get(key) ?? 0,
    peak: (key = ALL) => peaks.get(key) ?? 0,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

async function respond(
  handler: Handler,
  record: StubRequest,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  // Aborted when the client goes away, so a delay never outlives its request.
  const gone = new AbortController()
  res.on('close', () => gone.abort())
  const reply = typeof handler === 'function' ? await handler(record) : handler
  if (reply.kind === 'hang' || res.destroyed) return
  if (reply.delay > 0) {
    try {
      await sleep(reply.delay, undefined, { signal: gone.signal })
    } catch {
      return
    }
  }
  if (reply.kind === 'reset') {
    req.socket.destroy()
    return
  }
  record.respondedAt = performance.now()
  if (reply.chunked) {
    res.writeHead(reply.status, reply.headers)
    const half = Math.floor(reply.body.length / 2)
    res.write(reply.body.slice(0, half))
    res.end(reply.body.slice(half))
    return
  }
  res.writeHead(reply.status, { 'content-length': String(Buffer.byteLength(reply.body)), ...reply.headers })
  res.end(reply.body)
}

function matchRoute(
  routes: readonly Route[],
  method: string,
  path: string,
): { route: Route; params: Record<string, string> } | null {
  const segments = path.split('/')
  for (const route of routes) {
    if (route.method !== method || route.segments.length !== segments.length) continue
    const params: Record<string, string> = {}
    const ok = route.segments.every((s, i) => {
      const actual = segments[i] as string
      if (s.startsWith(':')) {
        params[s.slice(1)] = safeDecode(actual)
        return actual !== ''
      }
      return s === actual
    })
    if (ok) return { route, params }
  }
  return null
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

function parseBody(raw: string): unknown {
  if (raw === '') return null
  try {
    return JSON.parse(raw) as unknown
  } catch {
    return raw
  }
}

/** Polls until `check` holds (events such as a socket closing land a little after the answer). */
export async function eventually(check: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const until = performance.now() + timeoutMs
  while (!check()) {
    if (performance.now() > until) throw new Error(`timed out after ${timeoutMs}ms waiting for: ${what}`)
    await sleep(5)
  }
}

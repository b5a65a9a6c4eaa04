// A fast fake upstream for the load benchmark: plain node:http, one process, every body
// serialised at start-up, so that it costs the gateways under test as little as possible
// and the same for all of them.
//
//   node bench/upstream.ts [--port N]      (or env PORT; 0 picks a free port)
//
// Once listening it prints one line on stdout: {"port":N}. GET /__stats answers how many
// requests each route has served, and how many came without an x-request-id, so that
// the driver can check what a gateway sends upstream for one request.
import { createServer } from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parseArgs } from 'node:util'
import {
  availabilityBody,
  cartBody,
  postsBody,
  pricingBody,
  shippingBody,
  taxBody,
  userBodies,
} from './upstream-data.ts'

const notFoundBody = Buffer.from(JSON.stringify({ error: 'not found' }))
const badRequestBody = Buffer.from(JSON.stringify({ error: 'invalid JSON body' }))

function send(res: ServerResponse, status: number, body: Buffer | string): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': typeof body === 'string' ? Buffer.byteLength(body) : body.length,
  })
  res.end(body)
}

// Reads the whole body before answering, as a real service would; a client that is
// still writing when the answer arrives would otherwise see a reset connection.
function readBody(req: IncomingMessage, done: (body: string) => void): void {
  let body = ''
  req.setEncoding('utf8')
  req.on('data', (chunk: string) => {
    body += chunk
  })
  req.on('end', () => done(body))
}

function calculate(res: ServerResponse, body: string): void {
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    send(res, 400, badRequestBody)
    return
  }
  // One route serves both pricing ({items}) and tax ({subtotal}).
  const isTax = typeof parsed === 'object' && parsed !== null && 'subtotal' in parsed
  send(res, 200, isTax ? taxBody : pricingBody)
}

const stats = {
  carts: 0,
  checkAvailability: 0,
  calculate: 0,
  estimate: 0,
  posts: 0,
  users: 0,
  other: 0,
  withoutRequestId: 0,
}
type Counted = Exclude<keyof typeof stats, 'withoutRequestId'>
/** Requests held by GET /hang: now, and the most at once. */
const hanging = { now: 0, peak: 0 }

function count(req: IncomingMessage, path: string): void {
  let counted: Counted = 'other'
  if (path.startsWith('/carts/')) counted = 'carts'
  else if (path === '/check-availability') counted = 'checkAvailability'
  else if (path === '/calculate') counted = 'calculate'
  else if (path === '/estimate') counted = 'estimate'
  else if (path === '/posts') counted = 'posts'
  else if (path.startsWith('/users/')) counted = 'users'
  stats[counted]++
  if (req.headers['x-request-id'] === undefined) stats.withoutRequestId++
}

function route(req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/'
  const query = url.indexOf('?')
  const path = query === -1 ? url : url.slice(0, query)
  if (path === '/__stats') {
    readBody(req, () => send(res, 200, JSON.stringify({ ...stats, hanging })))
    return
  }
  if (path === '/v1/traces') {
    // A stand-in OTLP collector for the tracing variant: accepts and drops the spans.
    readBody(req, () => send(res, 200, '{}'))
    return
  }
  if (path === '/hang') {
    // A service that has stopped answering: holds the request until the client gives up.
    hanging.now++
    hanging.peak = Math.max(hanging.peak, hanging.now)
    res.on('close', () => {
      hanging.now--
    })
    return
  }
  count(req, path)
  if (req.method === 'GET') {
    // GET requests may still carry a body; drain it before answering.
    readBody(req, () => {
      if (path === '/posts') return send(res, 200, postsBody)
      if (path.startsWith('/users/')) {
        const user = userBodies.get(path.slice('/users/'.length))
        return send(res, user === undefined ? 404 : 200, user ?? notFoundBody)
      }
      if (path.startsWith('/carts/') && path.length > '/carts/'.length) {
        let id: string
        try {
          id = decodeURIComponent(path.slice('/carts/'.length))
        } catch {
          return send(res, 400, badRequestBody)
        }
        return send(res, 200, cartBody(id))
      }
      send(res, 404, notFoundBody)
    })
    return
  }
  if (req.method === 'POST') {
    readBody(req, (body) => {
      if (path === '/calculate') return calculate(res, body)
      if (path === '/check-availability') return send(res, 200, availabilityBody)
      if (path === '/estimate') return send(res, 200, shippingBody)
      send(res, 404, notFoundBody)
    })
    return
  }
  readBody(req, () => send(res, 405, notFoundBody))
}

const { values } = parseArgs({ options: { port: { type: 'string' } } })
const port = Number(values.port ?? process.env.PORT ?? 0)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`upstream: invalid port ${String(values.port ?? process.env.PORT)}`)
  process.exit(1)
}

const server = createServer(route)
// Longer than any client pool's idle timeout, so that the client always closes first
// and never sends a request on a socket the server is closing.
server.keepAliveTimeout = 65_000
server.listen(port, '127.0.0.1', () => {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('upstream: no TCP address')
  process.stdout.write(JSON.stringify({ port: address.port }) + '\n')
})

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    server.close()
    server.closeAllConnections()
    process.exit(0)
  })
}

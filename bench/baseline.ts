// The hand-written BFF that Baton is measured against: the two benchmark endpoints as a
// good engineer would write them by hand with fastify 5 and undici 8. It does the same
// work as bench/checkout.yaml and bench/posts.yaml: same upstream calls, same per-call
// and total timeouts, same x-request-id propagation, same response bodies.
//
//   UPSTREAM_URL=http://127.0.0.1:1234 PORT=0 node bench/baseline.ts
//
// With PORT=0 it prints one line on stdout once listening: {"port":N}.
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Pool } from 'undici'
import { jwtVerify } from 'jose'
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible'
import { createSecretKey } from 'node:crypto'
import { checkoutPaths } from './checkout-paths.ts'
import type { CheckoutPaths } from './checkout-paths.ts'

const upstreamUrl = process.env.UPSTREAM_URL
if (upstreamUrl === undefined || upstreamUrl === '') {
  console.error('baseline: set UPSTREAM_URL, e.g. http://127.0.0.1:8080')
  process.exit(1)
}
const port = Number(process.env.PORT ?? 0)
const naive = process.env.BASELINE_NAIVE === '1'
// The floor (target `floor`): a posts route keeps its first answer as bytes and sends them to
// every later request, with nothing else: what fastify on Node costs per request, before any
// gateway work, to compare a gateway's cost per request with.
const floor = process.env.BASELINE_FLOOR === '1'
// wrk keeps 50 connections busy and one checkout has at most three calls in flight, so
// 128 sockets per origin means requests almost never queue inside the pool.
const connections = Number(process.env.UPSTREAM_CONNECTIONS ?? 128)

// One keep-alive pool per upstream origin, shared by every service on that origin.
const pools = new Map<string, Pool>()
function poolFor(origin: string): Pool {
  let pool = pools.get(origin)
  if (pool === undefined) {
    pool = new Pool(origin, { connections, pipelining: 1, keepAliveTimeout: 30_000 })
    pools.set(origin, pool)
  }
  return pool
}

interface Service {
  name: string
  pool: Pool
  basePath: string
  timeoutMs: number
}

function service(name: string, url: string, timeoutMs: number): Service {
  const parsed = new URL(url)
  return { name, pool: poolFor(parsed.origin), basePath: parsed.pathname.replace(/\/+$/, ''), timeoutMs }
}

class DownstreamError extends Error {
  readonly service: string
  readonly status: number | undefined
  constructor(service: string, message: string, status?: number, cause?: unknown) {
    super(message, { cause })
    this.service = service
    this.status = status
  }
}

const jsonHeaders = { 'content-type': 'application/json' }

// One upstream call: its own timeout, cut short by the endpoint's deadline, both
// reaching the socket through the signal. Timers are cleared as soon as the call ends:
// AbortSignal.timeout() cannot be cancelled, and every call's timer would later fire
// and build a DOMException for a request that finished long ago.
async function guardedCall(
  svc: Service,
  method: 'GET' | 'POST',
  path: string,
  requestId: string,
  deadline: AbortSignal,
  body?: string,
): Promise<unknown> {
  const controller = new AbortController()
  const onDeadline = (): void => controller.abort(deadline.reason)
  if (deadline.aborted) onDeadline()
  else deadline.addEventListener('abort', onDeadline, { once: true })
  const timer = setTimeout(() => controller.abort(new Error(`${svc.name} timed out`)), svc.timeoutMs)
  try {
    const res = await svc.pool.request({
      method,
      path: svc.basePath + path,
      headers: body === undefined ? { 'x-request-id': requestId } : { ...jsonHeaders, 'x-request-id': requestId },
      body: body ?? null,
      signal: controller.signal,
    })
    if (res.statusCode < 200 || res.statusCode >= 300) {
      await res.body.dump()
      throw new DownstreamError(svc.name, `${svc.name} answered ${res.statusCode}`, res.statusCode)
    }
    return await res.body.json()
  } catch (err) {
    if (err instanceof DownstreamError) throw err
    const reason = controller.signal.aborted ? `${svc.name} timed out` : `${svc.name} failed: ${(err as Error).message}`
    throw new DownstreamError(svc.name, reason, undefined, err)
  } finally {
    clearTimeout(timer)
    deadline.removeEventListener('abort', onDeadline)
  }
}

// The naive call: no timeout, no signal, no request id; a failure is still an error.
async function naiveCall(
  svc: Service,
  method: 'GET' | 'POST',
  path: string,
  _requestId: string,
  _deadline: AbortSignal,
  body?: string,
): Promise<unknown> {
  const res = await svc.pool.request({
    method,
    path: svc.basePath + path,
    ...(body === undefined ? {} : { headers: jsonHeaders, body }),
  })
  if (res.statusCode < 200 || res.statusCode >= 300) {
    await res.body.dump()
    throw new DownstreamError(svc.name, `${svc.name} answered ${res.statusCode}`, res.statusCode)
  }
  return await res.body.json()
}

const call: typeof guardedCall = naive ? naiveCall : guardedCall

// The endpoint's total timeout, as a signal for its calls; end() clears the timer.
const noDeadline = { signal: new AbortController().signal, end: () => {} }
function startDeadline(ms: number): { signal: AbortSignal; end: () => void } {
  if (naive) return noDeadline
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(new Error('deadline passed')), ms)
  return { signal: controller.signal, end: () => clearTimeout(timer) }
}

// The naive BFF neither reads nor sends request ids ('' means none).
function requestIdOf(header: string | string[] | undefined): string {
  if (naive) return ''
  return typeof header === 'string' && header !== '' ? header : randomUUID()
}

function withRequestId(reply: FastifyReply, requestId: string): FastifyReply {
  return requestId === '' ? reply : reply.header('x-request-id', requestId)
}

function sendError(reply: FastifyReply, err: unknown, deadline: AbortSignal, requestId: string): FastifyReply {
  const timedOut = deadline.aborted
  const service = err instanceof DownstreamError ? err.service : undefined
  return withRequestId(reply.code(timedOut ? 504 : 502), requestId).send({
    error: {
      code: timedOut ? 'GATEWAY_TIMEOUT' : 'DOWNSTREAM_FAILURE',
      message: timedOut ? 'the endpoint deadline passed' : (err as Error).message,
      ...(service === undefined ? {} : { service }),
      requestId,
    },
    data: {},
  })
}

// --- POST /v1/checkout/summary -------------------------------------------------------

const cart = service('cart', upstreamUrl, 200)
const inventory = service('inventory', upstreamUrl, 400)
const pricing = service('pricing', upstreamUrl, 200)
const shipping = service('shipping', upstreamUrl, 500)
const tax = service('tax', upstreamUrl, 300)
const checkoutTimeoutMs = 2000

interface Cart {
  items: unknown[]
  itemCount: number
}
interface Pricing {
  subtotal: number
}
interface Tax {
  amount: number
}
interface Availability {
  available: boolean
}

async function checkoutSummary(paths: CheckoutPaths, cartId: string, requestId: string, deadline: AbortSignal) {
  const cartPath = `${paths.cart}${encodeURIComponent(cartId)}`
  const theCart = (await call(cart, 'GET', cartPath, requestId, deadline)) as Cart
  const items = JSON.stringify({ items: theCart.items })
  const inventoryCall = call(inventory, 'POST', paths.inventory, requestId, deadline, items)
  const pricingCall = call(pricing, 'POST', paths.pricing, requestId, deadline, items)
  // Shipping is optional: its failure becomes null, not an error.
  let shippingFailed = false
  const shippingCall = call(shipping, 'POST', paths.shipping, requestId, deadline, items).catch(() => {
    shippingFailed = true
    return null
  })
  // Tax needs only the subtotal: start it as soon as pricing answers.
  const taxCall = pricingCall.then((p) =>
    call(tax, 'POST', paths.tax, requestId, deadline, JSON.stringify({ subtotal: (p as Pricing).subtotal })),
  )
  // Observe every rejection now, so that one failing call does not leave the others
  // as unhandled rejections while Promise.all returns early.
  for (const p of [inventoryCall, pricingCall, taxCall]) p.catch(() => {})
  const [availability, thePricing, theShipping, theTax] = (await Promise.all([
    inventoryCall,
    pricingCall,
    shippingCall,
    taxCall,
  ])) as [Availability, Pricing, unknown, Tax]
  return {
    cart: { items: theCart.items, itemCount: theCart.itemCount },
    pricing: thePricing,
    shipping: theShipping,
    tax: theTax,
    total: thePricing.subtotal + theTax.amount,
    availabilityConfirmed: availability.available,
    ...(shippingFailed ? { partialData: true } : {}),
  }
}

// --- GET /posts-with-authors ---------------------------------------------------------

const jsonplaceholder = service('jsonplaceholder', upstreamUrl, 1000)
const postsTimeoutMs = 3000
const authorConcurrency = 10

interface Post {
  id: number
  userId: number
  title: string
}
interface User {
  id: number
  name: string
  email: string
}

// Runs fn over items with at most `limit` calls in flight, keeping the input order.
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  async function worker(): Promise<void> {
    while (next < items.length) {
      const index = next++
      results[index] = await fn(items[index] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}

async function postsWithAuthors(requestId: string, deadline: AbortSignal): Promise<Array<Post & { author: unknown }>> {
  const posts = (await call(jsonplaceholder, 'GET', '/posts', requestId, deadline)) as Post[]
  // Ten distinct authors for a hundred posts: fetch each one once.
  const userIds = [...new Set(posts.map((post) => post.userId))]
  const users = await mapLimit(userIds, authorConcurrency, (id) =>
    call(jsonplaceholder, 'GET', `/users/${encodeURIComponent(id)}`, requestId, deadline),
  )
  const byId = new Map<number, unknown>()
  userIds.forEach((id, i) => byId.set(id, users[i]))
  return posts.map((post) => ({ ...post, author: byId.get(post.userId) }))
}

// --- server --------------------------------------------------------------------------

const app = Fastify({ logger: false })

const summaryRoute = (paths: CheckoutPaths) =>
  async function summary(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const requestId = requestIdOf(request.headers['x-request-id'])
    const body = request.body as { cartId?: unknown } | null
    if (body === null || typeof body !== 'object' || typeof body.cartId !== 'string') {
      return reply.code(400).send({
        error: { code: 'BAD_REQUEST', message: 'body.cartId must be a string', requestId },
        data: {},
      })
    }
    const deadline = startDeadline(checkoutTimeoutMs)
    try {
      const summary = await checkoutSummary(paths, body.cartId, requestId, deadline.signal)
      return withRequestId(reply, requestId).send(summary)
    } catch (err) {
      return sendError(reply, err, deadline.signal, requestId)
    } finally {
      deadline.end()
    }
  }

app.post('/v1/checkout/summary', summaryRoute(checkoutPaths.node))
// The fast regime's variant (bench/checkout-fast.yaml): the same calls on nginx's paths.
app.post('/v1/checkout-fast/summary', summaryRoute(checkoutPaths.nginx))

// --- POST /v1/checkout-edge/summary: the same, behind a JWT and per-IP / per-user limits ---

const edgeKey = createSecretKey(Buffer.from(process.env.BENCH_JWT_SECRET ?? ''))
const perIp = new RateLimiterMemory({ points: 100_000_000, duration: 60 })
const perUser = new RateLimiterMemory({ points: 100_000_000, duration: 60 })

async function limited(limiter: RateLimiterMemory, key: string): Promise<number | null> {
  try {
    await limiter.consume(key)
    return null
  } catch (err) {
    if (err instanceof RateLimiterRes) return Math.max(1, Math.ceil(err.msBeforeNext / 1000))
    throw err
  }
}

app.post(
  '/v1/checkout-edge/summary',
  {
    onRequest: async (request, reply) => {
      const tooMany = (retryAfter: number) =>
        reply
          .code(429)
          .header('retry-after', String(retryAfter))
          .send({ error: { code: 'RATE_LIMITED', message: 'Too many requests' }, data: {} })
      const ipWait = await limited(perIp, request.ip)
      if (ipWait !== null) return tooMany(ipWait)
      const header = request.headers.authorization
      const token = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7) : ''
      let sub: string
      try {
        const { payload } = await jwtVerify(token, edgeKey, {
          algorithms: ['HS256'],
          issuer: 'https://auth.bench',
          audience: 'checkout',
          requiredClaims: ['sub'],
        })
        const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : []
        if (!scopes.includes('checkout'))
          return reply.code(403).send({ error: { code: 'FORBIDDEN', message: 'missing scope' }, data: {} })
        sub = payload.sub as string
      } catch {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer')
          .send({ error: { code: 'UNAUTHENTICATED', message: 'bad token' }, data: {} })
      }
      const userWait = await limited(perUser, sub)
      if (userWait !== null) return tooMany(userWait)
      return undefined
    },
  },
  summaryRoute(checkoutPaths.node),
)

// Tailcall's query {posts{id,userId,title,user{id,name,email}}} as a list (bench/posts-users.yaml).
function withUsers(posts: Array<Post & { author: unknown }>) {
  return posts.map(({ id, userId, title, author }) => {
    const user = author as User
    return { id, userId, title, user: { id: user.id, name: user.name, email: user.email } }
  })
}

const postsRoute = (shape: (posts: Array<Post & { author: unknown }>) => unknown) => {
  let kept: Buffer | null = null
  return async function posts(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    if (kept !== null) return reply.header('content-type', 'application/json; charset=utf-8').send(kept)
    const requestId = requestIdOf(request.headers['x-request-id'])
    const deadline = startDeadline(postsTimeoutMs)
    try {
      const body = shape(await postsWithAuthors(requestId, deadline.signal))
      if (floor) kept = Buffer.from(JSON.stringify(body))
      return withRequestId(reply, requestId).send(body)
    } catch (err) {
      return sendError(reply, err, deadline.signal, requestId)
    } finally {
      deadline.end()
    }
  }
}

app.get(
  '/posts-with-authors',
  postsRoute((posts) => posts),
)
app.get('/posts-with-users', postsRoute(withUsers))

const shutdown = async (): Promise<void> => {
  await app.close()
  await Promise.all([...pools.values()].map((pool) => pool.close()))
  process.exit(0)
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    void shutdown()
  })
}

await app.listen({ port, host: '127.0.0.1' })
const address = app.server.address()
if (address !== null && typeof address !== 'string') {
  process.stdout.write(JSON.stringify({ port: address.port }) + '\n')
}

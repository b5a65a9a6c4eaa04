/**
 * The error table of the spec, end to end: a real gateway in front of a real stub upstream.
 * Each test asserts the client's status, the whole body, the headers, and what the
 * upstream saw (which requests arrived, in what order, and which were cut off).
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { describe, test, type TestContext } from 'node:test'
import { assertError, get, post, startGateway, stubFor } from './helpers/gateway.ts'
import { eventually, type Handler, hang, json, reset, type Stub, type StubRequest, text } from './helpers/stub.ts'

const ITEMS = [
  { sku: 'SKU-1', quantity: 2, price: 500 },
  { sku: 'SKU-2', quantity: 1, price: 997 },
]
const CART = { id: 'c-1', items: ITEMS, itemCount: 3 }
const PRICING = { subtotal: 1997, currency: 'USD' }
const SHIPPING = { options: [{ carrier: 'post', price: 490 }], estimated: true }
const TAX = { amount: 165, rate: 0.0825 }
const ASSEMBLED = {
  cart: { items: ITEMS, itemCount: 3 },
  pricing: PRICING,
  shipping: SHIPPING,
  tax: TAX,
  total: 2162,
  availabilityConfirmed: true,
}

type ShopCall = 'cart' | 'inventory' | 'pricing' | 'shipping' | 'tax'
const ROUTES: Record<ShopCall, string> = {
  cart: 'GET /carts/:id',
  inventory: 'POST /check-availability',
  pricing: 'POST /calculate',
  shipping: 'POST /estimate',
  tax: 'POST /tax',
}

interface ShopOptions {
  /** Endpoint deadline. */
  deadline?: string
  /** Per call timeouts. */
  timeouts?: Partial<Record<ShopCall, string>>
  /** Service URL per service; default the stub's. */
  urls?: Partial<Record<ShopCall, string>>
  gateway?: string
  services?: Partial<Record<ShopCall, string>>
}

/** The checkout of the spec: cart, then inventory, pricing and (optional) shipping, then tax (reads pricing only). */
function shopYaml(stub: Stub, o: ShopOptions = {}): string {
  const timeout = (call: ShopCall): string => (o.timeouts?.[call] === undefined ? '' : `, timeout: ${o.timeouts[call]}`)
  const service = (name: ShopCall): string =>
    `  ${name}: { url: "${o.urls?.[name] ?? stub.url}"${o.services?.[name] === undefined ? '' : `, ${o.services[name]}`} }`
  return `
version: 1
gateway: { name: Test BFF, basePath: /v1${o.gateway === undefined ? '' : `, ${o.gateway}`} }
services:
${(['cart', 'inventory', 'pricing', 'shipping', 'tax'] as const).map(service).join('\n')}
endpoints:
  POST /summary:
    timeout: ${o.deadline ?? '5s'}
    calls:
      cart: { request: "GET cart /carts/\${request.body.cartId}"${timeout('cart')} }
      inventory: { request: POST inventory /check-availability, body: { items: "\${cart.items}" }${timeout('inventory')} }
      pricing: { request: POST pricing /calculate, body: { items: "\${cart.items}" }${timeout('pricing')} }
      shipping: { request: POST shipping /estimate, body: { items: "\${cart.items}" }, required: false${timeout('shipping')} }
      tax: { request: POST tax /tax, body: { subtotal: "\${pricing.subtotal}" }${timeout('tax')} }
    response:
      cart: { items: "\${cart.items}", itemCount: "\${cart.itemCount}" }
      pricing: "\${pricing}"
      shipping: "\${shipping}"
      tax: "\${tax}"
      total: "\${pricing.subtotal + tax.amount}"
      availabilityConfirmed: "\${inventory.available}"
`
}

/** Declares the shop's routes on the stub, each answering well unless overridden. */
function shopRoutes(stub: Stub, overrides: Partial<Record<ShopCall, Handler>> = {}): void {
  const ok: Record<ShopCall, Handler> = {
    cart: (req) => json({ ...CART, id: req.params.id }),
    inventory: json({ available: true }),
    pricing: json(PRICING),
    shipping: json(SHIPPING),
    tax: json(TAX),
  }
  for (const call of Object.keys(ROUTES) as ShopCall[]) stub.route(ROUTES[call], overrides[call] ?? ok[call])
}

type Overrides = Partial<Record<ShopCall, Handler>>

/** A stub with the shop's routes (overrides may need the stub itself, to wait on other requests) and a gateway in front. */
async function shop(
  t: TestContext,
  overrides: Overrides | ((stub: Stub) => Overrides) = {},
  options: ShopOptions = {},
): Promise<{ stub: Stub; url: string }> {
  const stub = await stubFor(t)
  shopRoutes(stub, typeof overrides === 'function' ? overrides(stub) : overrides)
  const gateway = await startGateway(t, shopYaml(stub, options))
  return { stub, url: `${gateway.url}/v1/summary` }
}

const only = (stub: Stub, call: ShopCall): StubRequest => {
  const seen = stub.requestsTo(ROUTES[call])
  assert.equal(seen.length, 1, `${call} should have been called once, was called ${seen.length} times`)
  return seen[0] as StubRequest
}

const notCalled = (stub: Stub, ...calls: ShopCall[]): void => {
  for (const call of calls) assert.equal(stub.requestsTo(ROUTES[call]).length, 0, `${call} should not have been called`)
}

async function allAborted(stub: Stub, ...calls: ShopCall[]): Promise<void> {
  for (const call of calls) {
    await eventually(() => stub.requestsTo(ROUTES[call]).some((r) => r.closed), `${call}'s connection to close`)
    assert.equal(only(stub, call).aborted, true, `${call} should have been aborted before its answer`)
  }
}

describe('all calls succeed', () => {
  test('200 with the assembled response, and each service sees what its call sends', async (t) => {
    const { stub, url } = await shop(t)
    const res = await post(url, { cartId: 'c-1' })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, ASSEMBLED)
    assert.equal(res.headers['content-type'], 'application/json; charset=utf-8')
    assert.equal(res.headers['baton-degraded'], undefined)

    assert.equal(only(stub, 'cart').url, '/carts/c-1')
    assert.equal(only(stub, 'cart').method, 'GET')
    for (const call of ['inventory', 'pricing', 'shipping'] as const) {
      assert.deepEqual(only(stub, call).body, { items: ITEMS }, call)
      assert.equal(only(stub, call).headers['content-type'], 'application/json', call)
    }
    assert.deepEqual(only(stub, 'tax').body, { subtotal: 1997 })
    assert.equal(stub.requests.length, 5)
    const ids = new Set(stub.requests.map((r) => r.headers['x-request-id']))
    assert.deepEqual([...ids], [res.headers['x-request-id']])
  })
})

describe('a required call fails: 502', () => {
  test('5xx answer', async (t) => {
    const { stub, url } = await shop(t, { pricing: json({ error: 'boom' }, { status: 500 }) })
    const res = await post(url, { cartId: 'c-1' })
    assertError(res, 502, 'DOWNSTREAM_FAILURE', /^pricing failed \(500\)$/, ['pricing'])
    notCalled(stub, 'tax')
  })

  test('503 answer of a call deeper in the graph', async (t) => {
    const { url } = await shop(t, { tax: json({}, { status: 503 }) })
    assertError(await post(url, { cartId: 'c-1' }), 502, 'DOWNSTREAM_FAILURE', /^tax failed \(503\)$/, ['tax'])
  })

  test('connection reset', async (t) => {
    const { stub, url } = await shop(t, { cart: reset() })
    const res = await post(url, { cartId: 'c-1' })
    assertError(res, 502, 'DOWNSTREAM_FAILURE', /^cart failed: connection error$/, ['cart'])
    assert.equal(only(stub, 'cart').respondedAt, null)
    notCalled(stub, 'inventory', 'pricing', 'shipping', 'tax')
  })

  test('connection refused', async (t) => {
    const closedPort = await freePort()
    const { url } = await shop(t, {}, { urls: { cart: `http://127.0.0.1:${closedPort}` } })
    assertError(await post(url, { cartId: 'c-1' }), 502, 'DOWNSTREAM_FAILURE', /^cart failed: could not connect$/, [
      'cart',
    ])
  })

  test('its own timeout, while other calls succeed: 502, and the stub sees the call aborted', async (t) => {
    const { stub, url } = await shop(t, { pricing: hang() }, { timeouts: { pricing: '100ms' } })
    const res = await post(url, { cartId: 'c-1' })
    assertError(res, 502, 'DOWNSTREAM_FAILURE', /^pricing failed: timed out$/, ['pricing'])
    await allAborted(stub, 'pricing')
    notCalled(stub, 'tax')
  })

  test('a 200 whose body is not JSON', async (t) => {
    const { url } = await shop(t, { pricing: text('<html>oops</html>', { headers: { 'content-type': 'text/html' } }) })
    assertError(
      await post(url, { cartId: 'c-1' }),
      502,
      'DOWNSTREAM_FAILURE',
      /^pricing failed: answered with a body that is not JSON$/,
      ['pricing'],
    )
  })

  test("a body larger than the service's maxResponseSize (declared by content-length)", async (t) => {
    const big = json({ ...PRICING, padding: 'x'.repeat(2000) })
    const { url } = await shop(t, { pricing: big }, { services: { pricing: 'maxResponseSize: 1kb' } })
    assertError(await post(url, { cartId: 'c-1' }), 502, 'DOWNSTREAM_FAILURE', /^pricing failed: answer too large$/, [
      'pricing',
    ])
  })

  test("a body larger than the service's maxResponseSize (chunked, no content-length)", async (t) => {
    const big = text(JSON.stringify({ ...PRICING, padding: 'x'.repeat(4000) }), { chunked: true })
    const { url } = await shop(t, { pricing: big }, { services: { pricing: 'maxResponseSize: 1kb' } })
    assertError(await post(url, { cartId: 'c-1' }), 502, 'DOWNSTREAM_FAILURE', /^pricing failed: answer too large$/, [
      'pricing',
    ])
  })

  test('a body just under maxResponseSize is accepted', async (t) => {
    const { url } = await shop(
      t,
      { pricing: json({ ...PRICING, padding: 'x'.repeat(900) }) },
      { services: { pricing: 'maxResponseSize: 1kb' } },
    )
    const res = await post(url, { cartId: 'c-1' })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { ...ASSEMBLED, pricing: { ...PRICING, padding: 'x'.repeat(900) } })
  })

  test('the failure aborts the calls still in flight', async (t) => {
    // pricing fails only once inventory and shipping are in flight, so the runtime has something to abort.
    const { stub, url } = await shop(t, (s) => ({
      pricing: async () => {
        await eventually(
          () => s.inFlight(ROUTES.inventory) > 0 && s.inFlight(ROUTES.shipping) > 0,
          'inventory and shipping in flight',
        )
        return json({}, { status: 500 })
      },
      inventory: hang(),
      shipping: hang(),
    }))
    assertError(await post(url, { cartId: 'c-1' }), 502, 'DOWNSTREAM_FAILURE', /^pricing failed \(500\)$/, ['pricing'])
    await allAborted(stub, 'inventory', 'shipping')
    notCalled(stub, 'tax')
  })
})

describe('an optional call fails: 200 with its fallback', () => {
  for (const [kind, handler, options] of [
    ['a 500 answer', json({}, { status: 500 }), {}],
    ['a connection reset', reset(), {}],
    ['its timeout', hang(), { timeouts: { shipping: '100ms' } }],
    ['a body that is not JSON', text('not json'), {}],
    ['a 401 answer', json({}, { status: 401 }), {}],
    ['a 429 answer', json({}, { status: 429, headers: { 'retry-after': '5' } }), {}],
  ] as const) {
    test(`${kind}: section null, partialData true, baton-degraded names it`, async (t) => {
      const { stub, url } = await shop(t, { shipping: handler }, options)
      const res = await post(url, { cartId: 'c-1' })
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { ...ASSEMBLED, shipping: null, partialData: true })
      assert.equal(res.headers['baton-degraded'], 'shipping')
      assert.equal(res.headers['retry-after'], undefined)
      assert.equal(stub.requests.length, 5)
    })
  }

  test('the fallback given in the config, and every failed call named in baton-degraded', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', json({ id: '42', name: 'Ada' }))
    stub.route('GET /preferences/:id', json({}, { status: 500 }))
    stub.route('GET /recommendations', json({}, { status: 503 }))
    const gateway = await startGateway(
      t,
      `
version: 1
gateway: { name: Dash }
services:
  users: { url: "${stub.url}" }
  preferences: { url: "${stub.url}" }
  recommendations: { url: "${stub.url}" }
endpoints:
  GET /dashboard/{id}:
    calls:
      user: { request: "GET users /users/\${request.params.id}" }
      preferences: { request: "GET preferences /preferences/\${request.params.id}", fallback: { theme: light, notifications: true } }
      recommendations: { request: GET recommendations /recommendations, query: { user: "\${user.id}" }, fallback: [] }
`,
    )
    const res = await get(`${gateway.url}/dashboard/42`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, {
      user: { id: '42', name: 'Ada' },
      preferences: { theme: 'light', notifications: true },
      recommendations: [],
      partialData: true,
    })
    assert.deepEqual(res.headers['baton-degraded']?.split(', ').sort(), ['preferences', 'recommendations'])
    assert.equal(stub.requestsTo('GET /recommendations')[0]?.url, '/recommendations?user=42')
  })

  test('a response that is not an object gets no partialData key, but the header', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /recommendations', json({}, { status: 500 }))
    const gateway = await startGateway(
      t,
      `
version: 1
gateway: { name: Recs }
services:
  recommendations: { url: "${stub.url}" }
endpoints:
  GET /recs:
    calls:
      recs: { request: GET recommendations /recommendations, fallback: [] }
    response: "\${recs}"
`,
    )
    const res = await get(`${gateway.url}/recs`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, [])
    assert.equal(res.headers['baton-degraded'], 'recs')
  })
})

describe('time: 504', () => {
  test('the endpoint deadline passes: 504 naming every required call in flight, each call aborted', async (t) => {
    const { stub, url } = await shop(t, { inventory: hang(), pricing: hang(), shipping: hang() }, { deadline: '300ms' })
    const res = await post(url, { cartId: 'c-1' })
    // shipping is optional: it takes its fallback; only the required calls still running make the 504.
    assertError(res, 504, 'GATEWAY_TIMEOUT', /^the endpoint's 300ms deadline passed$/, ['inventory', 'pricing'], true)
    await allAborted(stub, 'inventory', 'pricing', 'shipping')
    notCalled(stub, 'tax')
  })

  test('a call gets min(its timeout, time left): a 1s timeout under a 300ms deadline is cut at the deadline', async (t) => {
    const { stub, url } = await shop(t, { tax: hang() }, { deadline: '300ms', timeouts: { tax: '1s' } })
    const res = await post(url, { cartId: 'c-1' })
    // Cut by its own timeout, the message would be "tax timed out" (or "tax failed: timed out").
    assertError(res, 504, 'GATEWAY_TIMEOUT', /^the endpoint's 300ms deadline passed$/, ['tax'])
    await allAborted(stub, 'tax')
  })

  test('an optional call still running at the deadline takes its fallback: 200, partialData (it is aborted)', async (t) => {
    const { stub, url } = await shop(t, { shipping: hang() }, { deadline: '300ms' })
    const res = await post(url, { cartId: 'c-1' })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { ...ASSEMBLED, shipping: null, partialData: true })
    assert.equal(res.headers['baton-degraded'], 'shipping')
    await allAborted(stub, 'shipping')
  })

  test('every call that was started timed out: the only call started (cart) timed out', async (t) => {
    const { stub, url } = await shop(t, { cart: hang() }, { timeouts: { cart: '100ms' } })
    assertError(await post(url, { cartId: 'c-1' }), 504, 'GATEWAY_TIMEOUT', /^cart timed out$/, ['cart'])
    await allAborted(stub, 'cart')
    notCalled(stub, 'inventory', 'pricing', 'shipping', 'tax')
  })

  test('every call that was started timed out: two optional calls', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /a', hang())
    stub.route('GET /b', hang())
    const gateway = await startGateway(
      t,
      twoCalls(stub, { a: 'required: false, timeout: 50ms', b: 'required: false, timeout: 100ms' }),
    )
    assertError(await get(`${gateway.url}/two`), 504, 'GATEWAY_TIMEOUT', /^every call timed out$/, ['a', 'b'], true)
  })

  test('every call that was started timed out: an optional one first, then the required one; both named', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /a', hang())
    stub.route('GET /b', hang())
    const gateway = await startGateway(t, twoCalls(stub, { a: 'required: false, timeout: 50ms', b: 'timeout: 150ms' }))
    assertError(await get(`${gateway.url}/two`), 504, 'GATEWAY_TIMEOUT', /timed out$/, ['a', 'b'], true)
  })

  test('one of two calls timed out, the other answered: not a 504', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /a', hang())
    stub.route('GET /b', json({ ok: true }))
    const gateway = await startGateway(t, twoCalls(stub, { a: 'required: false, timeout: 100ms', b: '' }))
    const res = await get(`${gateway.url}/two`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { a: null, b: { ok: true }, partialData: true })
    assert.equal(res.headers['baton-degraded'], 'a')
  })
})

describe('downstream 4xx', () => {
  test('401 is propagated', async (t) => {
    const { stub, url } = await shop(t, {
      cart: json({ error: 'no' }, { status: 401, headers: { 'www-authenticate': 'Bearer' } }),
    })
    const res = await post(url, { cartId: 'c-1' })
    assertError(res, 401, 'DOWNSTREAM_UNAUTHORIZED', /^cart refused the credentials \(401\)$/, ['cart'])
    notCalled(stub, 'inventory', 'pricing', 'shipping', 'tax')
  })

  test('403 is propagated, from a call deeper in the graph', async (t) => {
    const { url } = await shop(t, { tax: json({ error: 'no' }, { status: 403 }) })
    assertError(await post(url, { cartId: 'c-1' }), 403, 'DOWNSTREAM_FORBIDDEN', /^tax refused access \(403\)$/, [
      'tax',
    ])
  })

  test("429 with the downstream's Retry-After", async (t) => {
    const { url } = await shop(t, { pricing: json({}, { status: 429, headers: { 'retry-after': '7' } }) })
    const res = await post(url, { cartId: 'c-1' })
    assertError(res, 429, 'DOWNSTREAM_RATE_LIMITED', /^pricing is rate limiting requests \(429\)$/, ['pricing'])
    assert.equal(res.headers['retry-after'], '7')
  })

  test('429 with an HTTP-date Retry-After passes it on as is', async (t) => {
    const date = 'Wed, 21 Oct 2065 07:28:00 GMT'
    const { url } = await shop(t, { pricing: json({}, { status: 429, headers: { 'retry-after': date } }) })
    const res = await post(url, { cartId: 'c-1' })
    assert.equal(res.status, 429)
    assert.equal(res.headers['retry-after'], date)
  })

  test('429 without Retry-After: the default gateway.retryAfter, 1s → "1"', async (t) => {
    const { url } = await shop(t, { pricing: json({}, { status: 429 }) })
    const res = await post(url, { cartId: 'c-1' })
    assertError(res, 429, 'DOWNSTREAM_RATE_LIMITED', /\(429\)$/, ['pricing'])
    assert.equal(res.headers['retry-after'], '1')
  })

  test('429 without Retry-After: gateway.retryAfter 2500ms → "3" (whole seconds, rounded up)', async (t) => {
    const { url } = await shop(t, { pricing: json({}, { status: 429 }) }, { gateway: 'retryAfter: 2500ms' })
    const res = await post(url, { cartId: 'c-1' })
    assert.equal(res.status, 429)
    assert.equal(res.headers['retry-after'], '3')
  })

  for (const status of [404, 409, 422]) {
    test(`a required call answering ${status}: ${status} DOWNSTREAM_REJECTED`, async (t) => {
      const { stub, url } = await shop(t, { cart: json({ error: 'cart not found' }, { status }) })
      const res = await post(url, { cartId: 'nope' })
      assertError(res, status, 'DOWNSTREAM_REJECTED', new RegExp(`^cart rejected the request \\(${status}\\)$`), [
        'cart',
      ])
      assert.equal(res.headers['retry-after'], undefined)
      assert.equal(only(stub, 'cart').url, '/carts/nope')
    })
  }
})

describe('scheduling', () => {
  test('calls with no dependency between them run concurrently', async (t) => {
    const stub = await stubFor(t)
    // Each answer waits (up to 2s) until all three are in flight: run one after the other, the peak would be 1.
    const together: Handler = async () => {
      await eventually(() => stub.inFlight() >= 3, 'three requests in flight').catch(() => {})
      return json({ ok: true }, { delay: 50 })
    }
    for (const path of ['GET /a', 'GET /b', 'GET /c']) stub.route(path, together)
    const gateway = await startGateway(
      t,
      `
version: 1
gateway: { name: Parallel }
services:
  s: { url: "${stub.url}" }
endpoints:
  GET /three:
    calls:
      a: { request: GET s /a }
      b: { request: GET s /b }
      c: { request: GET s /c }
`,
    )
    const res = await get(`${gateway.url}/three`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { a: { ok: true }, b: { ok: true }, c: { ok: true } })
    assert.equal(stub.peak(), 3)
  })

  test('a call starts after the calls it reads have answered, as soon as they have: not stage by stage', async (t) => {
    // inventory (a sibling of pricing) answers only once tax has arrived; a stage-by-stage
    // scheduler would hold tax back until inventory answered, and this would wait 2s and fail below.
    const { stub, url } = await shop(t, (s) => ({
      inventory: async () => {
        await eventually(() => s.requestsTo(ROUTES.tax).length > 0, 'tax to arrive').catch(() => {})
        return json({ available: true })
      },
    }))
    const res = await post(url, { cartId: 'c-1' })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, ASSEMBLED)

    const [cart, pricing, inv, shipping, tax] = (['cart', 'pricing', 'inventory', 'shipping', 'tax'] as const).map(
      (c) => only(stub, c),
    ) as [StubRequest, StubRequest, StubRequest, StubRequest, StubRequest]
    for (const r of [pricing, inv, shipping])
      assert.ok(r.arrivedAt >= (cart.respondedAt as number), `${r.url} arrived before cart answered`)
    assert.ok(tax.arrivedAt >= (pricing.respondedAt as number), 'tax arrived before pricing answered')
    assert.ok(tax.arrivedAt < (inv.respondedAt as number), 'tax waited for inventory, which it does not read')
  })
})

describe('the client goes away', () => {
  test('a client that hangs up takes its calls in flight with it', async (t) => {
    const { stub, url } = await shop(t, { inventory: hang(), pricing: hang() })
    const controller = new AbortController()
    const request = fetch(url, {
      method: 'POST',
      body: JSON.stringify({ cartId: 'c-1' }),
      headers: { 'content-type': 'application/json' },
      signal: controller.signal,
    })
    await eventually(
      () => stub.requestsTo(ROUTES.inventory).length === 1 && stub.requestsTo(ROUTES.pricing).length === 1,
      'inventory and pricing to be in flight',
    )
    controller.abort()
    await assert.rejects(request)
    await allAborted(stub, 'inventory', 'pricing')
    notCalled(stub, 'tax')
  })
})

/** Two root calls a and b on one service, with the call settings given. */
function twoCalls(stub: Stub, settings: { a: string; b: string }): string {
  const extra = (s: string): string => (s === '' ? '' : `, ${s}`)
  return `
version: 1
gateway: { name: Two }
services:
  a: { url: "${stub.url}" }
  b: { url: "${stub.url}" }
endpoints:
  GET /two:
    timeout: 5s
    calls:
      a: { request: GET a /a${extra(settings.a)} }
      b: { request: GET b /b${extra(settings.b)} }
`
}

/** A port nothing listens on: bound, then released. */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

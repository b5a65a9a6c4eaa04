/**
 * Call features end to end: `when` (skipped calls), `forEach` (the posts-with-authors N+1
 * scenario on the jsonplaceholder fixtures), `calls.<name>.status/headers`, and a response
 * that cannot be assembled.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, test, type TestContext } from 'node:test'
import { assertError, get, post, startGateway, stubFor } from './helpers/gateway.ts'
import { eventually, json, type Stub } from './helpers/stub.ts'

interface Post {
  userId: number
  id: number
  title: string
  body: string
}
interface User {
  id: number
  name: string
}
const fixture = (name: string): unknown =>
  JSON.parse(readFileSync(new URL(`./fixtures/jsonplaceholder/${name}`, import.meta.url), 'utf8'))
const POSTS = fixture('posts.json') as Post[]
const USERS = fixture('users.json') as User[]
const userOf = (post: Post): User => USERS.find((u) => u.id === post.userId) as User

describe('when', () => {
  async function setup(t: TestContext): Promise<{ stub: Stub; url: string }> {
    const stub = await stubFor(t)
    stub.route('GET /cart', json({ items: 2 }))
    stub.route('GET /promo/:code', (req) => json({ code: req.params.code, discount: 10 }))
    stub.route('GET /gift', json({ wrapped: true }))
    const gateway = await startGateway(
      t,
      `
version: 1
gateway: { name: When }
services:
  s: { url: "${stub.url}" }
endpoints:
  POST /order:
    calls:
      cart: { request: GET s /cart }
      promo: { request: "GET s /promo/\${request.body.code}", when: "\${request.body.code != null}", fallback: { discount: 0 } }
      gift: { request: GET s /gift, when: false }
      wrap: { request: GET s /gift, when: "cart.items > 5" }
    response:
      cart: "\${cart}"
      promo: "\${promo}"
      gift: "\${gift}"
      wrap: "\${wrap}"
      giftSkipped: "\${calls.gift.skipped}"
`,
    )
    return { stub, url: `${gateway.url}/order` }
  }

  test('a false condition skips the call: never sent, its value is its fallback or null, not degraded', async (t) => {
    const { stub, url } = await setup(t)
    const res = await post(url, {})
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, {
      cart: { items: 2 },
      promo: { discount: 0 },
      gift: null,
      wrap: null,
      giftSkipped: true,
    })
    assert.equal(res.headers['baton-degraded'], undefined)
    assert.deepEqual(
      stub.requests.map((r) => r.url),
      ['/cart'],
    )
  })

  test('a true condition makes the call', async (t) => {
    const { stub, url } = await setup(t)
    const res = await post(url, { code: 'SPRING' })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, {
      cart: { items: 2 },
      promo: { code: 'SPRING', discount: 10 },
      gift: null,
      wrap: null,
      giftSkipped: true,
    })
    assert.deepEqual(stub.requests.map((r) => r.url).sort(), ['/cart', '/promo/SPRING'])
  })
})

describe('forEach: posts with their authors', () => {
  async function setup(t: TestContext, options: { failUser?: number } = {}): Promise<{ stub: Stub; url: string }> {
    const stub = await stubFor(t)
    stub.route('GET /posts', json(POSTS))
    stub.route('GET /users/:id', (req) => {
      const id = Number(req.params.id)
      if (id === options.failUser) return json({ error: 'down' }, { status: 500 })
      return json(
        USERS.find((u) => u.id === id),
        { delay: options.failUser === undefined ? 30 : 300 },
      )
    })
    const gateway = await startGateway(
      t,
      `
version: 1
gateway: { name: Blog }
services:
  posts: { url: "${stub.url}" }
  users: { url: "${stub.url}" }
endpoints:
  GET /posts:
    calls:
      posts: { request: GET posts /posts }
      authors: { request: "GET users /users/\${post.userId}", forEach: "\${posts}", as: post, concurrency: 3, into: author }
    response: "\${authors}"
  GET /authors:
    calls:
      posts: { request: GET posts /posts }
      authors: { request: "GET users /users/\${item.userId}", forEach: "\${posts}", concurrency: 3 }
    response: "\${authors}"
  GET /none:
    calls:
      authors: { request: "GET users /users/\${item}", forEach: [] }
`,
    )
    return { stub, url: gateway.url }
  }

  test('into: each post with its user; 1 + 10 distinct requests for 100 posts; at most `concurrency` in flight', async (t) => {
    const { stub, url } = await setup(t)
    const res = await get(`${url}/posts`)
    assert.equal(res.status, 200)
    assert.equal(POSTS.length, 100)
    assert.deepEqual(
      res.body,
      POSTS.map((p) => ({ ...p, author: userOf(p) })),
    )
    assert.equal(stub.requestsTo('GET /posts').length, 1)
    const users = stub.requestsTo('GET /users/:id')
    assert.deepEqual(users.map((r) => r.url).sort(), USERS.map((u) => `/users/${u.id}`).sort())
    assert.equal(stub.requests.length, 11)
    assert.ok(stub.peak('GET /users/:id') <= 3, `peak ${stub.peak('GET /users/:id')} > concurrency 3`)
    assert.ok(stub.peak('GET /users/:id') > 1, 'the forEach requests did not overlap at all')
    for (const r of users) assert.ok(r.arrivedAt >= (stub.requestsTo('GET /posts')[0]?.respondedAt as number))
  })

  test('without into: the list of results, in item order', async (t) => {
    const { stub, url } = await setup(t)
    const res = await get(`${url}/authors`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, POSTS.map(userOf))
    assert.equal(stub.requests.length, 11)
  })

  test('an empty list: no request, an empty result', async (t) => {
    const { stub, url } = await setup(t)
    const res = await get(`${url}/none`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { authors: [] })
    assert.equal(stub.requests.length, 0)
  })

  test('one failed item fails the call; its siblings in flight are aborted, the rest never sent', async (t) => {
    const { stub, url } = await setup(t, { failUser: 1 })
    assertError(await get(`${url}/posts`), 502, 'DOWNSTREAM_FAILURE', /^users failed \(500\)$/, ['users'])
    const users = stub.requestsTo('GET /users/:id')
    await eventually(() => users.every((r) => r.closed), 'every user request to close')
    const siblings = users.filter((r) => r.url !== '/users/1')
    assert.ok(siblings.length > 0 && siblings.length < 9, `${siblings.length} siblings were sent`)
    for (const r of siblings) assert.equal(r.aborted, true, `${r.url} was not aborted`)
  })
})

test('calls.<name>.status and calls.<name>.headers are readable in the response', async (t) => {
  const stub = await stubFor(t)
  stub.route('POST /orders', json({ id: 'o-1' }, { status: 201, headers: { 'x-total-count': '42', etag: '"v7"' } }))
  stub.route('GET /shipping', json({}, { status: 503 }))
  const gateway = await startGateway(
    t,
    `
version: 1
gateway: { name: Meta }
services:
  s: { url: "${stub.url}" }
endpoints:
  POST /order:
    status: 201
    calls:
      order: { request: POST s /orders, body: {} }
      shipping: { request: GET s /shipping, required: false }
    response:
      id: "\${order.id}"
      upstreamStatus: "\${calls.order.status}"
      total: "\${calls.order.headers['x-total-count']}"
      etag: "\${calls.order.headers.etag}"
      orderOk: "\${calls.order.ok}"
      shipping: { status: "\${calls.shipping.status}", ok: "\${calls.shipping.ok}", error: "\${calls.shipping.error}" }
`,
  )
  const res = await post(`${gateway.url}/order`, {})
  assert.equal(res.status, 201)
  assert.deepEqual(res.body, {
    id: 'o-1',
    upstreamStatus: 201,
    total: '42',
    etag: '"v7"',
    orderOk: true,
    shipping: { status: 503, ok: false, error: 'status' },
    partialData: true,
  })
  assert.equal(res.headers['baton-degraded'], 'shipping')
})

test('a response expression that fails at run time: 502 RESPONSE_ASSEMBLY_FAILED', async (t) => {
  const stub = await stubFor(t)
  stub.route('GET /cart', json({ items: ['a', 'b'] }))
  const gateway = await startGateway(
    t,
    `
version: 1
gateway: { name: Broken }
services:
  s: { url: "${stub.url}" }
endpoints:
  POST /first:
    calls:
      cart: { request: GET s /cart }
    response: { first: "\${cart.items[request.body.index]}" }
`,
  )
  assert.deepEqual((await post(`${gateway.url}/first`, { index: 1 })).body, { first: 'b' })
  const res = await post(`${gateway.url}/first`, { index: 0.5 })
  assertError(res, 502, 'RESPONSE_ASSEMBLY_FAILED', /^the response could not be assembled: .*integer/, [])
})

/**
 * The response cache (memory store): what a hit, a miss, a stale entry and an error look like to
 * the client (status, body, the caching headers) and to the service (how many requests it saw).
 * Expiry is waited for with short TTLs; nothing asserts how long anything took.
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, test } from 'node:test'
import { errorsOf } from './helpers/config.ts'
import { get, post, startGateway, stubFor } from './helpers/gateway.ts'
import { gate, inTurn } from './helpers/resilience.ts'
import { eventually, json, type Stub } from './helpers/stub.ts'
import { metricValue } from './helpers/metrics.ts'

function config(stub: Stub, cache: string, extra = ''): string {
  return `
version: 1
gateway: { name: Cache, logLevel: silent${extra} }
services:
  catalog: { url: "${stub.url}" }
  reviews: { url: "${stub.url}" }
endpoints:
  GET /products/{id}:
    cache: ${cache}
    calls:
      product: { request: "GET catalog /products/\${request.params.id}" }
  GET /fresh/{id}:
    calls:
      product: { request: "GET catalog /products/\${request.params.id}" }
`
}

function product(stub: Stub): void {
  let n = 0
  stub.route('GET /products/:id', (req) => json({ id: req.params.id, version: ++n }))
}

const metric = metricValue

describe('a fresh entry is served without a call', () => {
  test('miss then hit: one upstream request, the same body, the caching headers', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(t, config(stub, '{ ttl: 60s }'))
    const first = await get(`${url}/products/1`)
    const second = await get(`${url}/products/1`)
    assert.equal(stub.requestsTo('GET /products/:id').length, 1)
    assert.equal(first.status, 200)
    assert.deepEqual(first.body, { product: { id: '1', version: 1 } })
    assert.deepEqual(second.body, first.body)
    assert.equal(first.headers['cache-status'], 'baton; fwd=miss; stored')
    assert.equal(first.headers['cache-control'], 'public, max-age=60')
    assert.match(first.headers.etag ?? '', /^W\/"[\w-]{27}"$/)
    assert.equal(first.headers.age, undefined)
    assert.match(second.headers['cache-status'] ?? '', /^baton; hit; ttl=(59|60)$/)
    assert.equal(second.headers.etag, first.headers.etag)
    assert.equal(second.headers.age, '0')
    assert.equal(second.headers['cache-control'], 'public, max-age=60')
    assert.notEqual(second.headers['x-request-id'], first.headers['x-request-id'])
    assert.equal(await metric(url, 'baton_cache_lookups_total{method="GET",route="/products/:id",result="hit"}'), 1)
    assert.equal(await metric(url, 'baton_cache_lookups_total{method="GET",route="/products/:id",result="miss"}'), 1)
    // A hit is an answer like any other: counted with the endpoint's label.
    assert.equal(
      await metric(
        url,
        'baton_requests_total{method="GET",route="/products/:id",status_class="2xx",outcome="complete"}',
      ),
      2,
    )
  })

  test("a client's Cache-Control: no-cache or Pragma: no-cache does not skip the cache", async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(t, config(stub, '{ ttl: 60s }'))
    await get(`${url}/products/1`)
    const noCache = await get(`${url}/products/1`, { 'cache-control': 'no-cache, max-age=0' })
    const pragma = await get(`${url}/products/1`, { pragma: 'no-cache' })
    assert.equal(stub.requestsTo('GET /products/:id').length, 1)
    assert.match(noCache.headers['cache-status'] ?? '', /^baton; hit; /)
    assert.match(pragma.headers['cache-status'] ?? '', /^baton; hit; /)
    assert.deepEqual(pragma.body, { product: { id: '1', version: 1 } })
  })

  test('an endpoint without cache says no-store, and every request makes its call', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(t, config(stub, '{ ttl: 60s }'))
    const first = await get(`${url}/fresh/1`)
    await get(`${url}/fresh/1`)
    assert.equal(stub.requestsTo('GET /products/:id').length, 2)
    assert.equal(first.headers['cache-control'], 'no-store')
    assert.equal(first.headers['cache-status'], undefined)
    assert.equal(first.headers.etag, undefined)
  })

  test('If-None-Match naming the entry: 304 with no body; another tag: 200', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(t, config(stub, '{ ttl: 60s }'))
    const first = await get(`${url}/products/1`)
    const etag = first.headers.etag as string
    const res = await fetch(`${url}/products/1`, { headers: { 'if-none-match': etag } })
    assert.equal(res.status, 304)
    assert.equal(await res.text(), '')
    assert.equal(res.headers.get('etag'), etag)
    assert.equal(res.headers.get('cache-control'), 'public, max-age=60')
    // The strong form of the same tag, and a list holding it, match too (weak comparison).
    const strong = await fetch(`${url}/products/1`, { headers: { 'if-none-match': `"x", ${etag.slice(2)}` } })
    assert.equal(strong.status, 304)
    await strong.text()
    const other = await get(`${url}/products/1`, { 'if-none-match': 'W/"something-else"' })
    assert.equal(other.status, 200)
    assert.deepEqual(other.body, first.body)
    assert.equal(stub.requestsTo('GET /products/:id').length, 1)
  })

  test('HEAD is served from the GET entry, without a body and without a call', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(t, config(stub, '{ ttl: 60s }'))
    const first = await get(`${url}/products/1`)
    const head = await fetch(`${url}/products/1`, { method: 'HEAD' })
    assert.equal(head.status, 200)
    assert.equal(await head.text(), '')
    assert.equal(head.headers.get('etag'), first.headers.etag)
    assert.match(head.headers.get('cache-status') ?? '', /^baton; hit/)
    assert.equal(stub.requestsTo('GET /products/:id').length, 1)
  })
})

describe('the key', () => {
  test('by default the path and the whole query: another id or another query is another entry; query order is not', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(t, config(stub, '{ ttl: 60s }'))
    await get(`${url}/products/1?a=1&b=2`)
    await get(`${url}/products/1?b=2&a=1`)
    assert.equal(stub.requestsTo('GET /products/:id').length, 1)
    await get(`${url}/products/1?a=1`)
    await get(`${url}/products/2?a=1&b=2`)
    assert.equal(stub.requestsTo('GET /products/:id').length, 3)
  })

  test('key.query lists the parameters that matter; key.headers makes entries per header value, sent in Vary', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(
      t,
      config(stub, '{ ttl: 60s, key: { query: [page], headers: [accept-language] } }'),
    )
    const en = await get(`${url}/products/1?page=1&utm=a`, { 'accept-language': 'en' })
    await get(`${url}/products/1?page=1&utm=b`, { 'accept-language': 'en' })
    assert.equal(stub.requestsTo('GET /products/:id').length, 1)
    assert.equal(en.headers.vary, 'accept-language')
    const fr = await get(`${url}/products/1?page=1`, { 'accept-language': 'fr' })
    assert.equal(stub.requestsTo('GET /products/:id').length, 2)
    assert.deepEqual(fr.body, { product: { id: '1', version: 2 } })
    await get(`${url}/products/1?page=2`, { 'accept-language': 'en' })
    assert.equal(stub.requestsTo('GET /products/:id').length, 3)
  })

  test("a query parameter's name cannot spell another request's key: no answer is stored for another query", async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(
      t,
      config(stub, '{ ttl: 60s }').replace(
        'product: { request: "GET catalog /products/${request.params.id}" }',
        'product: { request: "GET catalog /products/${request.params.id}" }\n    response: { a: "${request.query.a ?? \'none\'}", b: "${request.query.b ?? \'none\'}" }',
      ),
    )
    // One parameter named `a="1"` + newline + `q:b`, valued 2: written raw in the key, it reads as a=1 and b=2.
    const crafted = await get(`${url}/products/1?a%3D%221%22%0Aq%3Ab=2`)
    assert.deepEqual(crafted.body, { a: 'none', b: 'none' })
    const honest = await get(`${url}/products/1?a=1&b=2`)
    assert.equal(honest.headers['cache-status'], 'baton; fwd=miss; stored')
    assert.deepEqual(honest.body, { a: '1', b: '2' })
    assert.equal(stub.requestsTo('GET /products/:id').length, 2)
  })

  test('key.query: false: the query does not make entries', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(t, config(stub, '{ ttl: 60s, key: { query: false } }'))
    await get(`${url}/products/1?a=1`)
    await get(`${url}/products/1?a=2`)
    assert.equal(stub.requestsTo('GET /products/:id').length, 1)
  })
})

describe('whose answer an entry is', () => {
  const withKeys = (stub: Stub, scope: string): string => `
version: 1
gateway:
  name: Cache
  logLevel: silent
  auth: { apiKey: { header: x-api-key, keys: { alice: "\${env.ALICE}", bob: "\${env.BOB}" } } }
services:
  accounts: { url: "${stub.url}" }
endpoints:
  GET /me:
    cache: { ttl: 60s${scope} }
    calls:
      me: { request: "GET accounts /accounts/\${auth.sub}" }
`
  const env = { ALICE: 'alice-key-0123456789', BOB: 'bob-key-0123456789' }

  test('scope user: one entry per caller, never served to another; private Cache-Control', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /accounts/:who', (req) => json({ who: req.params.who }))
    const { url } = await startGateway(t, withKeys(stub, ', scope: user'), { env })
    const alice = await get(`${url}/me`, { 'x-api-key': env.ALICE })
    const bob = await get(`${url}/me`, { 'x-api-key': env.BOB })
    const alice2 = await get(`${url}/me`, { 'x-api-key': env.ALICE })
    const bob2 = await get(`${url}/me`, { 'x-api-key': env.BOB })
    assert.deepEqual(alice.body, { me: { who: 'alice' } })
    assert.deepEqual(bob.body, { me: { who: 'bob' } })
    assert.deepEqual(alice2.body, { me: { who: 'alice' } })
    assert.deepEqual(bob2.body, { me: { who: 'bob' } })
    assert.match(alice2.headers['cache-status'] ?? '', /^baton; hit/)
    assert.equal(stub.requestsTo('GET /accounts/:who').length, 2)
    assert.equal(alice.headers['cache-control'], 'private, max-age=60')
    // No credentials: rejected before the cache is looked at.
    assert.equal((await get(`${url}/me`)).status, 401)
  })

  test('an endpoint with credentials and no scope is a config error', () => {
    const errors = errorsOf(withKeys({ url: 'http://127.0.0.1:1' } as Stub, ''), { env })
    assert.equal(errors.length, 1)
    assert.equal(errors[0]?.code, 'BATON_CACHE')
    assert.match(errors[0]?.message ?? '', /must say whose answer an entry is/)
    assert.match(errors[0]?.hint ?? '', /scope: user/)
    assert.ok((errors[0]?.line ?? 0) > 0)
  })

  test('scope user without credentials, and a tag that reads a call, are config errors', () => {
    const stub = { url: 'http://127.0.0.1:1' } as Stub
    const user = errorsOf(config(stub, '{ ttl: 60s, scope: user }'))
    assert.deepEqual(
      user.map((e) => e.code),
      ['BATON_CACHE'],
    )
    assert.match(user[0]?.message ?? '', /no user to key by/)
    const tag = errorsOf(config(stub, '{ ttl: 60s, tags: ["p:${product.id}"] }'))
    assert.deepEqual(
      tag.map((e) => e.code),
      ['BATON_CACHE'],
    )
    assert.match(tag[0]?.hint ?? '', /known before any call runs/)
  })
})

describe('what is stored', () => {
  test('errors never: a failing service is asked every time, and the answer says no-store', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /products/:id', json({ error: 'down' }, { status: 500 }))
    const { url } = await startGateway(t, config(stub, '{ ttl: 60s }'))
    const first = await get(`${url}/products/1`)
    await get(`${url}/products/1`)
    assert.equal(first.status, 502)
    assert.equal(first.headers['cache-control'], 'no-store')
    assert.equal(first.headers['cache-status'], 'baton; fwd=miss; fwd-status=502')
    assert.equal(stub.requestsTo('GET /products/:id').length, 2)
  })

  const partial = (stub: Stub, cache: string): string => `
version: 1
gateway: { name: Cache, logLevel: silent }
services:
  catalog: { url: "${stub.url}" }
  reviews: { url: "${stub.url}" }
endpoints:
  GET /products/{id}:
    cache: ${cache}
    calls:
      product: { request: "GET catalog /products/\${request.params.id}" }
      reviews: { request: "GET reviews /reviews/\${request.params.id}", required: false, fallback: [] }
`

  test('a partial answer is not stored by default', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    stub.route('GET /reviews/:id', json({}, { status: 503 }))
    const { url } = await startGateway(t, partial(stub, '{ ttl: 60s }'))
    const first = await get(`${url}/products/1`)
    await get(`${url}/products/1`)
    assert.equal(first.status, 200)
    assert.equal(first.headers['baton-degraded'], 'reviews')
    assert.equal(first.headers['cache-control'], 'no-store')
    assert.equal(stub.requestsTo('GET /products/:id').length, 2)
  })

  test('partialTtl stores a partial answer for that long, marked as partial still', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    stub.route('GET /reviews/:id', json({}, { status: 503 }))
    const { url } = await startGateway(t, partial(stub, '{ ttl: 60s, partialTtl: 5s }'))
    const first = await get(`${url}/products/1`)
    const second = await get(`${url}/products/1`)
    assert.equal(first.headers['cache-control'], 'public, max-age=5')
    assert.equal(second.headers['baton-degraded'], 'reviews')
    assert.match(second.headers['cache-status'] ?? '', /^baton; hit/)
    assert.deepEqual(second.body, first.body)
    assert.equal(stub.requestsTo('GET /products/:id').length, 1)
  })

  test('a POST declaring a cache is keyed by its body', async (t) => {
    const stub = await stubFor(t)
    let n = 0
    stub.route('POST /quote', (req) => json({ items: (req.body as { items: unknown }).items, n: ++n }))
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Cache, logLevel: silent }
services:
  pricing: { url: "${stub.url}" }
endpoints:
  POST /quote:
    cache: { ttl: 60s }
    calls:
      quote: { request: "POST pricing /quote", body: { items: "\${request.body.items}" } }
`,
    )
    const a = await post(`${url}/quote`, { items: [1, 2] })
    const a2 = await post(`${url}/quote`, { items: [1, 2] })
    const b = await post(`${url}/quote`, { items: [3] })
    assert.deepEqual(a.body, { quote: { items: [1, 2], n: 1 } })
    assert.deepEqual(a2.body, a.body)
    assert.deepEqual(b.body, { quote: { items: [3], n: 2 } })
    assert.equal(stub.requestsTo('POST /quote').length, 2)
  })
})

describe('expiry', () => {
  test('after the TTL the next request runs again and stores the new answer', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(t, config(stub, '{ ttl: 100ms }'))
    await get(`${url}/products/1`)
    await sleep(150)
    const again = await get(`${url}/products/1`)
    assert.deepEqual(again.body, { product: { id: '1', version: 2 } })
    assert.equal(again.headers['cache-status'], 'baton; fwd=miss; stored')
    assert.equal(again.headers['cache-control'], 'public, max-age=0')
  })

  test('stale-while-revalidate: stale answers at once while ONE background run refreshes the entry', async (t) => {
    const stub = await stubFor(t)
    const held = gate()
    // The refresh (the second request) is held at the stub until every stale request has been answered.
    let n = 0
    stub.route('GET /products/:id', async (req) => (++n === 1 ? json({ v: 1 }) : await held.hold(json({ v: 2 }))(req)))
    const { url } = await startGateway(t, config(stub, '{ ttl: 100ms, staleWhileRevalidate: 30s }'))
    await get(`${url}/products/1`)
    await sleep(150)
    const stale = await Promise.all(Array.from({ length: 5 }, async () => await get(`${url}/products/1`)))
    for (const res of stale) {
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { product: { v: 1 } })
      assert.match(res.headers['cache-status'] ?? '', /^baton; hit; ttl=-?\d+; detail=stale-while-revalidate$/)
      assert.equal(res.headers['cache-control'], 'public, max-age=0, stale-while-revalidate=30')
    }
    await eventually(() => stub.requestsTo('GET /products/:id').length === 2, 'the refresh reached the service')
    held.open()
    let fresh = await get(`${url}/products/1`)
    for (let i = 0; i < 100 && (fresh.body as { product: { v: number } }).product.v !== 2; i++) {
      await sleep(10)
      fresh = await get(`${url}/products/1`)
    }
    assert.deepEqual(fresh.body, { product: { v: 2 } })
    assert.equal(stub.requestsTo('GET /products/:id').length, 2)
  })

  test('a background refresh runs to the end even when a request that joined it leaves', async (t) => {
    const stub = await stubFor(t)
    const held = gate()
    let n = 0
    stub.route('GET /products/:id', async (req) => (++n === 1 ? json({ v: 1 }) : await held.hold(json({ v: 2 }))(req)))
    const { url } = await startGateway(t, config(stub, '{ ttl: 100ms, staleWhileRevalidate: 300ms }'))
    await get(`${url}/products/1`)
    await sleep(150)
    // Stale: answered from the entry, and the refresh starts (held at the stub).
    assert.match((await get(`${url}/products/1`)).headers['cache-status'] ?? '', /detail=stale-while-revalidate$/)
    await eventually(() => stub.requestsTo('GET /products/:id').length === 2, 'the refresh reached the service')
    // Past the stale window (400 ms after the entry was stored): the next request waits for the refresh, then its client leaves.
    await sleep(350)
    const leaving = new AbortController()
    const joined = fetch(`${url}/products/1`, { signal: leaving.signal }).catch(() => null)
    const collapsed = 'baton_cache_lookups_total{method="GET",route="/products/:id",result="collapsed"}'
    for (let i = 0; i < 500 && (await metric(url, collapsed)) !== 1; i++) await sleep(10)
    assert.equal(await metric(url, collapsed), 1)
    leaving.abort()
    await joined
    await sleep(50)
    held.open()
    await eventually(() => stub.requestsTo('GET /products/:id')[1]?.closed === true, 'the refresh to be answered')
    assert.equal(stub.requestsTo('GET /products/:id')[1]?.aborted, false, 'the refresh was not cut')
    assert.equal(stub.requestsTo('GET /products/:id').length, 2)
    // The refresh stored its answer: served from the entry (fresh, or stale on a slow machine).
    const fresh = await get(`${url}/products/1`)
    assert.deepEqual(fresh.body, { product: { v: 2 } })
    assert.match(fresh.headers['cache-status'] ?? '', /^baton; hit; ttl=/)
  })

  test('stale-if-error: the stored answer instead of the failing run’s error', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /products/:id', inTurn(json({ v: 1 }), json({}, { status: 500 })))
    const { url } = await startGateway(t, config(stub, '{ ttl: 100ms, staleIfError: 30s }'))
    await get(`${url}/products/1`)
    await sleep(150)
    const res = await get(`${url}/products/1`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { product: { v: 1 } })
    assert.match(
      res.headers['cache-status'] ?? '',
      /^baton; fwd=stale; fwd-status=502; ttl=-?\d+; detail=stale-if-error$/,
    )
    assert.equal(stub.requestsTo('GET /products/:id').length, 2)
  })
})

describe('collapsing', () => {
  test('30 concurrent requests for an entry being computed: one run, one upstream request, 29 collapsed', async (t) => {
    const stub = await stubFor(t)
    const held = gate()
    stub.route('GET /products/:id', held.hold(json({ id: 1 })))
    // Coalescing off, so that one upstream request can only come from collapsing.
    const yaml = config(stub, '{ ttl: 60s }').replace(
      `catalog: { url: "${stub.url}" }`,
      `catalog: { url: "${stub.url}", coalesce: false }`,
    )
    const { url } = await startGateway(t, yaml)
    const answers = Array.from({ length: 30 }, async () => await get(`${url}/products/1`))
    await eventually(() => stub.requestsTo('GET /products/:id').length === 1, 'the first request reached the service')
    let collapsed = 0
    for (let i = 0; i < 500 && collapsed < 29; i++) {
      collapsed = await metric(url, 'baton_cache_lookups_total{method="GET",route="/products/:id",result="collapsed"}')
      if (collapsed < 29) await sleep(10)
    }
    assert.equal(collapsed, 29)
    // The 29 waiting are in flight as much as the one whose run they wait for.
    assert.equal(await metric(url, 'baton_requests_in_flight'), 30)
    held.open()
    const all = await Promise.all(answers)
    for (const res of all) assert.deepEqual(res.body, { product: { id: 1 } })
    assert.equal(all.filter((r) => r.headers['cache-status'] === 'baton; fwd=miss; stored; collapsed').length, 29)
    assert.equal(stub.requestsTo('GET /products/:id').length, 1)
  })

  test('the client that started the run leaves: the run goes on for the others', async (t) => {
    const stub = await stubFor(t)
    const held = gate()
    stub.route('GET /products/:id', held.hold(json({ id: 1 })))
    const yaml = config(stub, '{ ttl: 60s }').replace(
      `catalog: { url: "${stub.url}" }`,
      `catalog: { url: "${stub.url}", coalesce: false }`,
    )
    const { url } = await startGateway(t, yaml)
    const leaving = new AbortController()
    const first = fetch(`${url}/products/1`, { signal: leaving.signal }).catch(() => null)
    await eventually(() => stub.requestsTo('GET /products/:id').length === 1, 'the run reached the service')
    const second = get(`${url}/products/1`)
    for (let i = 0; i < 500; i++) {
      if ((await metric(url, 'baton_cache_lookups_total{method="GET",route="/products/:id",result="collapsed"}')) === 1)
        break
      await sleep(10)
    }
    leaving.abort()
    await first
    held.open()
    const res = await second
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { product: { id: 1 } })
    assert.equal(stub.requestsTo('GET /products/:id')[0]?.aborted, false)
  })
})

describe('invalidation webhook', () => {
  const withWebhook = (stub: Stub, token: string): string =>
    config(stub, '{ ttl: 60s, tags: ["product:${request.params.id}"] }', `, cache: { tagHeader: Cache-Tag${token} }`)

  test('behind its token on the main port: drops the tagged entries only', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(t, withWebhook(stub, ', invalidation: { token: "${env.PURGE}" }'), {
      env: { PURGE: 'purge-token-0123456789' },
    })
    const one = await get(`${url}/products/1`)
    await get(`${url}/products/2`)
    assert.equal(one.headers['cache-tag'], 'path:/products/1,endpoint:GET /products/:id,product:1')
    const refused = await post(`${url}/admin/cache/invalidate`, { tags: ['product:1'] })
    assert.equal(refused.status, 401)
    assert.equal((refused.body as { error: { code: string } }).error.code, 'UNAUTHENTICATED')
    const wrong = await post(`${url}/admin/cache/invalidate`, { tags: ['product:1'] }, { authorization: 'Bearer nope' })
    assert.equal(wrong.status, 401)
    const bad = await post(
      `${url}/admin/cache/invalidate`,
      { tags: [] },
      { authorization: 'Bearer purge-token-0123456789' },
    )
    assert.equal(bad.status, 400)
    assert.equal((bad.body as { error: { code: string } }).error.code, 'BAD_REQUEST')
    const done = await post(
      `${url}/admin/cache/invalidate`,
      { tags: ['product:1'] },
      { authorization: 'Bearer purge-token-0123456789' },
    )
    assert.equal(done.status, 200)
    assert.deepEqual(done.body, { tags: ['product:1'], dropped: 1, published: false })
    const again = await get(`${url}/products/1`)
    const other = await get(`${url}/products/2`)
    assert.equal(again.headers['cache-status'], 'baton; fwd=miss; stored')
    assert.match(other.headers['cache-status'] ?? '', /^baton; hit/)
    assert.equal(stub.requestsTo('GET /products/:id').length, 3)
  })

  test('never open by default: without a token or an admin port there is no webhook', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const { url } = await startGateway(t, withWebhook(stub, ''))
    const res = await post(`${url}/admin/cache/invalidate`, { tags: ['product:1'] })
    assert.equal(res.status, 404)
  })

  test('on the admin (metrics) port it needs no token, and the main port has none', async (t) => {
    const stub = await stubFor(t)
    product(stub)
    const yaml = withWebhook(stub, '').replace('logLevel: silent', 'logLevel: silent, metrics: { port: 0 }')
    const { plan } = await import('../src/plan/compile.ts').then((m) => m.compileText('test.yaml', yaml, { env: {} }))
    const { createGateway } = await import('../src/server/gateway.ts')
    const gateway = createGateway(plan)
    t.after(() => gateway.close())
    const { url, metricsUrl } = await gateway.listen({ port: 0, host: '127.0.0.1' })
    const admin = (metricsUrl as string).replace(/\/metrics$/, '')
    await get(`${url}/products/1`)
    assert.equal((await post(`${url}/admin/cache/invalidate`, { tags: ['product:1'] })).status, 404)
    const done = await post(`${admin}/admin/cache/invalidate`, { tags: ['endpoint:GET /products/:id'] })
    assert.equal(done.status, 200)
    assert.equal((done.body as { dropped: number }).dropped, 1)
    await get(`${url}/products/1`)
    assert.equal(stub.requestsTo('GET /products/:id').length, 2)
  })
})

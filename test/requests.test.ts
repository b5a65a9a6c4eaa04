/**
 * What the gateway accepts from a client and what it passes on to a service: path and
 * query encoding, header forwarding (never hop-by-hop), body limits, request ids.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { ConfigError } from '../src/errors.ts'
import { compileText } from '../src/plan/compile.ts'
import { assertError, get, post, rawRequest, startGateway, stubFor } from './helpers/gateway.ts'
import { json, type Stub, type StubRequest } from './helpers/stub.ts'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** Two services on one stub: `a` forwards the headers given, `b` forwards nothing. */
async function setup(
  t: TestContext,
  options: { forward?: string[]; gateway?: string; aHeaders?: string } = {},
): Promise<{ stub: Stub; url: string }> {
  const stub = await stubFor(t)
  stub.route('GET /carts/:id', (req) => json({ id: req.params.id }))
  stub.route('GET /search', json({ hits: [] }))
  stub.route('GET /profile', json({ name: 'Ada' }))
  const forward = options.forward === undefined ? '' : `, forwardHeaders: [${options.forward.join(', ')}]`
  const gateway = await startGateway(
    t,
    `
version: 1
gateway: { name: Requests, basePath: /v1${options.gateway === undefined ? '' : `, ${options.gateway}`} }
services:
  a: { url: "${stub.url}"${forward}${options.aHeaders === undefined ? '' : `, headers: ${options.aHeaders}`} }
  b: { url: "${stub.url}" }
endpoints:
  POST /lookup:
    calls:
      cart: { request: "GET a /carts/\${request.body.cartId}" }
  GET /carts/{id}:
    calls:
      cart: { request: "GET a /carts/\${request.params.id}" }
    response: "\${cart}"
  POST /search:
    calls:
      search:
        request: GET a /search
        query: { q: "\${request.body.q}", tags: "\${request.body.tags}", page: 2, missing: null }
  GET /both:
    calls:
      cart: { request: GET a /carts/one }
      profile: { request: GET b /profile }
`,
    { env: { API_KEY: 'k-123' } },
  )
  return { stub, url: `${gateway.url}/v1` }
}

const last = (stub: Stub): StubRequest => {
  const r = stub.requests.at(-1)
  assert.ok(r !== undefined, 'the stub saw no request')
  return r
}

describe('path values are percent-encoded into one path segment', () => {
  const cases: [string, string][] = [
    ['../admin', '..%2Fadmin'],
    ['a/b', 'a%2Fb'],
    ['x?y#z', 'x%3Fy%23z'],
    ['%2F', '%252F'],
    ['..', '%2E%2E'],
    ['.', '%2E'],
    ['é ü', '%C3%A9%20%C3%BC'],
  ]
  test('from the request body', async (t) => {
    const { stub, url } = await setup(t)
    for (const [value, encoded] of cases) {
      const res = await post(`${url}/lookup`, { cartId: value })
      assert.equal(res.status, 200, value)
      assert.deepEqual(res.body, { cart: { id: value } }, value)
      const seen = last(stub)
      assert.equal(seen.url, `/carts/${encoded}`, value)
      assert.equal(seen.route, 'GET /carts/:id', value)
      assert.equal(seen.params.id, value)
    }
    assert.equal(stub.requests.length, cases.length)
  })

  test('from a path parameter of the endpoint (decoded by the router, encoded again)', async (t) => {
    const { stub, url } = await setup(t)
    for (const [sent, value] of [
      ['a%2Fb', 'a/b'],
      ['x%3Fy%23z', 'x?y#z'],
      ['%252F', '%2F'],
      ['..%2Fadmin', '../admin'],
    ] as const) {
      // node:http, not fetch: fetch's URL parser would resolve dot segments before sending.
      const res = await rawRequest('GET', `${url}/carts/${sent}`, {})
      assert.equal(res.status, 200, sent)
      assert.deepEqual(res.body, { id: value })
      assert.equal(last(stub).url, `/carts/${sent}`)
    }
    // The router itself does not route a `..` segment (404); if it ever did, it must reach the service encoded.
    const dots = await rawRequest('GET', `${url}/carts/%2E%2E`, {})
    if (dots.status === 200) assert.equal(last(stub).url, '/carts/%2E%2E')
    else assertError(dots, 404, 'NOT_FOUND', 'No endpoint matches this method and path')
    assert.ok(
      stub.requests.every((r) => !/\/\.\.?(\/|$)/.test(r.url)),
      'a dot segment reached the service',
    )
  })
})

test('query parameters are encoded; lists repeat the key; null values are left out', async (t) => {
  const { stub, url } = await setup(t)
  const res = await post(`${url}/search`, { q: 'a&b=c d/é+', tags: ['x', 'y z'] })
  assert.equal(res.status, 200)
  assert.equal(last(stub).url, '/search?q=a%26b%3Dc%20d%2F%C3%A9%2B&tags=x&tags=y%20z&page=2')
  const params = new URL(last(stub).url, 'http://x').searchParams
  assert.equal(params.get('q'), 'a&b=c d/é+')
  assert.deepEqual(params.getAll('tags'), ['x', 'y z'])
})

describe('headers', () => {
  test('client headers reach a service only when it lists them in forwardHeaders', async (t) => {
    const { stub, url } = await setup(t, { forward: ['authorization', 'cookie'] })
    const res = await get(`${url}/both`, {
      authorization: 'Bearer t0k',
      cookie: 'session=s1',
      'x-other': 'o',
      'user-agent': 'test-client/1',
    })
    assert.equal(res.status, 200)
    const [a, b] = [stub.requestsTo('GET /carts/:id')[0], stub.requestsTo('GET /profile')[0]]
    assert.ok(a !== undefined && b !== undefined)
    assert.equal(a.headers.authorization, 'Bearer t0k')
    assert.equal(a.headers.cookie, 'session=s1')
    assert.equal(a.headers['x-other'], undefined)
    for (const name of ['authorization', 'cookie', 'x-other']) assert.equal(b.headers[name], undefined, name)
    assert.notEqual(b.headers['user-agent'], 'test-client/1')
  })

  test("hop-by-hop headers, and a header named by the client's Connection, never reach a service", async (t) => {
    const { stub, url } = await setup(t, { forward: ['x-secret', 'x-trace'] })
    const res = await rawRequest('GET', `${url}/both`, {
      connection: 'keep-alive, X-Secret',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      upgrade: 'h2c',
      'proxy-authorization': 'Basic dXNlcjpwYXNz',
      'x-secret': 's3cret',
      'x-trace': 't-1',
    })
    assert.equal(res.status, 200)
    const a = stub.requestsTo('GET /carts/:id')[0]
    assert.ok(a !== undefined)
    assert.equal(a.headers['x-trace'], 't-1')
    assert.equal(a.headers['x-secret'], undefined)
    for (const name of ['keep-alive', 'te', 'upgrade', 'proxy-authorization'])
      assert.equal(a.headers[name], undefined, name)
    assert.doesNotMatch(String(a.headers.connection), /secret/i)
  })

  test('config validation rejects hop-by-hop and managed headers in forwardHeaders', () => {
    for (const name of [
      'connection',
      'keep-alive',
      'te',
      'upgrade',
      'proxy-authorization',
      'transfer-encoding',
      'host',
      'Connection',
    ]) {
      assert.throws(
        () =>
          compileText(
            'bad.yaml',
            `
version: 1
gateway: { name: Bad }
services:
  a: { url: "http://127.0.0.1:1", forwardHeaders: [${name}] }
endpoints:
  GET /x:
    calls:
      x: { request: GET a /x }
`,
          ),
        (err: unknown) =>
          err instanceof ConfigError && err.diagnostics.some((d) => d.code === 'BATON_FORBIDDEN_HEADER'),
        name,
      )
    }
  })

  test("a service's static headers are sent, with ${env.…} resolved", async (t) => {
    const { stub, url } = await setup(t, { aHeaders: '{ x-api-key: "${env.API_KEY}" }' })
    assert.equal((await get(`${url}/both`)).status, 200)
    assert.equal(stub.requestsTo('GET /carts/:id')[0]?.headers['x-api-key'], 'k-123')
    assert.equal(stub.requestsTo('GET /profile')[0]?.headers['x-api-key'], undefined)
  })
})

describe('request bodies', () => {
  test('larger than gateway.bodyLimit: 413', async (t) => {
    const { stub, url } = await setup(t, { gateway: 'bodyLimit: 1kb' })
    const res = await post(`${url}/lookup`, { cartId: 'x'.repeat(2000) })
    assertError(res, 413, 'PAYLOAD_TOO_LARGE', 'The request body is too large')
    assert.equal(stub.requests.length, 0)
  })

  test('not valid JSON: 400 INVALID_JSON', async (t) => {
    const { stub, url } = await setup(t)
    assertError(await post(`${url}/lookup`, '{"cartId": '), 400, 'INVALID_JSON', 'The request body is not valid JSON')
    assert.equal(stub.requests.length, 0)
  })

  test('empty with a JSON content type: 400 INVALID_JSON', async (t) => {
    const { url } = await setup(t)
    assertError(await post(`${url}/lookup`, ''), 400, 'INVALID_JSON', 'The request body is not valid JSON')
  })

  for (const [name, raw] of [
    ['__proto__', '{"cartId":"c","__proto__":{"polluted":true}}'],
    ['constructor.prototype', '{"cartId":"c","constructor":{"prototype":{"polluted":true}}}'],
  ] as const) {
    test(`a ${name} key: 400, and nothing is polluted`, async (t) => {
      const { stub, url } = await setup(t)
      assertError(await post(`${url}/lookup`, raw), 400, 'INVALID_JSON', 'The request body is not valid JSON')
      assert.equal(({} as Record<string, unknown>).polluted, undefined)
      assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted'), false)
      assert.equal(stub.requests.length, 0)
    })
  }

  test('not JSON at all: 415', async (t) => {
    const { stub, url } = await setup(t)
    assertError(
      await post(`${url}/lookup`, 'cartId=c', { 'content-type': 'text/plain' }),
      415,
      'UNSUPPORTED_MEDIA_TYPE',
      'The request body must be JSON',
    )
    assert.equal(stub.requests.length, 0)
  })
})

test('unknown route: 404 NOT_FOUND; a method the route does not take: 405 METHOD_NOT_ALLOWED with Allow', async (t) => {
  const { stub, url } = await setup(t)
  for (const res of [await get(`${url}/nope`), await post(`${url.replace(/\/v1$/, '')}/lookup`, { cartId: 'c' })]) {
    assertError(res, 404, 'NOT_FOUND', 'No endpoint matches this method and path')
    assert.match(res.headers['x-request-id'] ?? '', UUID)
  }
  const wrong = await get(`${url}/lookup`)
  assertError(wrong, 405, 'METHOD_NOT_ALLOWED', 'The path does not accept this method')
  assert.equal(wrong.headers.allow, 'POST')
  assert.match(wrong.headers['x-request-id'] ?? '', UUID)
  assert.equal(stub.requests.length, 0)
})

describe('x-request-id', () => {
  test('accepted from the client: the same value on every downstream call and in the response', async (t) => {
    const { stub, url } = await setup(t)
    const id = 'req-42.a:b_C'
    const res = await get(`${url}/both`, { 'x-request-id': id })
    assert.equal(res.status, 200)
    assert.equal(res.headers['x-request-id'], id)
    assert.equal(stub.requests.length, 2)
    for (const r of stub.requests) assert.equal(r.headers['x-request-id'], id)
  })

  test('generated (a UUID) when absent; fresh per request', async (t) => {
    const { stub, url } = await setup(t)
    const first = await get(`${url}/both`)
    const second = await get(`${url}/both`)
    const id = first.headers['x-request-id'] ?? ''
    assert.match(id, UUID)
    assert.notEqual(second.headers['x-request-id'], id)
    assert.deepEqual(
      stub.requests.slice(0, 2).map((r) => r.headers['x-request-id']),
      [id, id],
    )
  })

  for (const [what, given] of [
    ['containing spaces', 'has spaces in it'],
    ['300 characters long', 'x'.repeat(300)],
    ['with a slash and quotes', 'a/"b"'],
  ] as const) {
    test(`replaced by a UUID when malformed: ${what}`, async (t) => {
      const { stub, url } = await setup(t)
      const res = await get(`${url}/both`, { 'x-request-id': given })
      assert.equal(res.status, 200)
      const id = res.headers['x-request-id'] ?? ''
      assert.match(id, UUID)
      for (const r of stub.requests) assert.equal(r.headers['x-request-id'], id)
    })
  }
})

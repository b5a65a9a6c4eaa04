/**
 * Request validation (`validate:` on an endpoint): a request that does not match its JSON
 * Schemas is a 400 VALIDATION_FAILED listing every problem, and no service is called; params,
 * query and headers are coerced to the declared types; a schema that is not valid JSON Schema
 * is a `baton check` error at the offending key.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { compileText } from '../src/plan/compile.ts'
import { diagnosticsOf } from './helpers/config.ts'
import { get, post, rawRequest, startGateway, stubFor, type ClientResponse } from './helpers/gateway.ts'
import { json, type Stub } from './helpers/stub.ts'

const KEY = 'k-0123456789'

function yaml(stub: Stub, gateway = ''): string {
  return `
version: 1
gateway:
  name: Validation
  basePath: /v1
${gateway}
services:
  shop: { url: "${stub.url}", forwardHeaders: [x-tenant] }
endpoints:
  POST /summary:
    validate:
      body:
        type: object
        required: [cartId]
        properties:
          cartId: { type: string, minLength: 1, maxLength: 64 }
          quantity: { type: integer, minimum: 1 }
          email: { type: string, format: email }
    calls:
      cart: { request: "GET shop /carts/\${request.body.cartId}" }
    response: "\${cart}"
  GET /users/{id}/orders:
    validate:
      params: { properties: { id: { type: integer, minimum: 1 } } }
      query:
        type: object
        properties:
          limit: { type: integer, minimum: 1, maximum: 100 }
          tags: { type: array, items: { type: string } }
      headers: { required: [x-tenant], properties: { x-tenant: { type: string, pattern: "^[a-z]+$" } } }
    calls:
      orders: { request: "GET shop /users/\${request.params.id}/orders", query: { limit: "\${request.query.limit}" } }
    response:
      id: "\${request.params.id}"
      limit: "\${request.query.limit}"
      tags: "\${request.query.tags}"
      tenant: "\${request.headers['x-tenant']}"
      orders: "\${orders}"
  POST /bulk:
    validate:
      body: { type: array, items: { type: integer } }
    calls:
      bulk: { request: POST shop /bulk, body: "\${request.body}" }
  POST /open:
    calls:
      cart: { request: "GET shop /carts/\${request.body.cartId}" }
    response: "\${cart}"
`
}

async function setup(t: TestContext, gateway = ''): Promise<{ url: string; stub: Stub; metricsUrl: string }> {
  const stub = await stubFor(t)
  stub.route('GET /carts/:id', (req) => json({ id: req.params.id }))
  stub.route('GET /users/:id/orders', json([{ order: 'o-1' }]))
  stub.route('POST /bulk', json({ ok: true }))
  const gw = await startGateway(t, yaml(stub, gateway), { env: { KEY } })
  return { url: `${gw.url}/v1`, stub, metricsUrl: `${gw.url}/metrics` }
}

/** The whole VALIDATION_FAILED answer: the usual envelope, and `details`. */
function assertInvalid(res: ClientResponse, details: { in: string; path: string; message: string }[]): void {
  assert.deepEqual(
    { status: res.status, body: res.body },
    {
      status: 400,
      body: {
        error: {
          code: 'VALIDATION_FAILED',
          message: 'The request does not match what the endpoint accepts',
          failedServices: [],
          partialData: false,
          details,
        },
        data: {},
      },
    },
  )
  assert.equal(res.headers['content-type'], 'application/json; charset=utf-8')
  assert.ok(res.headers['x-request-id'])
}

describe('the body', () => {
  test('a body that does not match: 400 VALIDATION_FAILED listing every problem, and no call is made', async (t) => {
    const { url, stub } = await setup(t)
    assertInvalid(await post(`${url}/summary`, { cartId: '', quantity: 0, email: 'not-an-address' }), [
      { in: 'body', path: '/cartId', message: 'must NOT have fewer than 1 characters' },
      { in: 'body', path: '/quantity', message: 'must be >= 1' },
      { in: 'body', path: '/email', message: 'must match format "email"' },
    ])
    assertInvalid(await post(`${url}/summary`, { cartId: 'c'.repeat(65) }), [
      { in: 'body', path: '/cartId', message: 'must NOT have more than 64 characters' },
    ])
    // Not coerced: a JSON body has types, and "2" for an integer is the client's mistake.
    assertInvalid(await post(`${url}/summary`, { cartId: 'c1', quantity: '2' }), [
      { in: 'body', path: '/quantity', message: 'must be integer' },
    ])
    assert.equal(stub.requests.length, 0)
  })

  test('{} and no body at all: a missing property is pointed at by its name; no body is null', async (t) => {
    const { url, stub } = await setup(t)
    assertInvalid(await post(`${url}/summary`, {}), [
      { in: 'body', path: '/cartId', message: "must have required property 'cartId'" },
    ])
    assertInvalid(await rawRequest('POST', `${url}/summary`, {}), [{ in: 'body', path: '', message: 'must be object' }])
    assert.equal(stub.requests.length, 0)
  })

  test('a body that matches is served as usual; an endpoint without validate takes anything', async (t) => {
    const { url, stub } = await setup(t)
    const ok = await post(`${url}/summary`, { cartId: 'cart-123', quantity: 2, email: 'ada@example.com' })
    assert.equal(ok.status, 200)
    assert.deepEqual(ok.body, { id: 'cart-123' })
    const open = await post(`${url}/open`, { cartId: 'c9', anything: [1, 2] })
    assert.equal(open.status, 200)
    assert.equal(stub.requests.length, 2)
  })

  test('a body that is not JSON is still INVALID_JSON: parsing comes first', async (t) => {
    const { url, stub } = await setup(t)
    const res = await post(`${url}/summary`, '{"cartId": ', { 'content-type': 'application/json' })
    assert.equal(res.status, 400)
    assert.equal((res.body as { error: { code: string } }).error.code, 'INVALID_JSON')
    assert.equal(stub.requests.length, 0)
  })

  test('at most 20 problems are listed, however many there are', async (t) => {
    const { url, stub } = await setup(t)
    const res = await post(
      `${url}/bulk`,
      Array.from({ length: 500 }, (_, i) => `n${i}`),
    )
    const details = (res.body as { error: { details: unknown[] } }).error.details
    assert.equal(res.status, 400)
    assert.equal(details.length, 20)
    assert.deepEqual(details[19], { in: 'body', path: '/19', message: 'must be integer' })
    assert.equal(stub.requests.length, 0)
  })
})

describe('params, query and headers', () => {
  test('are coerced to the declared types: expressions read 42 and 10; a lone tag becomes a list; headers are forwarded as sent', async (t) => {
    const { url, stub } = await setup(t)
    const res = await get(`${url}/users/42/orders?limit=10&tags=new`, { 'x-tenant': 'acme' })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { id: 42, limit: 10, tags: ['new'], tenant: 'acme', orders: [{ order: 'o-1' }] })
    const seen = stub.requests.at(-1)
    assert.equal(seen?.url, '/users/42/orders?limit=10')
    assert.equal(seen?.headers['x-tenant'], 'acme')
  })

  test('a bad parameter, query value and a missing header: one 400 listing each, by part', async (t) => {
    const { url, stub } = await setup(t)
    assertInvalid(await get(`${url}/users/0/orders?limit=1000&limit=2`), [
      { in: 'params', path: '/id', message: 'must be >= 1' },
      { in: 'query', path: '/limit', message: 'must be integer' },
      { in: 'headers', path: '/x-tenant', message: "must have required property 'x-tenant'" },
    ])
    assertInvalid(await get(`${url}/users/abc/orders?limit=1000`, { 'x-tenant': 'ACME' }), [
      { in: 'params', path: '/id', message: 'must be integer' },
      { in: 'query', path: '/limit', message: 'must be <= 100' },
      { in: 'headers', path: '/x-tenant', message: 'must match pattern "^[a-z]+$"' },
    ])
    assert.equal(stub.requests.length, 0)
  })
})

describe('where validation runs', () => {
  test('after credentials: without them 401 (not 400); with them, the 400', async (t) => {
    const { url, stub } = await setup(t, `  auth: { apiKey: { header: x-api-key, keys: { app: "\${env.KEY}" } } }`)
    const anonymous = await post(`${url}/summary`, {})
    assert.equal(anonymous.status, 401)
    assert.equal((anonymous.body as { error: { code: string } }).error.code, 'UNAUTHENTICATED')
    assertInvalid(await post(`${url}/summary`, {}, { 'x-api-key': KEY }), [
      { in: 'body', path: '/cartId', message: "must have required property 'cartId'" },
    ])
    assert.equal(stub.requests.length, 0)
  })

  test('after rate limits: a request over its limit is 429 whatever its body, and a refused one used up its share', async (t) => {
    const { url, stub } = await setup(t, '  rateLimit: { perIp: 2/min }')
    assertInvalid(await post(`${url}/summary`, {}), [
      { in: 'body', path: '/cartId', message: "must have required property 'cartId'" },
    ])
    assert.equal((await post(`${url}/summary`, { cartId: 'c1' })).status, 200)
    const over = await post(`${url}/summary`, {})
    assert.equal(over.status, 429)
    assert.equal((over.body as { error: { code: string } }).error.code, 'RATE_LIMITED')
    assert.equal(stub.requests.length, 1)
  })

  test('refusals are counted as rejections: baton_requests_rejected_total{reason="validation_failed"}', async (t) => {
    const { url, metricsUrl } = await setup(t)
    await post(`${url}/summary`, {})
    await post(`${url}/summary`, { cartId: '' })
    const text = (await get(metricsUrl)).body as string
    assert.match(
      text,
      /^baton_requests_rejected_total\{method="POST",route="\/v1\/summary",reason="validation_failed"\} 2$/m,
    )
  })

  test('compiled once into the plan; null for an endpoint that declares none', () => {
    const { plan } = compileText('x.yaml', yaml({ url: 'http://shop.local' } as Stub), { env: { KEY } })
    const by = new Map(plan.endpoints.map((e) => [e.key, e]))
    assert.equal(typeof by.get('POST /summary')?.validate, 'function')
    assert.equal(by.get('POST /open')?.validate, null)
    const parts = { params: {}, query: {}, headers: {}, body: { cartId: 'c1' } }
    assert.equal(by.get('POST /summary')?.validate?.(parts), null)
  })
})

interface Reported {
  severity: string
  code: string
  line: number | undefined
  col: number | undefined
  path: string
  message: string
  hint: string | undefined
}

function reported(endpoints: string): Reported[] {
  return diagnosticsOf(`version: 1
gateway: { name: Test }
services:
  cart: { url: "http://cart.local" }
endpoints:
${endpoints}
  GET /uses-cart:
    calls:
      c: { request: GET cart /x }
`).map((d) => ({
    severity: d.severity,
    code: d.code,
    line: d.line,
    col: d.col,
    path: d.path.join(' › '),
    message: d.message,
    hint: d.hint,
  }))
}

describe('baton check: validate schemas (BATON_INVALID_SCHEMA at the offending key)', () => {
  test('an unknown keyword (a typo): strict mode refuses it, with a did-you-mean', () => {
    assert.deepEqual(
      reported(`  POST /summary:
    validate:
      body:
        type: object
        properties:
          cartId: { type: string, minLenght: 1 }`),
      [
        {
          severity: 'error',
          code: 'BATON_INVALID_SCHEMA',
          line: 11,
          col: 35,
          path: 'endpoints › POST /summary › validate › body › properties › cartId › minLenght',
          message: "unknown JSON Schema keyword 'minLenght'",
          hint: "did you mean 'minLength'?",
        },
      ],
    )
  })

  test('a keyword with a value of the wrong type, and an unknown type name', () => {
    assert.deepEqual(
      reported(`  GET /a:
    validate:
      query: { properties: { limit: { type: intger, maximum: ten } } }`),
      [
        {
          severity: 'error',
          code: 'BATON_INVALID_SCHEMA',
          line: 8,
          col: 39,
          path: 'endpoints › GET /a › validate › query › properties › limit › type',
          message: 'invalid JSON Schema: type must be equal to one of the allowed values',
          hint: 'expected one of: array, boolean, integer, null, number, object, string',
        },
        {
          severity: 'error',
          code: 'BATON_INVALID_SCHEMA',
          line: 8,
          col: 53,
          path: 'endpoints › GET /a › validate › query › properties › limit › maximum',
          message: 'invalid JSON Schema: maximum must be number',
          hint: 'validate.<part> is a JSON Schema (draft 2020-12)',
        },
      ],
    )
  })

  test('an unknown format, a $ref to nothing, a pattern that does not parse, another draft', () => {
    assert.deepEqual(
      reported(`  POST /a:
    validate:
      body: { type: object, properties: { e: { type: string, format: emial } } }
  POST /b:
    validate:
      body: { $ref: "#/$defs/cart" }
  POST /c:
    validate:
      body: { properties: { sku: { pattern: "([A-Z]" } } }
  POST /d:
    validate:
      body: { $schema: "http://json-schema.org/draft-07/schema#" }`),
      [
        {
          severity: 'error',
          code: 'BATON_INVALID_SCHEMA',
          line: 8,
          col: 62,
          path: 'endpoints › POST /a › validate › body › properties › e › format',
          message: "unknown format 'emial'",
          hint: "did you mean 'email'?",
        },
        {
          severity: 'error',
          code: 'BATON_INVALID_SCHEMA',
          line: 11,
          col: 15,
          path: 'endpoints › POST /b › validate › body › $ref',
          message: "$ref '#/$defs/cart' points to nothing",
          hint: 'a $ref points inside the same schema, e.g. #/$defs/name (declared under $defs); other files and URLs are not loaded',
        },
        {
          severity: 'error',
          code: 'BATON_INVALID_SCHEMA',
          line: 14,
          col: 36,
          path: 'endpoints › POST /c › validate › body › properties › sku › pattern',
          message: 'invalid pattern: Invalid regular expression: /([A-Z]/u: Unterminated group',
          hint: 'a pattern is a JavaScript regular expression (with the u flag), e.g. ^[a-z0-9-]+$',
        },
        {
          severity: 'error',
          code: 'BATON_INVALID_SCHEMA',
          line: 17,
          col: 15,
          path: 'endpoints › POST /d › validate › body › $schema',
          message: "unsupported $schema 'http://json-schema.org/draft-07/schema#'",
          hint: 'Baton validates with JSON Schema draft 2020-12: remove $schema, or write https://json-schema.org/draft/2020-12/schema',
        },
      ],
    )
  })

  test("params may only name the route's parameters; header names are lower case; parts are body, query, params, headers", () => {
    assert.deepEqual(
      reported(`  GET /users/{id}:
    validate:
      params: { properties: { userId: { type: integer } } }
      headers: { required: [X-Tenant] }
      bdy: { type: object }`),
      [
        {
          severity: 'error',
          code: 'BATON_UNKNOWN_PARAM',
          line: 8,
          col: 31,
          path: 'endpoints › GET /users/{id} › validate › params › properties › userId',
          message: "path parameter 'userId' is not declared in 'GET /users/{id}'",
          hint: 'expected one of: id',
        },
        {
          severity: 'error',
          code: 'BATON_HEADER_CASE',
          line: 9,
          col: 29,
          path: 'endpoints › GET /users/{id} › validate › headers › required › 0',
          message: "request header names are lower case: 'X-Tenant'",
          hint: "write 'x-tenant'",
        },
        {
          severity: 'error',
          code: 'BATON_UNKNOWN_KEY',
          line: 10,
          col: 7,
          path: 'endpoints › GET /users/{id} › validate › bdy',
          message: "unknown key 'bdy'",
          hint: "did you mean 'body'?",
        },
      ],
    )
  })

  test('two endpoints may use the same $id: each schema stands alone', () => {
    assert.deepEqual(
      reported(`  POST /a:
    validate: { body: { $id: "https://example.com/cart", type: object } }
  POST /b:
    validate: { body: { $id: "https://example.com/cart", type: object } }`),
      [],
    )
  })
})

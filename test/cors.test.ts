/**
 * CORS as a browser meets it: simple requests, preflights answered by the gateway (never by
 * a service), origin matching, credentials, the headers on error answers that a script
 * needs to read them, and config mistakes reported at their place.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import type { Diagnostic } from '../src/errors.ts'
import { compileText } from '../src/plan/compile.ts'
import { errorsOf } from './helpers/config.ts'
import { assertError, type ClientResponse, rawRequest, startGateway, stubFor } from './helpers/gateway.ts'
import { json, type Stub } from './helpers/stub.ts'

const APP = 'https://app.example.com'
const EXPOSED =
  'x-request-id, baton-degraded, retry-after, ratelimit, ratelimit-policy, server-timing, www-authenticate'
const APP_KEY = 'k-0123456789'

interface Setup {
  /** The gateway's URL with its basePath. */
  readonly url: string
  readonly stub: Stub
}

/**
 * One service `shop` on a stub, four endpoints (methods GET, POST, DELETE in that order of
 * first appearance); `cors` is the gateway.cors value, `edge` more gateway keys.
 */
async function setup(t: TestContext, cors: string, edge = ''): Promise<Setup> {
  const stub = await stubFor(t)
  stub.route('GET /carts/:id', (req) => json({ id: req.params.id }))
  stub.route('DELETE /carts/:id', json({}))
  stub.route('POST /orders', json({ order: 'o-1' }))
  stub.route('GET /fail', json({ error: 'boom' }, { status: 500 }))
  const gateway = await startGateway(
    t,
    `
version: 1
gateway:
  name: Cors
  basePath: /v1
  cors: ${cors}
${edge}
services:
  shop: { url: "${stub.url}" }
endpoints:
  GET /carts/{id}:
    calls:
      cart: { request: "GET shop /carts/\${request.params.id}" }
  POST /orders:
    calls:
      order: { request: POST shop /orders, body: "\${request.body}" }
  DELETE /carts/{id}:
    calls:
      cart: { request: "DELETE shop /carts/\${request.params.id}" }
  GET /broken:
    calls:
      fail: { request: GET shop /fail }
`,
    { env: { APP_KEY } },
  )
  return { url: `${gateway.url}/v1`, stub }
}

/** gateway.auth with an API key in X-Api-Key (mixed case: the default allowed header is lower-cased). */
const API_KEY_AUTH = `  auth:
    apiKey: { header: X-Api-Key, keys: { app: "\${env.APP_KEY}" } }`

async function simple(
  url: string,
  origin: string | null,
  headers: Record<string, string> = {},
): Promise<ClientResponse> {
  // node:http, not fetch: a browser's Origin is sent exactly as given.
  return await rawRequest('GET', url, origin === null ? headers : { origin, ...headers })
}

async function preflight(
  url: string,
  origin: string,
  method = 'POST',
  requestHeaders?: string,
): Promise<ClientResponse> {
  return await rawRequest('OPTIONS', url, {
    origin,
    'access-control-request-method': method,
    ...(requestHeaders === undefined ? {} : { 'access-control-request-headers': requestHeaders }),
  })
}

/** The names in a Vary header, lower case. */
function varied(res: ClientResponse): string[] {
  return (res.headers.vary ?? '')
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== '')
}

/** What a browser reads from a CORS answer. */
function corsHeaders(res: ClientResponse): Record<string, string | undefined> {
  const h = res.headers
  return {
    origin: h['access-control-allow-origin'],
    credentials: h['access-control-allow-credentials'],
    expose: h['access-control-expose-headers'],
    methods: h['access-control-allow-methods'],
    headers: h['access-control-allow-headers'],
    maxAge: h['access-control-max-age'],
  }
}

describe('simple requests', () => {
  test('from an allowed origin: the origin reflected, Vary: Origin, the default exposed headers', async (t) => {
    const { url } = await setup(t, `{ origins: [${APP}, "https://admin.example.com"] }`)
    for (const origin of [APP, 'https://admin.example.com']) {
      const res = await simple(`${url}/carts/c1`, origin)
      assert.equal(res.status, 200, origin)
      assert.deepEqual(res.body, { cart: { id: 'c1' } })
      // No preflight headers on a simple request; no credentials unless configured.
      assert.deepEqual(corsHeaders(res), {
        origin,
        credentials: undefined,
        expose: EXPOSED,
        methods: undefined,
        headers: undefined,
        maxAge: undefined,
      })
      assert.ok(varied(res).includes('origin'), `vary: ${res.headers.vary}`)
    }
  })

  test('from another origin, or none: still served (browsers enforce CORS), without Access-Control-Allow-Origin', async (t) => {
    const { url, stub } = await setup(t, `{ origins: [${APP}] }`)
    const origins = [
      'https://evil.example.net',
      'http://app.example.com',
      'https://app.example.com:8443',
      'null',
      `${APP}.evil.net`,
    ]
    for (const origin of [...origins, null]) {
      const res = await simple(`${url}/carts/c1`, origin)
      assert.equal(res.status, 200, String(origin))
      assert.deepEqual(res.body, { cart: { id: 'c1' } })
      assert.equal(res.headers['access-control-allow-origin'], undefined, String(origin))
      // The answer depends on Origin: a shared cache must not hand this one to an allowed origin.
      assert.ok(varied(res).includes('origin'), `vary: ${res.headers.vary}`)
    }
    assert.equal(stub.requestsTo('GET /carts/:id').length, origins.length + 1)
  })
})

describe('preflight', () => {
  test("from an allowed origin: 204 from the gateway with the endpoints' methods, the default headers and max-age in seconds", async (t) => {
    const { url, stub } = await setup(t, `{ origins: [${APP}], maxAge: 10m }`)
    const res = await preflight(`${url}/carts/c1`, APP, 'DELETE', 'content-type, authorization')
    assert.equal(res.status, 204)
    assert.equal(res.body, '')
    assert.deepEqual(corsHeaders(res), {
      origin: APP,
      credentials: undefined,
      expose: EXPOSED,
      methods: 'GET, POST, DELETE',
      headers: 'content-type, authorization, x-request-id',
      maxAge: '600',
    })
    assert.ok(varied(res).includes('origin'), `vary: ${res.headers.vary}`)
    // Answered by the gateway: the service saw nothing, though a real request does reach it.
    assert.equal(stub.requests.length, 0)
    assert.equal((await simple(`${url}/carts/c1`, APP)).status, 200)
    assert.equal(stub.requests.length, 1)
  })

  test('configured methods, headers, exposed headers and maxAge replace the defaults', async (t) => {
    const { url } = await setup(
      t,
      `{ origins: [${APP}], methods: [GET, PUT], headers: [x-custom, content-type], exposeHeaders: [x-total-count], maxAge: 90s }`,
    )
    const res = await preflight(`${url}/orders`, APP, 'PUT', 'x-custom')
    assert.equal(res.status, 204)
    assert.deepEqual(corsHeaders(res), {
      origin: APP,
      credentials: undefined,
      expose: 'x-total-count',
      methods: 'GET, PUT',
      headers: 'x-custom, content-type',
      maxAge: '90',
    })
    assert.equal((await simple(`${url}/carts/c1`, APP)).headers['access-control-expose-headers'], 'x-total-count')
  })

  test('from another origin: no Access-Control-Allow-Origin, and the service sees nothing', async (t) => {
    const { url, stub } = await setup(t, `{ origins: [${APP}] }`)
    for (const origin of ['https://evil.example.net', 'https://example.com', 'http://app.example.com']) {
      const res = await preflight(`${url}/orders`, origin)
      // The status is the gateway's choice (fastify/cors: 204); the browser fails the preflight on the missing origin.
      assert.ok(res.status === 204 || res.status === 403, `${origin}: ${res.status}`)
      assert.equal(res.headers['access-control-allow-origin'], undefined, origin)
      assert.equal(res.headers['access-control-allow-credentials'], undefined, origin)
    }
    assert.equal(stub.requests.length, 0)
  })

  test('a wildcard subdomain origin matches one level of that domain, nothing else', async (t) => {
    const { url } = await setup(t, '{ origins: ["https://*.example.com"] }')
    for (const origin of [APP, 'https://admin-2.example.com']) {
      for (const res of [await preflight(`${url}/orders`, origin), await simple(`${url}/carts/c1`, origin)]) {
        assert.equal(res.headers['access-control-allow-origin'], origin, origin)
      }
    }
    const rejected = [
      'https://example.com',
      'https://a.b.example.com',
      'https://evil-example.com',
      'https://app.example.com.evil.net',
      'https://appexample.com',
      'http://app.example.com',
      'https://app.example.com:8443',
      'https://.example.com',
      'https://app.example-com',
    ]
    for (const origin of rejected) {
      for (const res of [await preflight(`${url}/orders`, origin), await simple(`${url}/carts/c1`, origin)]) {
        assert.equal(res.headers['access-control-allow-origin'], undefined, origin)
      }
    }
  })

  test('origins: * allows any origin with Access-Control-Allow-Origin: *', async (t) => {
    const { url } = await setup(t, '{ origins: "*" }')
    for (const origin of [APP, 'https://anything.test', 'http://localhost:3000']) {
      const pre = await preflight(`${url}/orders`, origin)
      assert.equal(pre.status, 204)
      assert.deepEqual(corsHeaders(pre), {
        origin: '*',
        credentials: undefined,
        expose: EXPOSED,
        methods: 'GET, POST, DELETE',
        headers: 'content-type, authorization, x-request-id',
        maxAge: '600',
      })
      const res = await simple(`${url}/carts/c1`, origin)
      assert.equal(res.status, 200)
      assert.equal(res.headers['access-control-allow-origin'], '*')
    }
  })

  // @fastify/cors alone would answer 400 text/plain "Invalid Preflight Request"; the gateway answers as it does without CORS.
  test('an OPTIONS that is not a preflight is answered in the error envelope: 404, as without CORS', async (t) => {
    const { url, stub } = await setup(t, `{ origins: [${APP}] }`)
    for (const headers of [{ origin: APP }, {}]) {
      const res = await rawRequest('OPTIONS', `${url}/orders`, headers)
      assertError(res, 404, 'NOT_FOUND', 'No endpoint matches this method and path')
    }
    assert.equal(stub.requests.length, 0)
  })
})

describe('credentials', () => {
  test('credentials: true sends Access-Control-Allow-Credentials with the reflected origin, never *', async (t) => {
    const { url } = await setup(t, '{ origins: ["https://*.example.com"], credentials: true }')
    const pre = await preflight(`${url}/orders`, APP, 'POST', 'content-type')
    assert.equal(pre.status, 204)
    assert.deepEqual(corsHeaders(pre), {
      origin: APP,
      credentials: 'true',
      expose: EXPOSED,
      methods: 'GET, POST, DELETE',
      headers: 'content-type, authorization, x-request-id',
      maxAge: '600',
    })
    const res = await simple(`${url}/carts/c1`, APP, { cookie: 'session=s1' })
    assert.equal(res.status, 200)
    assert.equal(res.headers['access-control-allow-origin'], APP)
    assert.equal(res.headers['access-control-allow-credentials'], 'true')
  })

  test('without credentials: true, no Access-Control-Allow-Credentials', async (t) => {
    const { url } = await setup(t, `{ origins: [${APP}], credentials: false }`)
    for (const res of [await preflight(`${url}/orders`, APP), await simple(`${url}/carts/c1`, APP)]) {
      assert.equal(res.headers['access-control-allow-origin'], APP)
      assert.equal(res.headers['access-control-allow-credentials'], undefined)
    }
  })
})

describe('config mistakes are BATON_CORS errors at their place', () => {
  const config = (cors: string): string => `version: 1
gateway:
  name: Cors
  cors:
${cors}
services:
  shop: { url: "http://127.0.0.1:9" }
endpoints:
  GET /carts/{id}:
    calls:
      cart: { request: "GET shop /carts/\${request.params.id}" }
`

  /** The BATON_CORS errors of a config that must not compile. */
  function corsErrors(yaml: string): Diagnostic[] {
    const errors = errorsOf(yaml)
    assert.deepEqual(
      errors.filter((d) => d.code !== 'BATON_CORS'),
      [],
    )
    return errors.filter((d) => d.code === 'BATON_CORS')
  }

  /** 1-based line and column of the first `needle` in `text`. */
  function placeOf(text: string, needle: string): { line: number; col: number } {
    const at = text.indexOf(needle)
    assert.ok(at !== -1, needle)
    const before = text.slice(0, at).split('\n')
    return { line: before.length, col: (before.at(-1) ?? '').length + 1 }
  }

  test('origins * with credentials: true, at credentials', () => {
    const yaml = config('    origins: "*"\n    credentials: true')
    const [d, ...more] = corsErrors(yaml)
    assert.deepEqual(more, [])
    assert.deepEqual(d, {
      severity: 'error',
      code: 'BATON_CORS',
      message: 'origins: * cannot be combined with credentials: true',
      path: ['gateway', 'cors', 'credentials'],
      hint: 'browsers refuse it; list the allowed origins instead',
      file: 'baton.yaml',
      // The value that makes it wrong: `true` after `credentials: `.
      ...placeOf(yaml, 'true'),
    })
    assert.equal(d?.line, 6)
  })

  test('an origin with a path, or that is not scheme://host[:port], at its item', () => {
    const bad = [
      'https://app.example.com/x',
      'https://app.example.com/',
      'app.example.com',
      'https://*.example.com/x',
      'https://app.*.com',
      '*',
      'ftp://app.example.com',
    ]
    const good = ['http://localhost:3000', 'https://*.example.com', 'https://app.example.com:8443']
    const yaml = config(
      ['    origins:', ...[good[0], ...bad, ...good.slice(1)].map((o) => `      - "${o}"`)].join('\n'),
    )
    const errors = corsErrors(yaml)
    assert.deepEqual(
      errors.map((d) => ({ message: d.message, path: d.path, line: d.line, col: d.col })),
      bad.map((o, i) => ({
        message: `'${o}' is not an origin`,
        path: ['gateway', 'cors', 'origins', i + 1],
        ...placeOf(yaml, `"${o}"`),
      })),
    )
    assert.equal(
      errors[0]?.hint,
      'write scheme://host[:port] without a path, e.g. https://app.example.com or https://*.example.com',
    )
  })

  test('valid origins compile', () => {
    const { plan } = compileText(
      'test.yaml',
      config(
        '    origins: ["http://localhost:3000", "https://*.example.com", "https://app.example.com:8443"]\n    credentials: true',
      ),
      { env: {} },
    )
    assert.deepEqual(plan.edge.cors?.origins, [
      'http://localhost:3000',
      'https://*.example.com',
      'https://app.example.com:8443',
    ])
    assert.equal(plan.edge.cors?.credentials, true)
  })
})

describe('error answers carry the CORS headers, so a script can read them', () => {
  const expectCors = (res: ClientResponse, what: string): void => {
    assert.equal(res.headers['access-control-allow-origin'], APP, what)
    assert.equal(res.headers['access-control-expose-headers'], EXPOSED, what)
    assert.ok(varied(res).includes('origin'), `${what}: vary: ${res.headers.vary}`)
  }

  test('404, 400 and a 502 from a failing service', async (t) => {
    const { url } = await setup(t, `{ origins: [${APP}] }`)
    const missing = await simple(`${url}/nope`, APP)
    assertError(missing, 404, 'NOT_FOUND', 'No endpoint matches this method and path')
    expectCors(missing, '404')
    const invalid = await rawRequest(
      'POST',
      `${url}/orders`,
      { origin: APP, 'content-type': 'application/json' },
      '{"a":',
    )
    assertError(invalid, 400, 'INVALID_JSON', 'The request body is not valid JSON')
    expectCors(invalid, '400')
    const failed = await simple(`${url}/broken`, APP)
    assertError(failed, 502, 'DOWNSTREAM_FAILURE', 'shop failed (500)', ['shop'])
    expectCors(failed, '502')
  })

  test('401 from gateway.auth', async (t) => {
    const { url, stub } = await setup(t, `{ origins: [${APP}] }`, API_KEY_AUTH)
    const none = await simple(`${url}/carts/c1`, APP)
    assertError(none, 401, 'UNAUTHENTICATED', 'Credentials are required')
    expectCors(none, 'no key')
    assert.ok(none.headers['www-authenticate'] !== undefined)
    const wrong = await simple(`${url}/carts/c1`, APP, { 'x-api-key': 'wrong' })
    assertError(wrong, 401, 'INVALID_API_KEY', 'The API key is not valid')
    expectCors(wrong, 'wrong key')
    assert.equal(stub.requests.length, 0)
    const ok = await simple(`${url}/carts/c1`, APP, { 'x-api-key': APP_KEY })
    assert.equal(ok.status, 200)
    expectCors(ok, 'right key')
  })

  test('429 from gateway.rateLimit', async (t) => {
    const { url } = await setup(t, `{ origins: [${APP}] }`, '  rateLimit: { perIp: 1/min }')
    assert.equal((await simple(`${url}/carts/c1`, APP)).status, 200)
    const limited = await simple(`${url}/carts/c1`, APP)
    assertError(limited, 429, 'RATE_LIMITED', /./)
    expectCors(limited, '429')
    assert.match(limited.headers['retry-after'] ?? '', /^\d+$/)
  })
})

test('with gateway.auth, a preflight needs no credentials, and allows the API key header', async (t) => {
  const { url, stub } = await setup(t, `{ origins: [${APP}] }`, API_KEY_AUTH)
  const res = await preflight(`${url}/carts/c1`, APP, 'GET', 'x-api-key')
  assert.equal(res.status, 204)
  assert.deepEqual(corsHeaders(res), {
    origin: APP,
    credentials: undefined,
    expose: EXPOSED,
    methods: 'GET, POST, DELETE',
    headers: 'content-type, authorization, x-request-id, x-api-key',
    maxAge: '600',
  })
  assert.equal(res.headers['www-authenticate'], undefined)
  assert.equal(stub.requests.length, 0)
})

test('baton check reports a CORS mistake in a config with auth and rate limits, with file:line:col and a hint', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'baton-cors-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'baton.yaml')
  writeFileSync(
    file,
    `version: 1
gateway:
  name: Shop
  auth:
    jwt: { secret: "\${env.JWT_SECRET}" }
  rateLimit: { perIp: 100/min, perUser: 20/s }
  cors:
    origins: "*"
    credentials: true
services:
  carts: { url: "http://127.0.0.1:9" }
endpoints:
  GET /carts/{id}:
    calls:
      cart: { request: "GET carts /carts/\${request.params.id}" }
`,
  )
  const r = spawnSync(process.execPath, ['bin/baton.js', 'check', file], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', JWT_SECRET: 'x'.repeat(48) },
  })
  assert.equal(r.status, 1, r.stderr)
  assert.equal(r.stdout, '')
  assert.equal(
    r.stderr,
    [
      `${file}:9:18: error BATON_CORS: origins: * cannot be combined with credentials: true (at gateway › cors › credentials)`,
      '    hint: browsers refuse it; list the allowed origins instead',
      `${file}: 1 error`,
      '',
    ].join('\n'),
  )
})

/**
 * Credentials Baton sends to services, each only to its own service: a bearer token or an
 * API key from the environment, an OAuth2 client-credentials token (fetched once for every
 * caller, renewed before it expires, dropped on a 401), a client certificate for mTLS; and
 * the config errors that stop credentials that cannot work.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { generateKeyPairSync, type KeyObject, verify } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createTcpServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TLSSocket } from 'node:tls'
import { after, before, describe, test, type TestContext } from 'node:test'
import { compileText } from '../src/plan/compile.ts'
import { createServiceClient } from '../src/upstream/client.ts'
import { CallError } from '../src/upstream/failure.ts'
import { diagnosticsOf } from './helpers/config.ts'
import { assertError, get, startGateway, stubFor } from './helpers/gateway.ts'
import { eventually, hang, json, type Stub } from './helpers/stub.ts'

/** The config's errors (not its warnings) as `CODE at path: message`; [] when it compiles. */
function errorsOf(yaml: string, env: Record<string, string> = {}, mode: 'serve' | 'check' = 'serve'): string[] {
  return diagnosticsOf(yaml, { env, mode })
    .filter((d) => d.severity === 'error')
    .map((d) => `${d.code} at ${d.path.join('.')}: ${d.message}`)
}

/** A config with one service `svc` (its settings given) and one endpoint calling it. */
function oneService(settings: string): string {
  return `
version: 1
gateway: { name: Credentials }
services:
  svc: { ${settings} }
endpoints:
  GET /x:
    calls:
      x: { request: GET svc /x }
`
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createTcpServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

test('bearer and apiKey credentials from the environment reach their own service, and nothing of them reaches another', async (t) => {
  const [a, b, c] = [await stubFor(t), await stubFor(t), await stubFor(t)] as const
  for (const stub of [a, b, c]) stub.route('GET /data', json({ ok: true }))
  const gateway = await startGateway(
    t,
    `
version: 1
gateway: { name: Credentials }
services:
  a: { url: "${a.url}", auth: { bearer: "\${env.A_TOKEN}" } }
  b: { url: "${b.url}", auth: { apiKey: { header: x-api-key, value: "\${env.B_KEY}" } } }
  c: { url: "${c.url}" }
endpoints:
  GET /all:
    calls:
      a: { request: GET a /data }
      b: { request: GET b /data }
      c: { request: GET c /data }
`,
    { env: { A_TOKEN: 'a-t0ken', B_KEY: 'b-k3y' } },
  )
  // The client's own credentials change nothing: none of these services forwards them.
  for (const headers of [{}, { authorization: 'Bearer client', 'x-api-key': 'client-key' }]) {
    const res = await get(`${gateway.url}/all`, headers)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { a: { ok: true }, b: { ok: true }, c: { ok: true } })
    assert.doesNotMatch(JSON.stringify(res), /a-t0ken|b-k3y/)
  }
  const credentials = (stub: Stub): unknown[] =>
    stub.requests.map((r) => ({ authorization: r.headers.authorization, 'x-api-key': r.headers['x-api-key'] }))
  const twice = (v: unknown): unknown[] => [v, v]
  assert.deepEqual(credentials(a), twice({ authorization: 'Bearer a-t0ken', 'x-api-key': undefined }))
  assert.deepEqual(credentials(b), twice({ authorization: undefined, 'x-api-key': 'b-k3y' }))
  assert.deepEqual(credentials(c), twice({ authorization: undefined, 'x-api-key': undefined }))
  for (const [stub, foreign] of [
    [a, /b-k3y|client/],
    [b, /a-t0ken|client/],
    [c, /a-t0ken|b-k3y|client/],
  ] as const) {
    for (const r of stub.requests) assert.doesNotMatch(JSON.stringify(r.headers), foreign)
  }
})

describe('OAuth2 client credentials', () => {
  const CLIENT_ID = 'baton client'
  const CLIENT_SECRET = 's3cr:et&='

  interface Rig {
    readonly url: string
    /** The token endpoint: POST /oauth/token. */
    readonly issuer: Stub
    /** The service the token is for: GET /orders. */
    readonly orders: Stub
    /** How the token endpoint answers next; tokens are tok-1, tok-2, … */
    token: { mode: 'ok' | 'error' | 'no-token' | 'line-break' | 'hang'; expiresIn: number }
    /** Authorization values the service answers 401 to; `forbidden`: answered 403. */
    readonly refused: Set<string>
    readonly forbidden: Set<string>
  }

  /** Client id and secret from an HTTP Basic header, form-decoded (RFC 6749 §2.3.1). */
  function basic(header: unknown): [string, string] {
    const [scheme, encoded] = String(header).split(' ')
    assert.equal(scheme, 'Basic')
    const decoded = Buffer.from(encoded ?? '', 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    const unform = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '))
    return [unform(decoded.slice(0, colon)), unform(decoded.slice(colon + 1))]
  }

  async function rig(t: TestContext, options: { tokenUrl?: string; refreshBefore?: string } = {}): Promise<Rig> {
    const issuer = await stubFor(t)
    const orders = await stubFor(t)
    const state: Rig = {
      url: '',
      issuer,
      orders,
      token: { mode: 'ok', expiresIn: 3600 },
      refused: new Set(),
      forbidden: new Set(),
    }
    let issued = 0
    // Slow enough that concurrent requests all wait for the same fetch.
    issuer.route('POST /oauth/token', () => {
      const { mode, expiresIn } = state.token
      if (mode === 'hang') return hang()
      if (mode === 'error') return json({ error: 'server_error' }, { status: 500 })
      if (mode === 'no-token') return json({ token_type: 'Bearer', expires_in: expiresIn })
      if (mode === 'line-break')
        return json({ access_token: 'tok\r\nx-injected: 1', token_type: 'Bearer', expires_in: expiresIn })
      return json({ access_token: `tok-${++issued}`, token_type: 'Bearer', expires_in: expiresIn }, { delay: 200 })
    })
    orders.route('GET /orders', (req) => {
      const auth = String(req.headers.authorization)
      if (state.refused.has(auth)) return json({ error: 'invalid_token' }, { status: 401 })
      if (state.forbidden.has(auth)) return json({ error: 'forbidden' }, { status: 403 })
      return json({ orders: [] })
    })
    const gateway = await startGateway(
      t,
      `
version: 1
gateway: { name: OAuth2 }
services:
  orders:
    # Each client request makes its own call here (these tests count them); coalescing is test/coalesce.test.ts's.
    url: "${orders.url}"
    coalesce: false
    auth:
      oauth2:
        tokenUrl: "\${env.TOKEN_URL}"
        clientId: ${CLIENT_ID}
        clientSecret: "\${env.CLIENT_SECRET}"
        scope: orders:read orders:write
        audience: https://orders.example
        refreshBefore: ${options.refreshBefore ?? '30s'}
        timeout: 2s
endpoints:
  GET /orders:
    calls:
      orders: { request: GET orders /orders }
  GET /orders/optional:
    calls:
      orders: { request: GET orders /orders, required: false, fallback: { orders: [], cached: true } }
  GET /orders/fast:
    timeout: 300ms
    calls:
      orders: { request: GET orders /orders }
`,
      { env: { TOKEN_URL: options.tokenUrl ?? `${issuer.url}/oauth/token`, CLIENT_SECRET } },
    )
    return Object.assign(state, { url: gateway.url })
  }

  const OK = { orders: { orders: [] } }
  const tokensSeen = (r: Rig): unknown[] => r.orders.requests.map((q) => q.headers.authorization)

  test('20 concurrent requests: one token fetch, the client credentials grant by the book; every call carries the token; later requests reuse it', async (t) => {
    const r = await rig(t)
    const answers = await Promise.all(Array.from({ length: 20 }, () => get(`${r.url}/orders`)))
    for (const res of answers) {
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, OK)
    }
    assert.equal(r.issuer.requests.length, 1)
    const fetch = r.issuer.requests[0]
    assert.ok(fetch !== undefined)
    assert.equal(fetch.method, 'POST')
    assert.equal(fetch.url, '/oauth/token')
    assert.equal(fetch.headers['content-type'], 'application/x-www-form-urlencoded;charset=UTF-8')
    assert.equal(fetch.headers.accept, 'application/json')
    // The id and secret are form-encoded before Basic, so a colon in the secret survives.
    assert.deepEqual(basic(fetch.headers.authorization), [CLIENT_ID, CLIENT_SECRET])
    assert.deepEqual([...new URLSearchParams(String(fetch.body))].sort(), [
      ['audience', 'https://orders.example'],
      ['grant_type', 'client_credentials'],
      ['scope', 'orders:read orders:write'],
    ])
    assert.deepEqual(tokensSeen(r), Array(20).fill('Bearer tok-1'))

    for (let i = 0; i < 3; i++) assert.equal((await get(`${r.url}/orders`)).status, 200)
    assert.equal(r.issuer.requests.length, 1)
    assert.deepEqual(tokensSeen(r), Array(23).fill('Bearer tok-1'))
  })

  test('a token is renewed once due: expires_in 2s, refreshBefore 1.5s → after half its life (1s), before it expires', async (t) => {
    const r = await rig(t, { refreshBefore: '1500ms' })
    r.token.expiresIn = 2
    assert.equal((await get(`${r.url}/orders`)).status, 200)
    // Steady traffic until the second fetch.
    const statuses: number[] = []
    let stop = false
    const traffic = (async () => {
      while (!stop) {
        statuses.push((await get(`${r.url}/orders`)).status)
        await sleep(20)
      }
    })()
    try {
      await eventually(() => r.issuer.requests.length >= 2, 'a second token fetch', 4000)
    } finally {
      stop = true
      await traffic
    }
    const [first, second] = r.issuer.requests
    assert.ok(first !== undefined && second !== undefined)
    const gap = second.arrivedAt - first.arrivedAt
    // Not at lifetime - refreshBefore (0.5 s): that would leave most of the token unused.
    assert.ok(gap >= 900 && gap < 2000, `renewed ${Math.round(gap)}ms after the first fetch`)
    assert.equal(r.issuer.requests.length, 2)
    assert.ok(statuses.length >= 5 && statuses.every((s) => s === 200), String(statuses))
    // tok-1 until the renewal, tok-2 from then on.
    const seen = tokensSeen(r)
    const switchAt = seen.indexOf('Bearer tok-2')
    assert.ok(switchAt >= 2, String(seen))
    assert.deepEqual(seen, [
      ...Array(switchAt).fill('Bearer tok-1'),
      ...Array(seen.length - switchAt).fill('Bearer tok-2'),
    ])
  })

  test('a 401 from the service drops the token: that request gets 401, the next fetches a new token; a 403 keeps it', async (t) => {
    const r = await rig(t)
    assert.equal((await get(`${r.url}/orders`)).status, 200)
    r.forbidden.add('Bearer tok-1')
    assertError(await get(`${r.url}/orders`), 403, 'DOWNSTREAM_FORBIDDEN', 'orders refused access (403)', ['orders'])
    assert.equal(r.issuer.requests.length, 1)
    r.refused.add('Bearer tok-1')
    r.forbidden.clear()
    assertError(await get(`${r.url}/orders`), 401, 'DOWNSTREAM_UNAUTHORIZED', 'orders refused the credentials (401)', [
      'orders',
    ])
    const res = await get(`${r.url}/orders`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, OK)
    assert.equal(r.issuer.requests.length, 2)
    assert.deepEqual(tokensSeen(r), ['Bearer tok-1', 'Bearer tok-1', 'Bearer tok-1', 'Bearer tok-2'])
  })

  /** No token: a required call is a 502 naming the service, an optional one its fallback; the service is never called. */
  async function assertNoToken(r: Rig): Promise<void> {
    assertError(await get(`${r.url}/orders`), 502, 'DOWNSTREAM_FAILURE', 'orders failed: no credentials for it', [
      'orders',
    ])
    const optional = await get(`${r.url}/orders/optional`)
    assert.equal(optional.status, 200)
    assert.deepEqual(optional.body, { orders: { orders: [], cached: true }, partialData: true })
    assert.equal(optional.headers['baton-degraded'], 'orders')
    assert.equal(r.orders.requests.length, 0)
  }

  test('the token endpoint refuses connections', async (t) => {
    const r = await rig(t, { tokenUrl: `http://127.0.0.1:${await closedPort()}/oauth/token` })
    await assertNoToken(r)
  })

  for (const [what, mode] of [
    ['answers 500', 'error'],
    ['answers 200 without an access_token', 'no-token'],
    ['answers a token with a line break in it', 'line-break'],
  ] as const) {
    test(`the token endpoint ${what}; once it recovers, the next request gets a token`, async (t) => {
      const r = await rig(t)
      r.token.mode = mode
      await assertNoToken(r)
      // One fetch per request: a failure is not cached.
      assert.equal(r.issuer.requests.length, 2)
      r.token.mode = 'ok'
      const res = await get(`${r.url}/orders`)
      assert.equal(res.status, 200)
      assert.deepEqual(tokensSeen(r), ['Bearer tok-1'])
    })
  }

  test('a token endpoint that hangs: the endpoint deadline still holds (504 at 300ms, not a 502 after oauth2.timeout)', async (t) => {
    const r = await rig(t)
    r.token.mode = 'hang'
    const started = performance.now()
    const res = await get(`${r.url}/orders/fast`)
    const ms = performance.now() - started
    const code = (res.body as { error?: { code?: string } }).error?.code
    assert.deepEqual(
      { status: res.status, code, inTime: ms < 1500 },
      { status: 504, code: 'GATEWAY_TIMEOUT', inTime: true },
      `answered after ${Math.round(ms)}ms`,
    )
    assertError(res, 504, 'GATEWAY_TIMEOUT', "the endpoint's 300ms deadline passed", ['orders'])
    assert.equal(r.orders.requests.length, 0)
  })
})

describe('OAuth2 client authentication and discovery', () => {
  interface TokenRig {
    readonly url: string
    /** The authorization server: POST /oauth/token (tokens tok-1, tok-2, …), and what a test adds. */
    readonly server: Stub
    readonly orders: Stub
    /** Authorization values the service answers 401 to. */
    readonly refused: Set<string>
  }

  /** A gateway whose service `orders` gets tokens as `oauth2` says (ISSUER in it: the server stub's URL). */
  async function tokenRig(t: TestContext, oauth2: string, env: Record<string, string> = {}): Promise<TokenRig> {
    const server = await stubFor(t)
    const orders = await stubFor(t)
    const refused = new Set<string>()
    let issued = 0
    server.route('POST /oauth/token', () =>
      json({ access_token: `tok-${++issued}`, token_type: 'Bearer', expires_in: 3600 }),
    )
    orders.route('GET /x', (req) =>
      refused.has(String(req.headers.authorization)) ? json({}, { status: 401 }) : json({ orders: [] }),
    )
    const gateway = await startGateway(
      t,
      oneService(
        `url: "${orders.url}", coalesce: false, auth: { oauth2: { ${oauth2.replaceAll('ISSUER', server.url)} } }`,
      ),
      { env },
    )
    return { url: gateway.url, server, orders, refused }
  }

  const form = (body: unknown): Record<string, string> => Object.fromEntries(new URLSearchParams(String(body)))

  /** The JWT's header and claims, once its signature checks out against `publicKey`. */
  function verifiedJwt(jwt: string, publicKey: KeyObject): { header: unknown; claims: Record<string, unknown> } {
    const [header = '', claims = '', signature = ''] = jwt.split('.')
    const decode = (part: string): Record<string, unknown> =>
      JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>
    const ok = verify(
      'sha256',
      Buffer.from(`${header}.${claims}`),
      { key: publicKey, dsaEncoding: 'ieee-p1363' },
      Buffer.from(signature, 'base64url'),
    )
    assert.ok(ok, 'the assertion is signed by the configured key')
    return { header: decode(header), claims: decode(claims) }
  }

  test('client_secret_post: id and secret in the form, no Authorization header', async (t) => {
    const r = await tokenRig(
      t,
      'tokenUrl: "ISSUER/oauth/token", authMethod: client_secret_post, clientId: bff, clientSecret: "${env.S}", scope: a b',
      { S: 's3cr:et&=' },
    )
    const res = await get(`${r.url}/x`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { x: { orders: [] } })
    assert.equal(r.server.requests.length, 1)
    const fetch = r.server.requests[0]
    assert.equal(fetch?.headers.authorization, undefined)
    assert.deepEqual(form(fetch?.body), {
      grant_type: 'client_credentials',
      client_id: 'bff',
      client_secret: 's3cr:et&=',
      scope: 'a b',
    })
    assert.deepEqual(
      r.orders.requests.map((q) => q.headers.authorization),
      ['Bearer tok-1'],
    )
  })

  for (const [kind, keys, alg] of [
    ['EC P-256 key from a file, with a kid', generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'ES256'],
    ['RSA key from the environment', generateKeyPairSync('rsa', { modulusLength: 2048 }), 'RS256'],
  ] as const) {
    test(`private_key_jwt (${kind}): a signed client assertion (${alg}), no secret; a new one for each token`, async (t) => {
      const pem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
      let settings: string
      let env: Record<string, string> = {}
      if (alg === 'ES256') {
        const dir = mkdtempSync(join(tmpdir(), 'baton-pkjwt-'))
        t.after(() => rmSync(dir, { recursive: true, force: true }))
        writeFileSync(join(dir, 'client.pem'), pem)
        settings = `privateKeyFile: ${join(dir, 'client.pem')}, keyId: key-1`
      } else {
        settings = 'privateKey: "${env.KEY}", authMethod: private_key_jwt'
        env = { KEY: pem }
      }
      const r = await tokenRig(t, `tokenUrl: "ISSUER/oauth/token", clientId: bff, ${settings}`, env)
      assert.equal((await get(`${r.url}/x`)).status, 200)
      r.refused.add('Bearer tok-1')
      assert.equal((await get(`${r.url}/x`)).status, 401)
      assert.equal((await get(`${r.url}/x`)).status, 200)
      assert.equal(r.server.requests.length, 2)
      const ids = new Set<unknown>()
      for (const fetch of r.server.requests) {
        assert.equal(fetch.headers.authorization, undefined)
        const { client_assertion: assertion = '', ...rest } = form(fetch.body)
        assert.deepEqual(rest, {
          grant_type: 'client_credentials',
          client_id: 'bff',
          client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        })
        const { header, claims } = verifiedJwt(assertion, keys.publicKey)
        assert.deepEqual(header, alg === 'ES256' ? { alg, kid: 'key-1' } : { alg })
        // Without discovery, the token endpoint is the audience (RFC 7523 §3).
        assert.deepEqual(
          { iss: claims.iss, sub: claims.sub, aud: claims.aud, life: Number(claims.exp) - Number(claims.iat) },
          { iss: 'bff', sub: 'bff', aud: `${r.server.url}/oauth/token`, life: 60 },
        )
        ids.add(claims.jti)
      }
      assert.equal(ids.size, 2, 'each assertion has its own jti')
      assert.deepEqual(
        r.orders.requests.map((q) => q.headers.authorization),
        ['Bearer tok-1', 'Bearer tok-1', 'Bearer tok-2'],
      )
    })
  }

  test('issuer: the token endpoint comes from /.well-known/openid-configuration, read once for every token', async (t) => {
    const r = await tokenRig(t, 'issuer: ISSUER, clientId: bff, clientSecret: s')
    r.server.route('GET /.well-known/openid-configuration', () =>
      json({ issuer: r.server.url, token_endpoint: `${r.server.url}/oauth/token` }),
    )
    assert.equal((await get(`${r.url}/x`)).status, 200)
    r.refused.add('Bearer tok-1')
    assert.equal((await get(`${r.url}/x`)).status, 401)
    assert.equal((await get(`${r.url}/x`)).status, 200)
    assert.deepEqual(
      r.server.requests.map((q) => `${q.method} ${q.url}`),
      ['GET /.well-known/openid-configuration', 'POST /oauth/token', 'POST /oauth/token'],
    )
    assert.deepEqual(
      r.orders.requests.map((q) => q.headers.authorization),
      ['Bearer tok-1', 'Bearer tok-1', 'Bearer tok-2'],
    )
  })

  test('issuer without OpenID metadata: RFC 8414 /.well-known/oauth-authorization-server instead', async (t) => {
    const r = await tokenRig(t, 'issuer: ISSUER, clientId: bff, clientSecret: s')
    r.server.route('GET /.well-known/oauth-authorization-server', () =>
      json({ issuer: r.server.url, token_endpoint: `${r.server.url}/oauth/token` }),
    )
    assert.equal((await get(`${r.url}/x`)).status, 200)
    assert.deepEqual(
      r.server.requests.map((q) => `${q.method} ${q.url} ${q.route === null ? 404 : 200}`),
      [
        'GET /.well-known/openid-configuration 404',
        'GET /.well-known/oauth-authorization-server 200',
        'POST /oauth/token 200',
      ],
    )
  })

  test('metadata that cannot be had (none, or for another issuer) is no token, and is asked for again next time', async (t) => {
    const r = await tokenRig(t, 'issuer: ISSUER, clientId: bff, clientSecret: s')
    assertError(await get(`${r.url}/x`), 502, 'DOWNSTREAM_FAILURE', 'svc failed: no credentials for it', ['svc'])
    let issuer = 'https://someone-else.example'
    r.server.route('GET /.well-known/openid-configuration', () =>
      json({ issuer, token_endpoint: `${r.server.url}/oauth/token` }),
    )
    assertError(await get(`${r.url}/x`), 502, 'DOWNSTREAM_FAILURE', 'svc failed: no credentials for it', ['svc'])
    issuer = r.server.url
    assert.equal((await get(`${r.url}/x`)).status, 200)
    assert.deepEqual(
      r.server.requests.map((q) => `${q.method} ${q.url}`),
      [
        'GET /.well-known/openid-configuration',
        'GET /.well-known/oauth-authorization-server',
        'GET /.well-known/openid-configuration',
        'GET /.well-known/openid-configuration',
        'POST /oauth/token',
      ],
    )
    assert.equal(r.orders.requests.length, 1)
  })

  test('config errors: tokenUrl and issuer (neither, both), a secret or key the method does not use, a key that cannot sign', () => {
    const dir = mkdtempSync(join(tmpdir(), 'baton-pkjwt-'))
    try {
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' })
      const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).privateKey.export({
        type: 'pkcs8',
        format: 'pem',
      })
      writeFileSync(join(dir, 'ec.pem'), ec)
      writeFileSync(join(dir, 'k1.pem'), k1)
      writeFileSync(join(dir, 'garbage.pem'), '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n')
      const errors = (oauth2: string): string[] =>
        errorsOf(oneService(`url: "http://127.0.0.1:1", auth: { oauth2: { clientId: bff, ${oauth2} } }`))
      const at = 'services.svc.auth.oauth2'
      const ecFile = `privateKeyFile: ${join(dir, 'ec.pem')}`
      // The baseline: each of these is fine.
      for (const ok of [
        'tokenUrl: "http://a/t", clientSecret: s',
        'issuer: "https://a", clientSecret: s, authMethod: client_secret_post',
        `tokenUrl: "http://a/t", ${ecFile}`,
        `issuer: "https://a", ${ecFile}, authMethod: private_key_jwt, keyId: k`,
      ])
        assert.deepEqual(errors(ok), [], ok)
      const cases: [string, string][] = [
        ['clientSecret: s', `BATON_AUTH_CONFIG at ${at}: oauth2 needs tokenUrl or issuer`],
        [
          'tokenUrl: "http://a/t", issuer: "http://a", clientSecret: s',
          `BATON_AUTH_CONFIG at ${at}: oauth2 takes tokenUrl or issuer, not both`,
        ],
        [
          'issuer: "auth.example.com", clientSecret: s',
          `BATON_INVALID_URL at ${at}.issuer: 'auth.example.com' is not an http(s) URL`,
        ],
        ['tokenUrl: "http://a/t"', `BATON_AUTH_CONFIG at ${at}: client_secret_basic needs clientSecret`],
        [
          'tokenUrl: "http://a/t", authMethod: client_secret_post',
          `BATON_AUTH_CONFIG at ${at}: client_secret_post needs clientSecret`,
        ],
        [
          `tokenUrl: "http://a/t", clientSecret: s, ${ecFile}`,
          `BATON_AUTH_CONFIG at ${at}.clientSecret: clientSecret is not used with authMethod private_key_jwt`,
        ],
        [
          `tokenUrl: "http://a/t", clientSecret: s, ${ecFile}, authMethod: client_secret_basic`,
          `BATON_AUTH_CONFIG at ${at}.privateKeyFile: privateKeyFile is not used with authMethod client_secret_basic`,
        ],
        [
          'tokenUrl: "http://a/t", authMethod: private_key_jwt',
          `BATON_AUTH_CONFIG at ${at}.authMethod: private_key_jwt needs privateKey or privateKeyFile`,
        ],
        [
          `tokenUrl: "http://a/t", ${ecFile}, privateKey: "\${env.K}"`,
          `BATON_AUTH_CONFIG at ${at}.privateKeyFile: give privateKey or privateKeyFile, not both`,
        ],
        [
          `tokenUrl: "http://a/t", privateKeyFile: ${join(dir, 'missing.pem')}`,
          `BATON_FILE at ${at}.privateKeyFile: cannot read ${join(dir, 'missing.pem')}: ENOENT`,
        ],
        [
          `tokenUrl: "http://a/t", privateKeyFile: ${join(dir, 'k1.pem')}`,
          `BATON_INVALID_KEY at ${at}.privateKeyFile: an EC key on secp256k1 cannot sign a private_key_jwt assertion`,
        ],
      ]
      for (const [settings, expected] of cases) assert.deepEqual(errors(settings), [expected], settings)
      const garbage = errors(`tokenUrl: "http://a/t", privateKeyFile: ${join(dir, 'garbage.pem')}`)
      assert.equal(garbage.length, 1, String(garbage))
      assert.match(
        garbage[0] ?? '',
        /^BATON_INVALID_KEY at services\.svc\.auth\.oauth2\.privateKeyFile: the private key does not parse: /,
      )
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

const OPENSSL = spawnSync('openssl', ['version']).status === 0

describe('mTLS', { skip: OPENSSL ? false : 'openssl is not installed: cannot make the test certificates' }, () => {
  let dir = ''
  const file = (name: string): string => join(dir, name)

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'baton-mtls-'))
    const openssl = (...args: string[]): void => {
      execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
    }
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=Baton Test CA', '-days', '1')
    writeFileSync(file('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
    openssl('req', '-new', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
    openssl(
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.crt',
      '-days',
      '1',
      '-extfile',
      'server.ext',
    )
    openssl('req', '-new', ...ec, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=baton-client')
    openssl(
      'x509',
      '-req',
      '-in',
      'client.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'client.crt',
      '-days',
      '1',
    )
    writeFileSync(file('garbage.pem'), '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n')
  })
  after(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true })
  })

  /** An https service that demands a client certificate signed by the test CA, and records its CN. */
  async function mtlsService(t: TestContext): Promise<{ url: string; seen: string[]; handshakeErrors: string[] }> {
    const seen: string[] = []
    const handshakeErrors: string[] = []
    const server = createHttpsServer(
      {
        key: readFileSync(file('server.key')),
        cert: readFileSync(file('server.crt')),
        ca: readFileSync(file('ca.crt')),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => {
        const cn = String((req.socket as TLSSocket).getPeerCertificate().subject.CN)
        seen.push(cn)
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ cn }))
      },
    )
    server.on('tlsClientError', (err: Error & { code?: string }) => handshakeErrors.push(err.code ?? err.message))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    })
    return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, handshakeErrors }
  }

  async function gatewayFor(t: TestContext, url: string, tls: string): Promise<string> {
    const gateway = await startGateway(t, oneService(`url: "${url}", tls: ${tls}`))
    return gateway.url
  }

  interface TlsRequest {
    readonly line: string
    /** CN of the client certificate. */
    readonly cn: string
    readonly authorization: string | undefined
    /** The client's port: the same for two requests on one connection. */
    readonly port: number
  }

  /**
   * An https server with a certificate of the test CA that demands a client certificate of it,
   * and answers by `METHOD /path`; `origin` is its URL, for answers that name it.
   */
  async function tlsServer(
    t: TestContext,
    routes: Record<string, (origin: string) => unknown>,
  ): Promise<{ url: string; seen: TlsRequest[] }> {
    const seen: TlsRequest[] = []
    let url = ''
    const server = createHttpsServer(
      {
        key: readFileSync(file('server.key')),
        cert: readFileSync(file('server.crt')),
        ca: readFileSync(file('ca.crt')),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => {
        req.resume()
        req.on('end', () => {
          const line = `${req.method} ${req.url}`
          const socket = req.socket as TLSSocket
          seen.push({
            line,
            cn: String(socket.getPeerCertificate().subject.CN),
            authorization: req.headers.authorization,
            port: socket.remotePort ?? 0,
          })
          const route = routes[line]
          res.statusCode = route === undefined ? 404 : 200
          res.setHeader('content-type', 'application/json')
          res.end(JSON.stringify(route === undefined ? { error: 'not_found' } : route(url)))
        })
      },
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    })
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
    return { url, seen }
  }

  const TOKEN = { 'POST /oauth/token': () => ({ access_token: 'tok-1', token_type: 'Bearer', expires_in: 3600 }) }
  const METADATA = {
    'GET /.well-known/openid-configuration': (origin: string) => ({
      issuer: origin,
      token_endpoint: `${origin}/oauth/token`,
    }),
  }
  /** The service: answers with the token it got. */
  const SERVICE = { 'GET /x': () => ({ ok: true }) }

  const allTls = (): string => `{ cert: ${file('client.crt')}, key: ${file('client.key')}, ca: ${file('ca.crt')} }`

  test("oauth2 over the service's TLS: discovery and token requests to an authorization server behind the private CA, with the client certificate", async (t) => {
    const auth = await tlsServer(t, { ...METADATA, ...TOKEN })
    const service = await tlsServer(t, SERVICE)
    const gateway = await startGateway(
      t,
      oneService(
        `url: "${service.url}", tls: ${allTls()}, auth: { oauth2: { issuer: "${auth.url}", clientId: bff, clientSecret: s } }`,
      ),
    )
    for (let i = 0; i < 2; i++) {
      const res = await get(`${gateway.url}/x`)
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { x: { ok: true } })
    }
    assert.deepEqual(
      auth.seen.map((r) => [r.line, r.cn]),
      [
        ['GET /.well-known/openid-configuration', 'baton-client'],
        ['POST /oauth/token', 'baton-client'],
      ],
    )
    assert.deepEqual(
      service.seen.map((r) => [r.line, r.cn, r.authorization]),
      Array(2).fill(['GET /x', 'baton-client', 'Bearer tok-1']),
    )
  })

  test("a token endpoint on the service's own origin: the token request goes through the service's pool (one connection for both)", async (t) => {
    const both = await tlsServer(t, { ...TOKEN, ...SERVICE })
    const gateway = await startGateway(
      t,
      oneService(
        `url: "${both.url}", connections: 1, tls: ${allTls()}, auth: { oauth2: { tokenUrl: "${both.url}/oauth/token", clientId: bff, clientSecret: s } }`,
      ),
    )
    const res = await get(`${gateway.url}/x`)
    assert.equal(res.status, 200)
    assert.deepEqual(
      both.seen.map((r) => [r.line, r.authorization?.split(' ')[0]]),
      [
        ['POST /oauth/token', 'Basic'],
        ['GET /x', 'Bearer'],
      ],
    )
    const [token, call] = both.seen
    assert.equal(token?.port, call?.port)
  })

  test('without tls.ca the token endpoint behind the private CA is not trusted: no token (502), and the error says why', async (t) => {
    const auth = await tlsServer(t, TOKEN)
    const service = await tlsServer(t, SERVICE)
    const yaml = oneService(
      `url: "${service.url}", tls: { cert: ${file('client.crt')}, key: ${file('client.key')} }, auth: { oauth2: { tokenUrl: "${auth.url}/oauth/token", clientId: bff, clientSecret: s } }`,
    )
    const gateway = await startGateway(t, yaml)
    assertError(await get(`${gateway.url}/x`), 502, 'DOWNSTREAM_FAILURE', 'svc failed: no credentials for it', ['svc'])
    // The reason, as the client's transport reports it (to logs and traces).
    const { plan } = compileText('test.yaml', yaml)
    const [svc] = plan.services
    assert.ok(svc !== undefined)
    const client = createServiceClient(svc)
    t.after(() => client.close())
    await assert.rejects(
      client.transport({ method: 'GET', path: '/x', body: null, headers: {}, signal: AbortSignal.timeout(5000) }),
      (err: Error) => {
        assert.ok(err instanceof CallError)
        assert.equal(err.kind, 'credentials')
        assert.equal(
          err.message,
          'no OAuth2 token for svc: the token endpoint cannot be reached: self-signed certificate in certificate chain (SELF_SIGNED_CERT_IN_CHAIN)',
        )
        return true
      },
    )
    assert.deepEqual(auth.seen, [])
    assert.deepEqual(service.seen, [])
  })

  test("cert, key and ca: 200, and the service saw the client certificate's CN", async (t) => {
    const service = await mtlsService(t)
    const url = await gatewayFor(
      t,
      service.url,
      `{ cert: ${file('client.crt')}, key: ${file('client.key')}, ca: ${file('ca.crt')} }`,
    )
    for (let i = 0; i < 2; i++) {
      const res = await get(`${url}/x`)
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { x: { cn: 'baton-client' } })
    }
    assert.deepEqual(service.seen, ['baton-client', 'baton-client'])
    assert.deepEqual(service.handshakeErrors, [])
  })

  test('without tls.cert the service refuses the handshake: 502 DOWNSTREAM_FAILURE', async (t) => {
    const service = await mtlsService(t)
    const url = await gatewayFor(t, service.url, `{ ca: ${file('ca.crt')} }`)
    assertError(await get(`${url}/x`), 502, 'DOWNSTREAM_FAILURE', 'svc failed: connection error', ['svc'])
    assert.deepEqual(service.seen, [])
    await eventually(() => service.handshakeErrors.length > 0, "the service's handshake error")
    assert.equal(service.handshakeErrors[0], 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE')
  })

  test("without tls.ca the service's certificate (private CA) is not trusted: 502 DOWNSTREAM_FAILURE", async (t) => {
    const service = await mtlsService(t)
    const url = await gatewayFor(t, service.url, `{ cert: ${file('client.crt')}, key: ${file('client.key')} }`)
    assertError(await get(`${url}/x`), 502, 'DOWNSTREAM_FAILURE', 'svc failed: connection error', ['svc'])
    assert.deepEqual(service.seen, [])
  })

  test('config errors: tls on http://, cert without key (and key without cert), a missing file, a certificate or key that does not parse', () => {
    const tls = (settings: string, url = 'https://127.0.0.1:1'): string =>
      oneService(`url: "${url}", tls: { ${settings} }`)
    const [crt, key, ca] = [file('client.crt'), file('client.key'), file('ca.crt')]
    // The baseline: every file below is fine on its own.
    assert.deepEqual(errorsOf(tls(`cert: ${crt}, key: ${key}, ca: ${ca}`)), [])
    assert.deepEqual(errorsOf(tls(`ca: ${ca}`, 'http://127.0.0.1:1')), [
      'BATON_AUTH_CONFIG at services.svc.tls: tls settings need an https:// service URL',
    ])
    assert.deepEqual(errorsOf(tls(`cert: ${crt}, ca: ${ca}`)), [
      'BATON_AUTH_CONFIG at services.svc.tls: a client certificate needs both cert and key',
    ])
    assert.deepEqual(errorsOf(tls(`key: ${key}`)), [
      'BATON_AUTH_CONFIG at services.svc.tls: a client certificate needs both cert and key',
    ])
    assert.deepEqual(errorsOf(tls(`ca: ${file('missing.pem')}`)), [
      `BATON_FILE at services.svc.tls.ca: cannot read ${file('missing.pem')}: ENOENT`,
    ])
    const garbageCert = errorsOf(tls(`cert: ${file('garbage.pem')}, key: ${key}`))
    assert.equal(garbageCert.length, 1, String(garbageCert))
    assert.match(
      garbageCert[0] ?? '',
      /^BATON_INVALID_KEY at services\.svc\.tls\.cert: the client certificate does not parse: /,
    )
    const garbageKey = errorsOf(tls(`cert: ${crt}, key: ${file('garbage.pem')}`))
    assert.equal(garbageKey.length, 1, String(garbageKey))
    assert.match(garbageKey[0] ?? '', /^BATON_INVALID_KEY at services\.svc\.tls\.key: the client key does not parse: /)
  })
})

describe('credential conflicts', () => {
  const ENV = { T: 'service-token', K: 'service-key', S: 'client-secret' }
  const OAUTH2 = '{ oauth2: { tokenUrl: "http://127.0.0.1:1/token", clientId: bff, clientSecret: "${env.S}" } }'

  test('a service with credentials of its own that also forwards or sets their header: BATON_AUTH_CONFLICT', () => {
    const cases: [string, string][] = [
      ['auth: { bearer: "${env.T}" }, forwardHeaders: [authorization]', 'forwardHeaders'],
      ['auth: { bearer: "${env.T}" }, forwardHeaders: [Authorization]', 'forwardHeaders'],
      [`auth: ${OAUTH2}, forwardHeaders: [authorization]`, 'forwardHeaders'],
      ['auth: { bearer: "${env.T}" }, headers: { Authorization: "Basic eA==" }', 'headers'],
      ['auth: { apiKey: { header: x-api-key, value: "${env.K}" } }, forwardHeaders: [X-Api-Key]', 'forwardHeaders'],
    ]
    for (const [settings, clash] of cases) {
      const errors = errorsOf(oneService(`url: "http://127.0.0.1:1", ${settings}`), ENV)
      assert.equal(errors.length, 1, `${settings}: ${String(errors)}`)
      assert.match(
        errors[0] ?? '',
        new RegExp(
          `^BATON_AUTH_CONFLICT at services\\.svc\\.${clash}: svc gets its own credentials in (authorization|x-api-key), and ${clash} sets \\1 too$`,
        ),
        settings,
      )
    }
  })

  test("credentials in one header, the client's authorization forwarded in another: no conflict", () => {
    assert.deepEqual(
      errorsOf(
        oneService(
          'url: "http://127.0.0.1:1", auth: { apiKey: { header: x-api-key, value: "${env.K}" } }, forwardHeaders: [authorization]',
        ),
        ENV,
      ),
      [],
    )
  })

  test('a call that sets the credential header of its service: BATON_AUTH_CONFLICT', () => {
    for (const [auth, header] of [
      ['{ bearer: "${env.T}" }', 'authorization'],
      ['{ apiKey: { header: x-api-key, value: "${env.K}" } }', 'x-api-key'],
    ]) {
      const errors = errorsOf(
        `
version: 1
gateway: { name: Credentials }
services:
  svc: { url: "http://127.0.0.1:1", auth: ${auth} }
endpoints:
  GET /x:
    calls:
      x: { request: GET svc /x, headers: { ${header}: "\${request.headers['${header}']}" } }
`,
        ENV,
      )
      assert.equal(
        errors.length,
        1,
        `${header}: the config compiles, and the client's ${header} replaces the service's credentials`,
      )
      assert.match(errors[0] ?? '', /^BATON_AUTH_CONFLICT at /)
    }
  })

  test('service credentials the environment leaves empty: BATON_AUTH_CONFIG when serving, a warning when checking', () => {
    for (const auth of ['{ bearer: "${env.T}" }', '{ apiKey: { header: x-api-key, value: "${env.K}" } }', OAUTH2]) {
      const yaml = oneService(`url: "http://127.0.0.1:1", auth: ${auth}`)
      assert.deepEqual(errorsOf(yaml, {}, 'check'), [], auth)
      const errors = errorsOf(yaml, {}, 'serve')
      assert.ok(
        errors.length === 1 && /^BATON_AUTH_CONFIG at services\.svc\.auth/.test(errors[0] ?? ''),
        `${auth}: ${JSON.stringify(errors)}`,
      )
    }
  })
})

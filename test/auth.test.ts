/**
 * Inbound authentication end to end: a real gateway in front of real stub services and a
 * real JWKS endpoint. Tokens are minted here with jose and keys generated at start-up.
 * Every rejection is checked whole (status, envelope, WWW-Authenticate) and must leave the
 * services untouched.
 */
import assert from 'node:assert/strict'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  base64url,
  type CryptoKey,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose'
import { devToken } from '../src/cli/devtoken.ts'
import { compileText } from '../src/plan/compile.ts'
import { createGateway } from '../src/server/gateway.ts'
import { diagnosticsOf } from './helpers/config.ts'
import { assertError, type ClientResponse, get, startGateway, stubFor } from './helpers/gateway.ts'
import { hang, json, type Stub, text } from './helpers/stub.ts'

const REALM = 'Shop BFF'
const SECRET = randomBytes(48).toString('base64url')
const encoder = new TextEncoder()

const rsa = await generateKeyPair('RS256')
const ec = await generateKeyPair('ES256')
const ed = await generateKeyPair('EdDSA')
/** Same algorithm as `rsa`, not trusted by anyone. */
const rogue = await generateKeyPair('RS256')
const RSA_PEM = await exportSPKI(rsa.publicKey)
const EC_PEM = await exportSPKI(ec.publicKey)
const ED_PEM = await exportSPKI(ed.publicKey)

interface Signer {
  readonly alg: string
  readonly key: CryptoKey | Uint8Array
  readonly kid?: string
}

const HS: Signer = { alg: 'HS256', key: encoder.encode(SECRET) }
const RS: Signer = { alg: 'RS256', key: rsa.privateKey }

const now = (): number => Math.floor(Date.now() / 1000)

/** A signed JWT: sub user-1, issued now, valid for five minutes, unless `claims` says otherwise (undefined drops a claim). */
async function mint(signer: Signer, claims: Record<string, unknown> = {}): Promise<string> {
  const payload: Record<string, unknown> = { sub: 'user-1', iat: now(), exp: now() + 300, ...claims }
  for (const name of Object.keys(payload)) if (payload[name] === undefined) delete payload[name]
  return await new SignJWT(payload as JWTPayload)
    .setProtectedHeader({ alg: signer.alg, ...(signer.kid === undefined ? {} : { kid: signer.kid }) })
    .sign(signer.key)
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

/** The `sub` field of an endpoint's answer (see WHO). */
const subOf = (res: ClientResponse): unknown => (res.body as { sub?: unknown }).sub

/** What an endpoint answers: the upstream's value and every field of `auth`. */
const WHO = `
    response:
      data: "\${data}"
      method: "\${auth.method}"
      sub: "\${auth.sub}"
      scopes: "\${auth.scopes}"
      roles: "\${auth.roles}"
      name: "\${auth.claims.name}"`

const endpoint = (key: string, extra = ''): string => `
  ${key}:${extra}
    calls:
      data: { request: GET svc /data }${WHO}`

interface Options {
  /** gateway.auth, as a YAML flow mapping. */
  auth?: string
  /** The endpoints block; default GET /x. */
  endpoints?: string
  /** More keys of the service, e.g. `headers: { … }`. */
  service?: string
  env?: Record<string, string>
}

function yaml(svc: Stub, o: Options): string {
  return `
version: 1
gateway:
  name: ${REALM}
${o.auth === undefined ? '' : `  auth: ${o.auth}\n`}services:
  # Each client request makes its own call here (these tests count them); coalescing is test/coalesce.test.ts's.
  svc: { url: "${svc.url}", coalesce: false${o.service === undefined ? '' : `, ${o.service}`} }
endpoints:${o.endpoints ?? endpoint('GET /x')}
`
}

/** A service stub answering GET /data, and a gateway in front of it. */
async function start(t: TestContext, o: Options): Promise<{ svc: Stub; url: string }> {
  const svc = await stubFor(t)
  svc.route('GET /data', json({ n: 1 }))
  const gateway = await startGateway(t, yaml(svc, o), { env: { JWT_SECRET: SECRET, ...o.env } })
  return { svc, url: gateway.url }
}

/** Like startGateway, but compiled as `dir/baton.yaml`, so that relative file names resolve in `dir`. */
async function startIn(t: TestContext, dir: string, text: string): Promise<string> {
  const { plan } = compileText(join(dir, 'baton.yaml'), text, { env: {} })
  const gateway = createGateway(plan)
  t.after(() => gateway.close())
  return (await gateway.listen({ port: 0, host: '127.0.0.1' })).url
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-auth-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A 401 INVALID_TOKEN with its RFC 6750 challenge; the service saw only the `served` requests before it. */
function assertInvalidToken(res: ClientResponse, svc: Stub, description: string, served = 0): void {
  assertError(res, 401, 'INVALID_TOKEN', `The access token is not valid: ${description}`)
  assert.equal(
    res.headers['www-authenticate'],
    `Bearer realm="${REALM}", error="invalid_token", error_description="${description}"`,
  )
  assert.equal(svc.requests.length, served, 'a rejected request reached the service')
}

const JWT_HS = '{ jwt: { secret: "${env.JWT_SECRET}" } }'

describe('JWT: a valid token reaches the endpoint as `auth`', () => {
  test('HS256 with a secret from the environment: sub, claims, scopes and method in the response', async (t) => {
    const { svc, url } = await start(t, { auth: JWT_HS })
    const res = await get(`${url}/x`, bearer(await mint(HS, { sub: 'ada', name: 'Ada Lovelace', scope: 'read write' })))
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, {
      data: { n: 1 },
      method: 'jwt',
      sub: 'ada',
      scopes: ['read', 'write'],
      roles: [],
      name: 'Ada Lovelace',
    })
    assert.equal(svc.requests.length, 1)
  })

  test('`auth.claims` is the whole payload', async (t) => {
    const { url } = await start(t, {
      auth: JWT_HS,
      endpoints: `
  GET /claims:
    response: { claims: "\${auth.claims}", tenant: "\${auth.claims.org.tenant}" }`,
    })
    const iat = now()
    const res = await get(
      `${url}/claims`,
      bearer(await mint(HS, { sub: 'ada', iat, exp: iat + 60, org: { tenant: 't-9' } })),
    )
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { claims: { sub: 'ada', iat, exp: iat + 60, org: { tenant: 't-9' } }, tenant: 't-9' })
  })

  test('the scheme name is case-insensitive', async (t) => {
    const { url } = await start(t, { auth: JWT_HS })
    const res = await get(`${url}/x`, { authorization: `bearer ${await mint(HS)}` })
    assert.equal(res.status, 200)
    assert.equal(subOf(res), 'user-1')
  })

  test("claims reach a service through a call's headers and through the service's headers", async (t) => {
    const { svc, url } = await start(t, {
      auth: JWT_HS,
      service: 'headers: { x-user: "${auth.sub}", x-static: fixed }',
      endpoints: `
  GET /x:
    calls:
      data:
        request: GET svc /data
        headers: { x-tenant: "\${auth.claims.tenant}", x-scopes: "\${auth.scopes}" }${WHO}`,
    })
    const res = await get(`${url}/x`, bearer(await mint(HS, { sub: 'ada', tenant: 'acme', scope: 'read' })))
    assert.equal(res.status, 200)
    const seen = svc.requestsTo('GET /data')
    assert.equal(seen.length, 1)
    assert.equal(seen[0]?.headers['x-user'], 'ada')
    assert.equal(seen[0]?.headers['x-static'], 'fixed')
    assert.equal(seen[0]?.headers['x-tenant'], 'acme')
    assert.equal(seen[0]?.headers['x-scopes'], '["read"]')
    // The client's token itself is not passed on: authorization is not forwarded.
    assert.equal(seen[0]?.headers.authorization, undefined)
    // Per request: another caller, another header.
    await get(`${url}/x`, bearer(await mint(HS, { sub: 'bob', tenant: 'umbrella' })))
    assert.equal(svc.requests[1]?.headers['x-user'], 'bob')
    assert.equal(svc.requests[1]?.headers['x-tenant'], 'umbrella')
  })

  test('RS256 with a PEM public key from the environment', async (t) => {
    const { svc, url } = await start(t, {
      auth: '{ jwt: { publicKey: "${env.PUBLIC_KEY}" } }',
      env: { PUBLIC_KEY: RSA_PEM },
    })
    const ok = await get(`${url}/x`, bearer(await mint(RS, { sub: 'rs-user' })))
    assert.equal(ok.status, 200)
    assert.equal(subOf(ok), 'rs-user')
    assert.equal(svc.requests.length, 1)
    // Another RSA key of the same algorithm: the signature does not verify.
    const rogueToken = await mint({ alg: 'RS256', key: rogue.privateKey })
    assertInvalidToken(await get(`${url}/x`, bearer(rogueToken)), svc, 'the signature does not verify', 1)
  })

  test('ES256 with publicKeyFile, relative to the config file', async (t) => {
    const dir = tempDir(t)
    writeFileSync(join(dir, 'issuer.pem'), EC_PEM)
    const svc = await stubFor(t)
    svc.route('GET /data', json({ n: 1 }))
    const url = await startIn(
      t,
      dir,
      yaml(svc, { auth: '{ jwt: { publicKeyFile: issuer.pem, algorithms: [ES256] } }' }),
    )
    const res = await get(`${url}/x`, bearer(await mint({ alg: 'ES256', key: ec.privateKey }, { sub: 'es-user' })))
    assert.equal(res.status, 200)
    assert.equal(subOf(res), 'es-user')
    // The RSA token is refused: ES256 is the only algorithm accepted.
    const rs = await get(`${url}/x`, bearer(await mint(RS)))
    assertError(rs, 401, 'INVALID_TOKEN', "The access token is not valid: the token's algorithm is not accepted")
    assert.equal(svc.requests.length, 1)
  })

  test('ES256 with an absolute publicKeyFile', async (t) => {
    const dir = tempDir(t)
    const file = join(dir, 'issuer.pem')
    writeFileSync(file, EC_PEM)
    const { url } = await start(t, { auth: `{ jwt: { publicKeyFile: "${file}" } }` })
    const res = await get(`${url}/x`, bearer(await mint({ alg: 'ES256', key: ec.privateKey })))
    assert.equal(res.status, 200)
  })

  test('EdDSA (Ed25519), under both of its algorithm names', async (t) => {
    const { svc, url } = await start(t, {
      auth: '{ jwt: { publicKey: "${env.PUBLIC_KEY}" } }',
      env: { PUBLIC_KEY: ED_PEM },
    })
    for (const alg of ['EdDSA', 'Ed25519']) {
      const res = await get(`${url}/x`, bearer(await mint({ alg, key: ed.privateKey }, { sub: alg })))
      assert.equal(res.status, 200, alg)
      assert.equal(subOf(res), alg)
    }
    assert.equal(svc.requests.length, 2)
  })
})

describe('JWKS', () => {
  const jwk = async (key: CryptoKey, kid: string): Promise<JWK> => ({
    ...(await exportJWK(key)),
    kid,
    alg: 'ES256',
    use: 'sig',
  })

  /** An identity provider serving `keys` (changeable) at /jwks.json, and a gateway trusting it. */
  async function withIdp(t: TestContext, jwks = ''): Promise<{ idp: Stub; svc: Stub; url: string; keys: JWK[] }> {
    const idp = await stubFor(t)
    const keys: JWK[] = []
    idp.route('GET /jwks.json', () => json({ keys }))
    const { svc, url } = await start(t, { auth: `{ jwt: { jwksUrl: "${idp.url}/jwks.json"${jwks} } }` })
    return { idp, svc, url, keys }
  }

  test('a token is verified with the key its kid names; the key set is fetched once for many requests', async (t) => {
    const { idp, svc, url, keys } = await withIdp(t)
    const other = await generateKeyPair('ES256')
    keys.push(await jwk(other.publicKey, 'k0'), await jwk(ec.publicKey, 'k1'))
    const signer: Signer = { alg: 'ES256', key: ec.privateKey, kid: 'k1' }
    // Concurrent requests on a cold cache share one fetch.
    const first = await Promise.all(
      Array.from({ length: 5 }, async (_, i) => await get(`${url}/x`, bearer(await mint(signer, { sub: `u${i}` })))),
    )
    assert.deepEqual(
      first.map((r) => r.status),
      [200, 200, 200, 200, 200],
    )
    assert.deepEqual(first.map(subOf), ['u0', 'u1', 'u2', 'u3', 'u4'])
    for (let i = 0; i < 3; i++) assert.equal((await get(`${url}/x`, bearer(await mint(signer)))).status, 200)
    assert.equal(idp.requestsTo('GET /jwks.json').length, 1)
    assert.equal(svc.requests.length, 8)
    // A known kid does not make a foreign signature valid.
    const forged = await get(`${url}/x`, bearer(await mint({ alg: 'ES256', key: ec.privateKey, kid: 'k0' })))
    assertError(forged, 401, 'INVALID_TOKEN', 'The access token is not valid: the signature does not verify')
    assert.equal(svc.requests.length, 8)
    assert.equal(idp.requestsTo('GET /jwks.json').length, 1)
  })

  test('an unknown kid refetches the key set once (rotation); another within the cooldown does not', async (t) => {
    const { idp, svc, url, keys } = await withIdp(t, ', jwks: { cooldown: 600ms }')
    keys.push(await jwk(ec.publicKey, 'old'))
    assert.equal(
      (await get(`${url}/x`, bearer(await mint({ alg: 'ES256', key: ec.privateKey, kid: 'old' })))).status,
      200,
    )
    assert.equal(idp.requestsTo('GET /jwks.json').length, 1)

    // The issuer rotates its key; the cooldown since the first fetch has passed.
    const rotated = await generateKeyPair('ES256')
    keys.splice(0, keys.length, await jwk(rotated.publicKey, 'new'))
    await sleep(700)
    const res = await get(
      `${url}/x`,
      bearer(await mint({ alg: 'ES256', key: rotated.privateKey, kid: 'new' }, { sub: 'after-rotation' })),
    )
    assert.equal(res.status, 200)
    assert.equal(subOf(res), 'after-rotation')
    assert.equal(idp.requestsTo('GET /jwks.json').length, 2)

    // Right after that fetch: an unknown kid is refused without asking the issuer again.
    const unknown = await generateKeyPair('ES256')
    const refused = await get(`${url}/x`, bearer(await mint({ alg: 'ES256', key: unknown.privateKey, kid: 'unknown' })))
    assertInvalidToken(refused, svc, "no key matches the token's kid", 2)
    assert.equal(idp.requestsTo('GET /jwks.json').length, 2)
  })

  /** A 503 AUTH_UNAVAILABLE: not the client's fault, so no challenge, and a Retry-After. */
  const assertUnavailable = (res: ClientResponse, svc: Stub, problem: string): void => {
    assertError(res, 503, 'AUTH_UNAVAILABLE', `The token cannot be checked right now: ${problem}`)
    assert.equal(res.headers['retry-after'], '1')
    assert.equal(res.headers['www-authenticate'], undefined)
    assert.equal(svc.requests.length, 0)
  }

  test('a JWKS endpoint that refuses connections: 503 AUTH_UNAVAILABLE', async (t) => {
    const port = await closedPort()
    const { svc, url } = await start(t, { auth: `{ jwt: { jwksUrl: "http://127.0.0.1:${port}/jwks.json" } }` })
    const res = await get(`${url}/x`, bearer(await mint({ alg: 'ES256', key: ec.privateKey, kid: 'k1' })))
    assertUnavailable(res, svc, 'the key set cannot be fetched')
  })

  test('a JWKS endpoint slower than jwks.timeout: 503 AUTH_UNAVAILABLE', async (t) => {
    const idp = await stubFor(t)
    idp.route('GET /jwks.json', hang())
    const { svc, url } = await start(t, {
      auth: `{ jwt: { jwksUrl: "${idp.url}/jwks.json", jwks: { timeout: 200ms } } }`,
    })
    const started = performance.now()
    const res = await get(`${url}/x`, bearer(await mint({ alg: 'ES256', key: ec.privateKey, kid: 'k1' })))
    assertUnavailable(res, svc, 'the key set did not arrive in time')
    // Generous, but under the 2 s default: jwks.timeout was applied.
    assert.ok(performance.now() - started < 1500, 'the JWKS timeout was not applied')
    assert.equal(idp.requestsTo('GET /jwks.json').length, 1)
  })

  test('a JWKS endpoint answering something other than a key set: 503 AUTH_UNAVAILABLE', async (t) => {
    const idp = await stubFor(t)
    idp.route('GET /html/jwks.json', text('<html>login</html>', { headers: { 'content-type': 'text/html' } }))
    idp.route('GET /broken/jwks.json', json({ keys: 'none' }))
    idp.route('GET /error/jwks.json', json({ keys: [] }, { status: 500 }))
    for (const [path, problem] of [
      ['html', 'the key set cannot be fetched'],
      ['broken', 'the key set is malformed'],
      ['error', 'the key set cannot be fetched'],
    ] as const) {
      const { svc, url } = await start(t, { auth: `{ jwt: { jwksUrl: "${idp.url}/${path}/jwks.json" } }` })
      const res = await get(`${url}/x`, bearer(await mint({ alg: 'ES256', key: ec.privateKey, kid: 'k1' })))
      assertUnavailable(res, svc, problem)
    }
    assert.equal(idp.requests.length, 3)
  })
})

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

describe('rejected tokens: 401 INVALID_TOKEN with the reason, and no upstream call', () => {
  const ISSUER = 'https://id.example.com'
  const AUDIENCE = 'shop-bff'
  const RS_STRICT = `{ jwt: { publicKey: "\${env.PUBLIC_KEY}", issuer: ${ISSUER}, audience: ${AUDIENCE}, clockTolerance: 30s, maxAge: 10m } }`
  const good = { iss: ISSUER, aud: AUDIENCE }

  const startStrict = async (t: TestContext): Promise<{ svc: Stub; url: string }> =>
    await start(t, { auth: RS_STRICT, env: { PUBLIC_KEY: RSA_PEM } })

  test('the well-formed token passes (the baseline of every case below)', async (t) => {
    const { svc, url } = await startStrict(t)
    const res = await get(`${url}/x`, bearer(await mint(RS, good)))
    assert.equal(res.status, 200)
    assert.equal(svc.requests.length, 1)
  })

  test('exp in the past, but within clockTolerance: accepted', async (t) => {
    const { url } = await startStrict(t)
    const res = await get(`${url}/x`, bearer(await mint(RS, { ...good, iat: now() - 120, exp: now() - 15 })))
    assert.equal(res.status, 200)
  })

  const cases: { name: string; token: () => string | Promise<string>; description: string }[] = [
    {
      name: 'alg none',
      token: () => {
        const header = base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }))
        const payload = base64url.encode(JSON.stringify({ sub: 'admin', ...good, iat: now(), exp: now() + 300 }))
        return `${header}.${payload}.`
      },
      description: "the token's algorithm is not accepted",
    },
    {
      // Key confusion: the public key (which attackers have) used as an HMAC secret.
      name: 'HS256 signed with the RSA public key as the secret',
      token: async () => await mint({ alg: 'HS256', key: encoder.encode(RSA_PEM) }, { sub: 'admin', ...good }),
      description: "the token's algorithm is not accepted",
    },
    {
      name: 'expired beyond clockTolerance',
      token: async () => await mint(RS, { ...good, iat: now() - 300, exp: now() - 60 }),
      description: 'the token has expired',
    },
    {
      name: 'not valid yet (nbf in the future)',
      token: async () => await mint(RS, { ...good, nbf: now() + 120 }),
      description: 'the token is not valid yet',
    },
    {
      name: 'issued in the future',
      token: async () => await mint(RS, { ...good, iat: now() + 120 }),
      description: 'the token was issued in the future',
    },
    {
      name: 'older than maxAge',
      token: async () => await mint(RS, { ...good, iat: now() - 3600 }),
      description: 'the token was issued too long ago',
    },
    {
      name: 'wrong issuer',
      token: async () => await mint(RS, { ...good, iss: 'https://evil.example.com' }),
      description: 'unexpected iss claim',
    },
    {
      name: 'wrong audience',
      token: async () => await mint(RS, { ...good, aud: 'another-api' }),
      description: 'unexpected aud claim',
    },
    {
      name: 'no sub claim',
      token: async () => await mint(RS, { ...good, sub: undefined }),
      description: 'the token has no sub claim',
    },
    {
      name: 'tampered payload',
      token: async () => {
        const [header, , signature] = (await mint(RS, { ...good, sub: 'user-1' })).split('.')
        const payload = base64url.encode(JSON.stringify({ ...good, sub: 'admin', iat: now(), exp: now() + 300 }))
        return `${header}.${payload}.${signature}`
      },
      description: 'the signature does not verify',
    },
    {
      name: 'signed by another key',
      token: async () => await mint({ alg: 'RS256', key: rogue.privateKey }, good),
      description: 'the signature does not verify',
    },
    { name: 'garbage', token: () => 'not-a-jwt', description: 'the token is malformed' },
    { name: 'three garbage parts', token: () => 'abc.def.ghi', description: 'the token is malformed' },
  ]
  for (const c of cases) {
    test(c.name, async (t) => {
      const { svc, url } = await startStrict(t)
      assertInvalidToken(await get(`${url}/x`, bearer(await c.token())), svc, c.description)
    })
  }

  test('HS256 signed with the PEM is refused even when the config accepts only RS256', async (t) => {
    const { svc, url } = await start(t, {
      auth: '{ jwt: { publicKey: "${env.PUBLIC_KEY}", algorithms: [RS256] } }',
      env: { PUBLIC_KEY: RSA_PEM },
    })
    assertInvalidToken(
      await get(`${url}/x`, bearer(await mint({ alg: 'HS256', key: encoder.encode(RSA_PEM) }))),
      svc,
      "the token's algorithm is not accepted",
    )
  })

  // The default algorithms of a static key are its own type's, so another type's token is refused
  // before any crypto runs; an error of the crypto itself would be INVALID_TOKEN too, never a 503.
  test('a token of an asymmetric algorithm that does not fit the key: 401, not 503', async (t) => {
    const { svc, url } = await start(t, {
      auth: '{ jwt: { publicKey: "${env.PUBLIC_KEY}" } }',
      env: { PUBLIC_KEY: RSA_PEM },
    })
    for (const signer of [
      { alg: 'ES256', key: ec.privateKey },
      { alg: 'EdDSA', key: ed.privateKey },
    ]) {
      const res = await get(`${url}/x`, bearer(await mint(signer)))
      assert.equal(res.status, 401, `${signer.alg}: ${JSON.stringify(res.body)}`)
      assert.equal((res.body as { error: { code: unknown } }).error.code, 'INVALID_TOKEN')
      assert.match(
        res.headers['www-authenticate'] ?? '',
        /^Bearer realm="Shop BFF", error="invalid_token", error_description="[^"]+"$/,
      )
    }
    assert.equal(svc.requests.length, 0)
  })
})

describe('API keys and scopes', () => {
  test('an API key on an endpoint that demands a scope: 403 without a Bearer challenge (an API key cannot get one)', async (t) => {
    const auth =
      '{ jwt: { secret: "${env.JWT_SECRET}" }, apiKey: { header: x-api-key, keys: { mobile: "${env.MOBILE_KEY}" } }, scopes: [orders] }'
    const { svc, url } = await start(t, { auth, env: { MOBILE_KEY: 'k-mobile' } })
    const res = await get(`${url}/x`, { 'x-api-key': 'k-mobile' })
    assertError(res, 403, 'FORBIDDEN', 'Missing scope: orders')
    assert.equal(res.headers['www-authenticate'], undefined)
    assert.equal(svc.requests.length, 0)
  })
})

describe('missing credentials: 401 UNAUTHENTICATED with a challenge per accepted method', () => {
  const BOTH =
    '{ jwt: { secret: "${env.JWT_SECRET}" }, apiKey: { header: x-api-key, keys: { mobile: "${env.MOBILE_KEY}" } } }'

  test('JWT only: a Bearer challenge', async (t) => {
    const { svc, url } = await start(t, { auth: JWT_HS })
    for (const headers of [
      {},
      { authorization: 'Basic dXNlcjpwYXNz' },
      { authorization: 'Bearer' },
      { authorization: 'Token abc' },
      { 'x-api-key': 'k' },
    ]) {
      const res = await get(`${url}/x`, headers)
      assertError(res, 401, 'UNAUTHENTICATED', 'Credentials are required')
      assert.equal(res.headers['www-authenticate'], `Bearer realm="${REALM}"`, JSON.stringify(headers))
    }
    assert.equal(svc.requests.length, 0)
  })

  test('JWT and API keys: both challenges; Basic credentials count as none', async (t) => {
    const { svc, url } = await start(t, { auth: BOTH, env: { MOBILE_KEY: 'mobile-key-1' } })
    for (const headers of [{}, { authorization: 'Basic dXNlcjpwYXNz' }]) {
      const res = await get(`${url}/x`, headers)
      assertError(res, 401, 'UNAUTHENTICATED', 'Credentials are required')
      assert.equal(
        res.headers['www-authenticate'],
        `Bearer realm="${REALM}", ApiKey realm="${REALM}", header="x-api-key"`,
      )
    }
    assert.equal(svc.requests.length, 0)
    // Either one is enough.
    assert.equal((await get(`${url}/x`, bearer(await mint(HS)))).status, 200)
    assert.equal((await get(`${url}/x`, { 'x-api-key': 'mobile-key-1' })).status, 200)
    // Basic alongside a valid key: the key is used.
    assert.equal(
      (await get(`${url}/x`, { authorization: 'Basic dXNlcjpwYXNz', 'x-api-key': 'mobile-key-1' })).status,
      200,
    )
    assert.equal(svc.requests.length, 3)
  })

  test('gateway.auth.realm names the realm, without characters that would break the header', async (t) => {
    const { url } = await start(t, { auth: '{ realm: "api \\"v2\\"\\t ✓\\\\", jwt: { secret: "${env.JWT_SECRET}" } }' })
    const res = await get(`${url}/x`)
    assert.equal(res.headers['www-authenticate'], 'Bearer realm="api v2 "')
    const bad = await get(`${url}/x`, bearer('garbage'))
    assert.equal(
      bad.headers['www-authenticate'],
      'Bearer realm="api v2 ", error="invalid_token", error_description="the token is malformed"',
    )
  })
})

describe('scopes and roles: 403 FORBIDDEN', () => {
  const AUTH = '{ jwt: { secret: "${env.JWT_SECRET}", rolesClaim: realm_access.roles }, scopes: [read] }'
  const ENDPOINTS =
    endpoint('GET /x') +
    endpoint('GET /admin', '\n    auth: { scopes: [admin, write] }') +
    endpoint('GET /staff', '\n    auth: { roles: [staff, manager] }')

  const assertForbidden = (res: ClientResponse, message: string, challenge: string | undefined): void => {
    assertError(res, 403, 'FORBIDDEN', message)
    assert.equal(res.headers['www-authenticate'], challenge)
  }

  test('gateway.auth.scopes applies to every endpoint that does not set its own', async (t) => {
    const { svc, url } = await start(t, { auth: AUTH, endpoints: ENDPOINTS })
    assertForbidden(
      await get(`${url}/x`, bearer(await mint(HS))),
      'Missing scope: read',
      `Bearer realm="${REALM}", error="insufficient_scope", scope="read"`,
    )
    assertForbidden(
      await get(`${url}/x`, bearer(await mint(HS, { scope: 'reader write' }))),
      'Missing scope: read',
      `Bearer realm="${REALM}", error="insufficient_scope", scope="read"`,
    )
    assert.equal(svc.requests.length, 0)
    const ok = await get(`${url}/x`, bearer(await mint(HS, { scope: 'profile read' })))
    assert.equal(ok.status, 200)
    assert.deepEqual((ok.body as { scopes: unknown }).scopes, ['profile', 'read'])
    assert.equal(svc.requests.length, 1)
  })

  test("an endpoint's scopes replace the default, and every one of them is needed", async (t) => {
    const { svc, url } = await start(t, { auth: AUTH, endpoints: ENDPOINTS })
    const challenge = `Bearer realm="${REALM}", error="insufficient_scope", scope="admin write"`
    assertForbidden(
      await get(`${url}/admin`, bearer(await mint(HS, { scope: 'read' }))),
      'Missing scopes: admin write',
      challenge,
    )
    assertForbidden(
      await get(`${url}/admin`, bearer(await mint(HS, { scope: 'read admin' }))),
      'Missing scope: write',
      challenge,
    )
    assert.equal(svc.requests.length, 0)
    // Without `read`: the endpoint's list replaces the gateway's.
    assert.equal((await get(`${url}/admin`, bearer(await mint(HS, { scope: 'write admin' })))).status, 200)
  })

  test('scopes as a list, and in an scp claim', async (t) => {
    const { url } = await start(t, { auth: AUTH, endpoints: ENDPOINTS })
    const listed = await get(`${url}/admin`, bearer(await mint(HS, { scope: ['admin', 'write'] })))
    assert.equal(listed.status, 200)
    assert.deepEqual((listed.body as { scopes: unknown }).scopes, ['admin', 'write'])
    const scp = await get(`${url}/admin`, bearer(await mint(HS, { scp: ['write', 'admin'] })))
    assert.equal(scp.status, 200)
    assert.deepEqual((scp.body as { scopes: unknown }).scopes, ['write', 'admin'])
    assert.equal((await get(`${url}/admin`, bearer(await mint(HS, { scp: 'admin write' })))).status, 200)
  })

  test('a configured scopesClaim is read instead of scope', async (t) => {
    const { url } = await start(t, {
      auth: '{ jwt: { secret: "${env.JWT_SECRET}", scopesClaim: permissions }, scopes: [read] }',
    })
    assert.equal((await get(`${url}/x`, bearer(await mint(HS, { permissions: ['read'] })))).status, 200)
    assertForbidden(
      await get(`${url}/x`, bearer(await mint(HS, { scope: 'read', permissions: [] }))),
      'Missing scope: read',
      `Bearer realm="${REALM}", error="insufficient_scope", scope="read"`,
    )
  })

  test('roles, read at a dotted path: any one of them suffices', async (t) => {
    const { svc, url } = await start(t, { auth: AUTH, endpoints: ENDPOINTS })
    for (const roles of [['manager'], ['guest', 'staff']]) {
      const res = await get(`${url}/staff`, bearer(await mint(HS, { scope: 'read', realm_access: { roles } })))
      assert.equal(res.status, 200, roles.join())
      assert.deepEqual((res.body as { roles: unknown }).roles, roles)
    }
    assert.equal(svc.requests.length, 2)
    for (const claims of [
      { realm_access: { roles: ['guest'] } },
      { roles: ['staff'] },
      { realm_access: 'staff' },
      {},
    ]) {
      const res = await get(`${url}/staff`, bearer(await mint(HS, { scope: 'read', ...claims })))
      assertForbidden(res, 'Requires one of the roles: staff, manager', undefined)
    }
    // The endpoint sets roles only: the gateway's scopes still apply.
    assertForbidden(
      await get(`${url}/staff`, bearer(await mint(HS, { realm_access: { roles: ['staff'] } }))),
      'Missing scope: read',
      `Bearer realm="${REALM}", error="insufficient_scope", scope="read"`,
    )
    assert.equal(svc.requests.length, 2)
  })
})

describe('API keys', () => {
  const WHO_KEY = { data: { n: 1 }, method: 'apiKey', scopes: [], roles: [], name: null }

  test("in a header, from the environment: auth.sub is the key's name", async (t) => {
    const { svc, url } = await start(t, {
      auth: '{ apiKey: { header: X-Api-Key, keys: { mobile: "${env.MOBILE_KEY}", web: "${env.WEB_KEY}" } } }',
      service: 'headers: { x-client: "${auth.sub}" }',
      env: { MOBILE_KEY: 'm-0123456789', WEB_KEY: 'w-9876543210' },
    })
    const mobile = await get(`${url}/x`, { 'x-api-key': 'm-0123456789' })
    assert.equal(mobile.status, 200)
    assert.deepEqual(mobile.body, { ...WHO_KEY, sub: 'mobile' })
    const web = await get(`${url}/x`, { 'X-API-KEY': 'w-9876543210' })
    assert.deepEqual(web.body, { ...WHO_KEY, sub: 'web' })
    assert.deepEqual(
      svc.requests.map((r) => r.headers['x-client']),
      ['mobile', 'web'],
    )

    const challenge = `ApiKey realm="${REALM}", header="x-api-key"`
    for (const wrong of ['m-012345678', 'm-0123456789-', 'M-0123456789', 'w-9876543210x', 'mobile']) {
      const res = await get(`${url}/x`, { 'x-api-key': wrong })
      assertError(res, 401, 'INVALID_API_KEY', 'The API key is not valid')
      assert.equal(res.headers['www-authenticate'], challenge, wrong)
    }
    const missing = await get(`${url}/x`, { authorization: 'Bearer m-0123456789' })
    assertError(missing, 401, 'UNAUTHENTICATED', 'Credentials are required')
    assert.equal(missing.headers['www-authenticate'], challenge)
    assert.equal(svc.requests.length, 2)
  })

  test('in the query, from a keys file (name: key lines, comments, bare keys), relative to the config', async (t) => {
    const dir = tempDir(t)
    writeFileSync(
      join(dir, 'keys.txt'),
      [
        '# partners',
        'partner-a: key-aaa-111',
        '',
        '   # indented comment: not-a-key',
        '  bare-key-222  ',
        'partner-b:key-bbb-333',
      ].join('\n'),
    )
    const svc = await stubFor(t)
    svc.route('GET /data', json({ n: 1 }))
    const url = await startIn(t, dir, yaml(svc, { auth: '{ apiKey: { query: api_key, keysFile: keys.txt } }' }))
    for (const [key, sub] of [
      ['key-aaa-111', 'partner-a'],
      ['bare-key-222', 'key-5'],
      ['key-bbb-333', 'partner-b'],
    ]) {
      const res = await get(`${url}/x?api_key=${key}`)
      assert.equal(res.status, 200, key)
      assert.deepEqual(res.body, { ...WHO_KEY, sub }, key)
    }
    assert.equal(svc.requests.length, 3)
    const challenge = `ApiKey realm="${REALM}", query="api_key"`
    for (const wrong of ['# partners', 'partner-a', 'not-a-key', 'partner-a: key-aaa-111']) {
      const res = await get(`${url}/x?api_key=${encodeURIComponent(wrong)}`)
      assertError(res, 401, 'INVALID_API_KEY', 'The API key is not valid')
      assert.equal(res.headers['www-authenticate'], challenge, wrong)
    }
    // The key in a header does not count when the query is configured.
    const header = await get(`${url}/x`, { api_key: 'key-aaa-111', 'x-api-key': 'key-aaa-111' })
    assertError(header, 401, 'UNAUTHENTICATED', 'Credentials are required')
    assert.equal(header.headers['www-authenticate'], challenge)
    assert.equal(svc.requests.length, 3)
  })

  test('an endpoint that accepts only JWTs refuses an API key', async (t) => {
    const { svc, url } = await start(t, {
      auth: '{ jwt: { secret: "${env.JWT_SECRET}" }, apiKey: { header: x-api-key, keys: { mobile: "${env.MOBILE_KEY}" } } }',
      env: { MOBILE_KEY: 'mobile-key-1' },
      endpoints:
        endpoint('GET /x', '\n    auth: { methods: [jwt] }') + endpoint('GET /k', '\n    auth: { methods: [apiKey] }'),
    })
    const res = await get(`${url}/x`, { 'x-api-key': 'mobile-key-1' })
    assertError(res, 401, 'UNAUTHENTICATED', 'Credentials are required')
    assert.equal(res.headers['www-authenticate'], `Bearer realm="${REALM}"`)
    const keyOnly = await get(`${url}/k`, bearer(await mint(HS)))
    assertError(keyOnly, 401, 'UNAUTHENTICATED', 'Credentials are required')
    assert.equal(keyOnly.headers['www-authenticate'], `ApiKey realm="${REALM}", header="x-api-key"`)
    assert.equal(svc.requests.length, 0)
    assert.equal((await get(`${url}/x`, bearer(await mint(HS)))).status, 200)
    assert.equal((await get(`${url}/k`, { 'x-api-key': 'mobile-key-1' })).status, 200)
  })
})

describe('public endpoints', () => {
  test('`auth: public` asks for nothing, and auth is null in expressions', async (t) => {
    const { svc, url } = await start(t, {
      auth: JWT_HS,
      service: 'headers: { x-user: "${auth.sub}" }',
      endpoints:
        endpoint('GET /x') +
        `
  GET /open:
    auth: public
    calls:
      data: { request: GET svc /data }
    response: { data: "\${data}", auth: "\${auth}", sub: "\${auth.sub}", name: "\${auth.claims.name}" }`,
    })
    for (const headers of [{}, bearer('garbage'), bearer(await mint(HS, { name: 'Ada' }))]) {
      const res = await get(`${url}/open`, headers)
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { data: { n: 1 }, auth: null, sub: null, name: null })
    }
    assert.equal(svc.requests.length, 3)
    assert.ok(svc.requests.every((r) => r.headers['x-user'] === undefined))
    // The neighbour is still guarded.
    assertError(await get(`${url}/x`), 401, 'UNAUTHENTICATED', 'Credentials are required')
    assert.equal(svc.requests.length, 3)
  })

  test('an endpoint that demands auth while gateway.auth is missing is a config error', () => {
    const text = `version: 1
gateway: { name: Shop BFF }
endpoints:
  GET /open:
    auth: public
    response: {}
  GET /closed:
    auth: { scopes: [read] }
    response: {}
`
    assert.deepEqual(diagnose(text), [
      {
        severity: 'error',
        code: 'BATON_AUTH_NOT_CONFIGURED',
        line: 8,
        col: 5,
        path: 'endpoints › GET /closed › auth',
        message: 'this endpoint demands credentials but gateway.auth is not set',
      },
    ])
  })
})

interface Found {
  severity: string
  code: string
  line: number | undefined
  col: number | undefined
  path: string
  message: string
}

/** Every diagnostic of `text` compiled as baton.yaml (errors come from ConfigError). */
function diagnose(text: string, env: Record<string, string> = {}, mode: 'serve' | 'check' | 'dev' = 'serve'): Found[] {
  return diagnosticsOf(text, { env, mode }).map((d) => ({
    severity: d.severity,
    code: d.code,
    line: d.line,
    col: d.col,
    path: d.path.join(' › '),
    message: d.message,
  }))
}

describe('config diagnostics', () => {
  const gateway = (auth: string): string => `version: 1
gateway:
  name: Shop BFF
  auth:
${auth}`
  const ENV = { JWT_SECRET: SECRET, PUB: RSA_PEM }

  test('scopes on an endpoint that takes API keys only: a config error, since it could never be reached', () => {
    const found = diagnose(
      gateway(`    apiKey:
      header: x-api-key
      keys: { mobile: "\${env.MOBILE_KEY}" }
    scopes: [orders]
endpoints:
  GET /x: {}
`),
      { MOBILE_KEY: 'k' },
    )
    assert.deepEqual(
      found.map((d) => `${d.severity} ${d.code} ${d.path} ${d.message}`),
      [
        'error BATON_AUTH_CONFIG gateway › auth scopes and roles come from JWTs; an endpoint that takes API keys only can never grant them',
      ],
    )
  })

  test('a scope that could not travel in a token or a challenge (a space, a quote)', () => {
    const found = diagnose(
      gateway(`    jwt: { secret: "\${env.JWT_SECRET}" }
    scopes: ["orders write", 'say"hi"', orders:write]
`),
      ENV,
    )
    assert.deepEqual(
      found.map((d) => `${d.severity} ${d.code} ${d.line}:${d.col} ${d.path}`),
      [
        'error BATON_INVALID_VALUE 6:14 gateway › auth › scopes › 0',
        'error BATON_INVALID_VALUE 6:30 gateway › auth › scopes › 1',
      ],
    )
  })

  test('jwt with two key sources', () => {
    assert.deepEqual(
      diagnose(
        gateway(`    jwt:
      secret: \${env.JWT_SECRET}
      publicKey: \${env.PUB}
`),
        ENV,
      ),
      [
        {
          severity: 'error',
          code: 'BATON_AUTH_CONFIG',
          line: 5,
          col: 5,
          path: 'gateway › auth › jwt',
          message: 'jwt has secret and publicKey: give exactly one key source',
        },
      ],
    )
  })

  test('jwt without a key', () => {
    assert.deepEqual(
      diagnose(
        gateway(`    jwt:
      issuer: https://id.example.com
`),
        ENV,
      ),
      [
        {
          severity: 'error',
          code: 'BATON_AUTH_CONFIG',
          line: 5,
          col: 5,
          path: 'gateway › auth › jwt',
          message: 'jwt needs a key',
        },
      ],
    )
  })

  test('auth with no method at all', () => {
    assert.deepEqual(
      diagnose(
        gateway(`    scopes: [read]
`),
        ENV,
      ),
      [
        {
          severity: 'error',
          code: 'BATON_AUTH_CONFIG',
          line: 4,
          col: 3,
          path: 'gateway › auth',
          message: 'gateway.auth names no way to authenticate',
        },
      ],
    )
  })

  test('HS algorithms with a public key, and RS algorithms with a secret', () => {
    assert.deepEqual(
      diagnose(
        gateway(`    jwt:
      publicKey: \${env.PUB}
      algorithms: [RS256, HS256, HS512]
`),
        ENV,
      ),
      [
        {
          severity: 'error',
          code: 'BATON_AUTH_CONFIG',
          line: 7,
          col: 19,
          path: 'gateway › auth › jwt › algorithms',
          message: 'algorithms HS256, HS512 do not fit this public key',
        },
      ],
    )
    assert.deepEqual(
      diagnose(
        gateway(`    jwt:
      secret: \${env.JWT_SECRET}
      algorithms: [HS256, RS256]
`),
        ENV,
      ),
      [
        {
          severity: 'error',
          code: 'BATON_AUTH_CONFIG',
          line: 7,
          col: 19,
          path: 'gateway › auth › jwt › algorithms',
          message: 'algorithm RS256 does not fit a shared secret',
        },
      ],
    )
  })

  test('a public key that does not parse', () => {
    const found = diagnose(
      gateway(`    jwt:
      publicKey: \${env.PUB}
`),
      { PUB: '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n' },
    )
    assert.equal(found.length, 1)
    assert.deepEqual(
      { ...found[0], message: undefined },
      {
        severity: 'error',
        code: 'BATON_INVALID_KEY',
        line: 6,
        col: 18,
        path: 'gateway › auth › jwt › publicKey',
        message: undefined,
      },
    )
    assert.match(found[0]?.message ?? '', /^the JWT public key does not parse: /)
  })

  // jose refuses RSA keys under 2048 bits when it verifies: caught when the config is checked instead.
  test('an RSA public key shorter than 2048 bits is reported', () => {
    const pem = generateKeyPairSync('rsa', { modulusLength: 1024 })
      .publicKey.export({ type: 'spki', format: 'pem' })
      .toString()
    const found = diagnose(
      gateway(`    jwt:
      publicKey: \${env.PUB}
`),
      { PUB: pem },
    )
    assert.deepEqual(
      found.map((d) => `${d.severity} ${d.code} ${d.line}:${d.col} ${d.path}`),
      ['error BATON_INVALID_KEY 6:18 gateway › auth › jwt › publicKey'],
    )
  })

  test('a publicKeyFile or keysFile that cannot be read', () => {
    const found = diagnose(
      gateway(`    jwt:
      publicKeyFile: keys/missing.pem
    apiKey:
      header: x-api-key
      keysFile: /nonexistent/keys.txt
`),
    )
    assert.deepEqual(found, [
      {
        severity: 'error',
        code: 'BATON_FILE',
        line: 6,
        col: 22,
        path: 'gateway › auth › jwt › publicKeyFile',
        message: `cannot read ${join(process.cwd(), 'keys/missing.pem')}: ENOENT`,
      },
      {
        severity: 'error',
        code: 'BATON_FILE',
        line: 9,
        col: 17,
        path: 'gateway › auth › apiKey › keysFile',
        message: 'cannot read /nonexistent/keys.txt: ENOENT',
      },
    ])
  })

  test('apiKey with both header and query, or with neither', () => {
    const keys = '      keys: { mobile: "${env.MOBILE_KEY}" }\n'
    const error = {
      severity: 'error',
      code: 'BATON_AUTH_CONFIG',
      line: 5,
      col: 5,
      path: 'gateway › auth › apiKey',
      message: 'apiKey needs exactly one of header and query',
    }
    assert.deepEqual(
      diagnose(
        gateway(`    apiKey:
      header: x-api-key
      query: api_key
${keys}`),
        { MOBILE_KEY: 'm' },
      ),
      [error],
    )
    assert.deepEqual(
      diagnose(
        gateway(`    apiKey:
${keys}`),
        { MOBILE_KEY: 'm' },
      ),
      [error],
    )
  })

  test('apiKey without keys', () => {
    assert.deepEqual(
      diagnose(
        gateway(`    apiKey: { header: x-api-key }
`),
      ),
      [
        {
          severity: 'error',
          code: 'BATON_AUTH_CONFIG',
          line: 5,
          col: 5,
          path: 'gateway › auth › apiKey',
          message: 'apiKey has no keys',
        },
      ],
    )
  })

  test('a secret or API key written in the file: a warning, and the config still compiles', () => {
    const literal = 'x'.repeat(40)
    const text = gateway(`    jwt:
      secret: ${literal}
    apiKey:
      header: x-api-key
      keys:
        mobile: m-0123456789
`)
    assert.deepEqual(diagnose(text), [
      {
        severity: 'warning',
        code: 'BATON_SECRET_IN_CONFIG',
        line: 6,
        col: 15,
        path: 'gateway › auth › jwt › secret',
        message: 'the JWT secret is written in the config file',
      },
      {
        severity: 'warning',
        code: 'BATON_SECRET_IN_CONFIG',
        line: 10,
        col: 17,
        path: 'gateway › auth › apiKey › keys › mobile',
        message: "API key 'mobile' is written in the config file",
      },
    ])
    assert.doesNotThrow(() => compileText('baton.yaml', text, { env: {} }))
  })

  test('a short secret: a warning', () => {
    assert.deepEqual(
      diagnose(
        gateway(`    jwt:
      secret: \${env.JWT_SECRET}
`),
        { JWT_SECRET: 'short-secret' },
      ),
      [
        {
          severity: 'warning',
          code: 'BATON_WEAK_SECRET',
          line: 6,
          col: 15,
          path: 'gateway › auth › jwt › secret',
          message: 'the JWT secret is 12 bytes; HS256 wants at least 32',
        },
      ],
    )
    // 32 bytes is enough.
    assert.deepEqual(
      diagnose(
        gateway(`    jwt:
      secret: \${env.JWT_SECRET}
`),
        { JWT_SECRET: 'k'.repeat(32) },
      ),
      [],
    )
  })

  test('secrets and keys the environment leaves empty: errors when serving, warnings when checking', () => {
    const text = gateway(`    jwt:
      secret: \${env.JWT_SECRET}
    apiKey:
      header: x-api-key
      keys: { mobile: "\${env.MOBILE_KEY}" }
`)
    const unset = (line: number, col: number, name: string, path: string): Found => ({
      severity: 'warning',
      code: 'BATON_ENV_UNSET',
      line,
      col,
      path,
      message: `environment variable ${name} is not set`,
    })
    assert.deepEqual(diagnose(text, {}, 'serve'), [
      unset(6, 15, 'JWT_SECRET', 'gateway › auth › jwt › secret'),
      {
        severity: 'error',
        code: 'BATON_AUTH_CONFIG',
        line: 6,
        col: 15,
        path: 'gateway › auth › jwt › secret',
        message: 'the JWT secret is empty',
      },
      {
        severity: 'error',
        code: 'BATON_AUTH_CONFIG',
        line: 7,
        col: 5,
        path: 'gateway › auth › apiKey',
        message: 'apiKey has no keys: the variables or file it reads are empty',
      },
      unset(9, 23, 'MOBILE_KEY', 'gateway › auth › apiKey › keys › mobile'),
    ])
    assert.deepEqual(diagnose(text, {}, 'check'), [
      unset(6, 15, 'JWT_SECRET', 'gateway › auth › jwt › secret'),
      unset(9, 23, 'MOBILE_KEY', 'gateway › auth › apiKey › keys › mobile'),
    ])
    // baton dev stands in a random secret, and says so.
    assert.deepEqual(
      diagnose(text, {}, 'dev').map((d) => `${d.severity} ${d.code} ${d.path}`),
      [
        'warning BATON_ENV_UNSET gateway › auth › jwt › secret',
        'warning BATON_DEV_SECRET gateway › auth › jwt › secret',
        'warning BATON_DEV_SECRET gateway › auth › apiKey',
        'warning BATON_ENV_UNSET gateway › auth › apiKey › keys › mobile',
      ],
    )
    const publicKey = gateway(`    jwt:
      publicKey: \${env.PUB}
`)
    assert.deepEqual(
      diagnose(publicKey, {}, 'serve').filter((d) => d.severity === 'error'),
      [
        {
          severity: 'error',
          code: 'BATON_AUTH_CONFIG',
          line: 6,
          col: 18,
          path: 'gateway › auth › jwt › publicKey',
          message: 'the JWT public key is empty',
        },
      ],
    )
    assert.deepEqual(
      diagnose(publicKey, {}, 'check').filter((d) => d.severity === 'error'),
      [],
    )
  })

  test('an endpoint naming a method gateway.auth does not configure', () => {
    assert.deepEqual(
      diagnose(
        `${gateway(`    jwt: { secret: "\${env.JWT_SECRET}" }
`)}endpoints:
  GET /x:
    auth: { methods: [jwt, apiKey] }
    response: {}
`,
        ENV,
      ),
      [
        {
          severity: 'error',
          code: 'BATON_AUTH_NOT_CONFIGURED',
          line: 8,
          col: 28,
          path: 'endpoints › GET /x › auth › methods › 1',
          message: 'apiKey is not configured in gateway.auth',
        },
      ],
    )
  })

  test('reading a field auth does not have, in a response or in a service header', () => {
    const found = diagnose(
      `${gateway(`    jwt: { secret: "\${env.JWT_SECRET}" }
`)}services:
  svc: { url: "http://svc.local", headers: { x-user: "\${auth.subject}" } }
endpoints:
  GET /x:
    calls:
      data: { request: GET svc /data }
    response: { who: "\${auth.nope}", ok: "\${auth.claims.nope}" }
`,
      ENV,
    )
    assert.deepEqual(found, [
      {
        severity: 'error',
        code: 'BATON_UNKNOWN_FIELD',
        line: 7,
        col: 57,
        path: 'services › svc › headers › x-user',
        message: "auth has no field 'subject'",
      },
      {
        severity: 'error',
        code: 'BATON_UNKNOWN_FIELD',
        line: 12,
        col: 25,
        path: 'endpoints › GET /x › response › who',
        message: "auth has no field 'nope'",
      },
    ])
  })
})

test('metrics: requests turned away are counted by endpoint and reason', async (t) => {
  const { svc, url } = await start(t, { auth: '{ jwt: { secret: "${env.JWT_SECRET}" }, scopes: [read] }' })
  assertError(await get(`${url}/x`), 401, 'UNAUTHENTICATED', 'Credentials are required')
  assertError(await get(`${url}/x`, bearer(await mint(HS))), 403, 'FORBIDDEN', 'Missing scope: read')
  assert.equal(svc.requests.length, 0)
  const res = await fetch(`${url}/metrics`)
  assert.equal(res.status, 200)
  const lines = (await res.text()).split('\n').filter((l) => l.startsWith('baton_requests_rejected_total{'))
  assert.deepEqual(lines.sort(), [
    'baton_requests_rejected_total{method="GET",route="/x",reason="forbidden"} 1',
    'baton_requests_rejected_total{method="GET",route="/x",reason="unauthenticated"} 1',
  ])
})

describe('verified tokens are remembered, never beyond what they allow', () => {
  test('a token sent again is taken from the cache until its exp, then refused as expired', async (t) => {
    const { svc, url } = await start(t, { auth: '{ jwt: { secret: "${env.JWT_SECRET}", clockTolerance: 0 } }' })
    // At least 1.5 s ahead: `now() + 1` is a few ms away when the second is nearly over, and the token expired before the first request (a flaky 401).
    const exp = Math.ceil(Date.now() / 1000 + 1.5)
    const token = await mint(HS, { exp })
    for (let i = 0; i < 3; i++) assert.equal((await get(`${url}/x`, bearer(token))).status, 200)
    await sleep(exp * 1000 + 100 - Date.now())
    assertInvalidToken(await get(`${url}/x`, bearer(token)), svc, 'the token has expired', 3)
  })

  test('a token that differs from a remembered one by one character is verified, and refused', async (t) => {
    const { svc, url } = await start(t, { auth: JWT_HS })
    const token = await mint(HS)
    assert.equal((await get(`${url}/x`, bearer(token))).status, 200)
    const [head, payload, signature] = token.split('.') as [string, string, string]
    const flipped = `${head}.${payload}.${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BA' : 'AA'}`
    assertInvalidToken(await get(`${url}/x`, bearer(flipped)), svc, 'the signature does not verify', 1)
  })

  test('with a JWKS, a remembered token stops working once its key has left the set and jwks.cacheFor has passed', async (t) => {
    const idp = await stubFor(t)
    let keys: JWK[] = [{ ...(await exportJWK(ec.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }]
    idp.route('GET /jwks.json', () => json({ keys }))
    const { svc, url } = await start(t, {
      auth: `{ jwt: { jwksUrl: "${idp.url}/jwks.json", jwks: { cacheFor: 300ms, cooldown: 0ms } } }`,
    })
    const token = await mint({ alg: 'ES256', key: ec.privateKey, kid: 'k1' })
    assert.equal((await get(`${url}/x`, bearer(token))).status, 200)
    keys = [] // the issuer revokes k1
    assert.equal((await get(`${url}/x`, bearer(token))).status, 200) // still within cacheFor
    await sleep(400)
    assertInvalidToken(await get(`${url}/x`, bearer(token)), svc, "no key matches the token's kid", 2)
  })

  test('jwt.cacheSize: 0 verifies every time (an expired token is refused at once, as with the cache)', async (t) => {
    const { svc, url } = await start(t, {
      auth: '{ jwt: { secret: "${env.JWT_SECRET}", cacheSize: 0, clockTolerance: 0 } }',
    })
    // At least 1.5 s ahead: `now() + 1` is a few ms away when the second is nearly over, and the token expired before the first request (a flaky 401).
    const exp = Math.ceil(Date.now() / 1000 + 1.5)
    const token = await mint(HS, { exp })
    assert.equal((await get(`${url}/x`, bearer(token))).status, 200)
    await sleep(exp * 1000 + 100 - Date.now())
    assertInvalidToken(await get(`${url}/x`, bearer(token)), svc, 'the token has expired', 1)
  })
})

describe('baton dev', () => {
  test('with the JWT secret unset, a random one stands in, and the printed token opens every endpoint (scopes, nested roles, issuer, audience)', async (t) => {
    const svc = await stubFor(t)
    svc.route('GET /data', json({ n: 1 }))
    const { plan, diagnostics } = compileText(
      'baton.yaml',
      `version: 1
gateway:
  name: Dev
  auth:
    jwt: { secret: "\${env.UNSET_SECRET}", issuer: https://auth.test, audience: shop, rolesClaim: realm_access.roles }
    scopes: [read]
services:
  svc: { url: "${svc.url}" }
endpoints:
  GET /x:
    calls: { data: { request: GET svc /data } }
  GET /admin:
    auth: { scopes: [admin], roles: [ops] }
    calls: { data: { request: GET svc /data } }
    response: { sub: "\${auth.sub}", roles: "\${auth.roles}", scopes: "\${auth.scopes}" }
`,
      { env: {}, mode: 'dev' },
    )
    assert.ok(diagnostics.some((d) => d.code === 'BATON_DEV_SECRET'))
    const token = await devToken(plan)
    assert.ok(token !== null)
    const gateway = createGateway(plan)
    t.after(() => gateway.close())
    const { url } = await gateway.listen({ port: 0, host: '127.0.0.1' })
    assert.equal((await get(`${url}/x`, { authorization: `Bearer ${token}` })).status, 200)
    const admin = await get(`${url}/admin`, { authorization: `Bearer ${token}` })
    assert.deepEqual(
      { status: admin.status, body: admin.body },
      { status: 200, body: { sub: 'dev-user', roles: ['ops'], scopes: ['read', 'admin'] } },
    )
    // Another run's secret is another secret: a token from one run does not open the next.
    const next = compileText(
      'baton.yaml',
      `version: 1
gateway: { name: Dev, auth: { jwt: { secret: "\${env.UNSET_SECRET}" } } }
`,
      { env: {}, mode: 'dev' },
    ).plan
    assert.notEqual(await devToken(next), null)
    assert.notEqual(next.edge.auth?.jwt?.secret, plan.edge.auth?.jwt?.secret)
  })

  test("no token to print when the gateway's JWTs are not HS-signed", async () => {
    const { plan } = compileText(
      'baton.yaml',
      `version: 1
gateway: { name: Dev, auth: { jwt: { jwksUrl: "https://auth.test/jwks.json" } } }
`,
      { env: {}, mode: 'dev' },
    )
    assert.equal(await devToken(plan), null)
  })
})

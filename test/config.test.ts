/** `baton check`: each config mistake is reported at file:line:col with a hint, all at once. */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { jsonSchema } from '../src/config/schema.ts'
import { parseConfig } from '../src/config/load.ts'
import type { Diagnostic } from '../src/errors.ts'
import { compileConfig } from '../src/plan/compile.ts'
import type { GatewayPlan } from '../src/plan/types.ts'
import { diagnosticsOf } from './helpers/config.ts'

function diagnose(text: string, env: Record<string, string> = {}): Diagnostic[] {
  return diagnosticsOf(text, { env })
}

interface Found {
  code: string
  line: number | undefined
  col: number | undefined
  message: string
  hint: string | undefined
  path: string
}

function errors(text: string): Found[] {
  return diagnose(text)
    .filter((d) => d.severity === 'error')
    .map((d) => ({
      code: d.code,
      line: d.line,
      col: d.col,
      message: d.message,
      hint: d.hint,
      path: d.path.join(' › '),
    }))
}

const base = (endpoints: string, services = 'cart: { url: "http://cart.local", timeout: 200ms }'): string => `version: 1
gateway: { name: Test }
services:
  ${services}
endpoints:
${endpoints}`

describe('config validation', () => {
  it('accepts both examples', () => {
    for (const file of ['examples/checkout/baton.yaml', 'examples/dashboard/baton.yaml']) {
      const result = compileConfig(parseConfig(file, readFileSync(file, 'utf8')), { env: {}, mode: 'check' })
      assert.deepEqual(
        result.diagnostics.filter((d) => d.severity === 'error'),
        [],
      )
      assert.ok(result.plan)
    }
  })

  it('reports an unknown key with its position and a did-you-mean', () => {
    const found = errors(`version: 1
gateway:
  name: Test
  prot: 8080
`)
    assert.deepEqual(found, [
      {
        code: 'BATON_UNKNOWN_KEY',
        line: 4,
        col: 3,
        message: "unknown key 'prot'",
        hint: "did you mean 'port'?",
        path: 'gateway › prot',
      },
    ])
  })

  it('reports a bad duration', () => {
    const [d] = errors(
      base(`  GET /a:
    timeout: 2 seconds
    calls: {}`),
    )
    assert.equal(d?.code, 'BATON_INVALID_VALUE')
    assert.equal(d?.line, 7)
    assert.equal(d?.col, 14)
    assert.match(d?.hint ?? '', /200ms, 2s/)
  })

  it('reports an unknown service, pointing at its name in the request', () => {
    const [d] = errors(
      base(`  GET /a:
    calls:
      c: { request: GET crat /x }`),
    )
    assert.equal(d?.code, 'BATON_UNKNOWN_SERVICE')
    assert.deepEqual([d?.line, d?.col], [8, 25])
    assert.equal(d?.hint, "did you mean 'cart'?")
  })

  it('reports a reference to a call that does not exist', () => {
    const [d] = errors(
      base(`  GET /a:
    calls:
      cart: { request: GET cart /x }
    response: { n: "\${carts.items}" }`),
    )
    assert.equal(d?.code, 'BATON_EXPRESSION')
    assert.match(d?.message ?? '', /carts/)
    assert.match(d?.hint ?? '', /cart/)
    assert.equal(d?.line, 9)
  })

  it('reports a reference to an unknown root field of the request', () => {
    const [d] = errors(
      base(`  GET /a:
    calls:
      cart: { request: "GET cart /x/\${request.bdy.id}" }`),
    )
    assert.equal(d?.code, 'BATON_UNKNOWN_FIELD')
    assert.equal(d?.hint, "did you mean 'body'?")
  })

  it('names the calls of a dependency cycle', () => {
    const [d] = errors(
      base(`  GET /a:
    calls:
      a: { request: "GET cart /a/\${b.id}" }
      b: { request: "GET cart /b/\${a.id}" }`),
    )
    assert.equal(d?.code, 'BATON_CYCLE')
    assert.match(d?.message ?? '', /a → b → a/)
    assert.deepEqual([d?.line, d?.col], [8, 7])
  })

  it('reports routes that collide', () => {
    const [d] = errors(
      base(`  GET /users/{id}: {}
  GET /users/{name}: {}`),
    )
    assert.equal(d?.code, 'BATON_DUPLICATE_ROUTE')
    assert.deepEqual([d?.line, d?.col], [7, 3])
  })

  it('reports a path parameter that the route does not declare', () => {
    const [d] = errors(
      base(`  GET /users:
    calls:
      cart: { request: "GET cart /carts/\${request.params.id}" }`),
    )
    assert.equal(d?.code, 'BATON_UNKNOWN_PARAM')
    assert.match(d?.message ?? '', /'id' is not declared in 'GET \/users'/)
    assert.match(d?.hint ?? '', /GET \/users\/\{id\}/)
    assert.equal(d?.line, 8)
  })

  it('reports an unparseable expression at its column', () => {
    const [d] = errors(
      base(`  GET /a:
    calls:
      cart: { request: GET cart /x }
    response:
      total: "\${cart.total +}"`),
    )
    assert.equal(d?.code, 'BATON_EXPRESSION')
    assert.equal(d?.line, 10)
    assert.ok((d?.col ?? 0) > 14, `column ${d?.col} should point inside the expression`)
  })

  it('reports a duplicate key in the YAML itself', () => {
    const [d] = errors(
      base(`  GET /a: {}
  GET /a: {}`),
    )
    assert.equal(d?.code, 'BATON_DUPLICATE_KEY')
    assert.equal(d?.line, 7)
  })

  it('rejects hop-by-hop and reserved headers', () => {
    const found = errors(
      base(
        '  GET /a: {}',
        `cart: { url: "http://cart.local", forwardHeaders: [accept-language, connection], headers: { host: x } }`,
      ),
    )
    assert.deepEqual(
      found.map((d) => d.code),
      ['BATON_FORBIDDEN_HEADER', 'BATON_FORBIDDEN_HEADER'],
    )
  })

  it('reports every error at once, in file order', () => {
    const found = errors(`version: 1
gateway: { name: Test, basePath: v1 }
services:
  cart: { url: "ftp://cart.local", timeout: soon }
endpoints:
  GET /a:
    calls:
      c: { request: "GET cart /x", requird: true }
`)
    assert.deepEqual(
      found.map((d) => [d.code, d.line]),
      [
        ['BATON_INVALID_VALUE', 2],
        ['BATON_INVALID_URL', 4],
        ['BATON_INVALID_VALUE', 4],
        ['BATON_UNKNOWN_KEY', 8],
      ],
    )
  })

  it('reads JSON configs with positions too', () => {
    const text = '{\n  "version": 1,\n  "gateway": { "name": "J", "prot": 1 }\n}\n'
    const [d] = compileConfig(parseConfig('baton.json', text)).diagnostics
    assert.deepEqual([d?.code, d?.file, d?.line, d?.col], ['BATON_UNKNOWN_KEY', 'baton.json', 3, 29])
  })

  it('warns about services that nothing calls', () => {
    const warnings = diagnose(base('  GET /a: {}')).filter((d) => d.severity === 'warning')
    assert.deepEqual(
      warnings.map((d) => d.code),
      ['BATON_UNUSED_SERVICE'],
    )
  })

  it('substitutes environment variables in service URLs', () => {
    const { plan } = compileConfig(
      parseConfig(
        'x.yaml',
        base('  GET /a: { calls: { c: { request: GET cart /x } } }', 'cart: { url: "${env.CART_URL}/api" }'),
      ),
      { env: { CART_URL: 'http://10.0.0.1:81' } },
    )
    assert.equal(plan?.services[0]?.origin, 'http://10.0.0.1:81')
    assert.equal(plan?.services[0]?.pathPrefix, '/api')
  })
})

/** Every diagnostic of `text`, errors and warnings, as `baton check` reports them. */
function reported(text: string): (Found & { severity: string })[] {
  return diagnose(text).map((d) => ({
    severity: d.severity,
    code: d.code,
    line: d.line,
    col: d.col,
    message: d.message,
    hint: d.hint,
    path: d.path.join(' › '),
  }))
}

describe('durations: 0 and negatives are refused where they make no sense', () => {
  const POSITIVE = 'must be more than 0: write a duration like 200ms, 2s, 1.5m or 1h'

  it('gateway.timeout: 0, a call timeout of "0s", an endpoint timeout of 0.0s, a negative service timeout', () => {
    const found = reported(`version: 1
gateway: { name: Test, timeout: 0 }
services:
  cart: { url: "http://cart.local", timeout: -200 }
endpoints:
  GET /a:
    timeout: 0.0s
    calls:
      c: { request: GET cart /x, timeout: "0s" }
`).filter((d) => d.severity === 'error')
    assert.deepEqual(found, [
      {
        severity: 'error',
        code: 'BATON_INVALID_VALUE',
        line: 2,
        col: 33,
        message: 'invalid value 0',
        hint: POSITIVE,
        path: 'gateway › timeout',
      },
      {
        severity: 'error',
        code: 'BATON_INVALID_VALUE',
        line: 4,
        col: 46,
        message: 'invalid value -200',
        hint: POSITIVE,
        path: 'services › cart › timeout',
      },
      {
        severity: 'error',
        code: 'BATON_INVALID_VALUE',
        line: 7,
        col: 14,
        message: 'invalid value "0.0s"',
        hint: POSITIVE,
        path: 'endpoints › GET /a › timeout',
      },
      {
        severity: 'error',
        code: 'BATON_INVALID_VALUE',
        line: 9,
        col: 43,
        message: 'invalid value "0s"',
        hint: POSITIVE,
        path: 'endpoints › GET /a › calls › c › timeout',
      },
    ])
  })

  it('every duration where 0 means nothing: timeouts, windows, intervals, caches, alerts, retryAfter', () => {
    const found = reported(`version: 1
gateway:
  name: Test
  retryAfter: 0
  auth: { jwt: { secret: "\${env.S}", maxAge: 0, jwks: { cacheFor: 0, timeout: 0 } } }
  rateLimit: { perIp: 10/s, redis: { timeout: 0 } }
services:
  cart:
    url: http://cart.local
    latency: 0
    retry: { attempts: 1, maxDelay: 0 }
    circuitBreaker: { failures: 1, window: 0, openFor: 0 }
    health: { path: /h, interval: 0, timeout: 0 }
    alerts: { errorRate: 5%, window: 0 }
    auth: { oauth2: { tokenUrl: "http://a.local/t", clientId: c, clientSecret: s, timeout: 0 } }
endpoints:
  GET /a:
    alerts: { p99: 0, window: 0 }
    calls:
      c: { request: GET cart /x }
`).filter((d) => d.code === 'BATON_INVALID_VALUE')
    assert.deepEqual(
      found.map((d) => [d.path, d.hint]),
      [
        'gateway › retryAfter',
        'gateway › auth › jwt › maxAge',
        'gateway › auth › jwt › jwks › cacheFor',
        'gateway › auth › jwt › jwks › timeout',
        'gateway › rateLimit › redis › timeout',
        'services › cart › latency',
        'services › cart › retry › maxDelay',
        'services › cart › circuitBreaker › window',
        'services › cart › circuitBreaker › openFor',
        'services › cart › health › interval',
        'services › cart › health › timeout',
        'services › cart › alerts › window',
        'services › cart › auth › oauth2 › timeout',
        'endpoints › GET /a › alerts › p99',
        'endpoints › GET /a › alerts › window',
      ].map((path) => [path, POSITIVE]),
    )
  })

  it('0 where it means something: no client timeouts, no leeway, no JWKS cooldown, no preflight cache, no delay', () => {
    const text = `version: 1
gateway:
  name: Test
  clientTimeouts: { headers: 0, body: 0ms }
  auth: { jwt: { jwksUrl: "http://idp.local/jwks", clockTolerance: 0, jwks: { cooldown: 0s } } }
  cors: { origins: ["https://app.example.com"], maxAge: 0 }
services:
  cart:
    url: http://cart.local
    retry: { attempts: 1, delay: 0 }
    auth: { oauth2: { tokenUrl: "http://a.local/t", clientId: c, clientSecret: s, refreshBefore: 0 } }
    mock: { "GET /x": { latency: 0 } }
endpoints:
  GET /a:
    calls:
      c: { request: GET cart /x }
`
    assert.deepEqual(
      reported(text).filter((d) => d.severity === 'error'),
      [],
    )
    const { plan } = compileConfig(parseConfig('baton.yaml', text), { env: { S: 'x' } })
    assert.deepEqual(plan?.edge.clientTimeouts, { headers: 0, body: 0 })
    assert.equal(plan?.edge.cors?.maxAge, 0)
  })

  it('a negative duration is refused even where 0 is allowed', () => {
    const [d] = reported(`version: 1
gateway: { name: Test, clientTimeouts: { headers: -1 } }
`)
    assert.deepEqual(d, {
      severity: 'error',
      code: 'BATON_INVALID_VALUE',
      line: 2,
      col: 51,
      message: 'invalid value -1',
      hint: 'a duration cannot be negative',
      path: 'gateway › clientTimeouts › headers',
    })
  })
})

describe('forwardHeaders', () => {
  it("'*' is not a wildcard: an error at the '*', with a hint to list the headers", () => {
    const found = reported(
      base(
        '  GET /a: { calls: { c: { request: GET cart /x } } }',
        `cart: { url: "http://cart.local", forwardHeaders: [accept-language, '*'] }`,
      ),
    )
    assert.deepEqual(found, [
      {
        severity: 'error',
        code: 'BATON_INVALID_VALUE',
        line: 4,
        col: 71,
        message: 'invalid value "*"',
        hint: 'forwardHeaders names each header (* is not a wildcard: nothing is forwarded unless listed); write them out, e.g. [accept-language, x-tenant-id]',
        path: 'services › cart › forwardHeaders › 1',
      },
    ])
  })
})

describe('gateway.drainTimeout', () => {
  const drain = (value: string): string => `version: 1
gateway:
  name: Test
  drainTimeout: ${value}
`

  it('a value that is not a duration, or over 1h, is an error at its place, with a hint', () => {
    for (const [value, hint] of [
      ['soon', 'write a duration like 200ms, 2s, 1.5m or 1h (a bare number means milliseconds)'],
      ['2h', 'a drain timeout is at most 1h'],
      ['3600001', 'a drain timeout is at most 1h'],
      ['[5s]', 'write a duration like 200ms, 2s, 1.5m or 1h (a bare number means milliseconds)'],
    ] as const) {
      assert.deepEqual(
        errors(drain(value)).map((d) => [d.code, d.line, d.col, d.path, d.hint]),
        [['BATON_INVALID_VALUE', 4, 17, 'gateway › drainTimeout', hint]],
        value,
      )
    }
    assert.equal(errors(drain('-1s'))[0]?.code, 'BATON_INVALID_VALUE')
  })

  it('defaults to the longest endpoint timeout + 1s (the gateway timeout + 1s without endpoints); 0 and 1h are allowed', () => {
    const planOf = (text: string): GatewayPlan => {
      const { plan } = compileConfig(parseConfig('baton.yaml', text), { env: {} })
      assert.ok(plan)
      return plan
    }
    const endpoints = `endpoints:
  GET /a: { timeout: 2500ms, calls: {} }
  GET /b: { calls: {} }
`
    assert.equal(planOf(drain('1h')).drainTimeout, 3_600_000)
    assert.equal(planOf(drain('0')).drainTimeout, 0)
    assert.equal(planOf('version: 1\ngateway: { name: T }\n').drainTimeout, 6000)
    assert.equal(planOf(`version: 1\ngateway: { name: T, timeout: 1s }\n${endpoints}`).drainTimeout, 3500)
    assert.equal(planOf(`version: 1\ngateway: { name: T, timeout: 4s }\n${endpoints}`).drainTimeout, 5000)
    assert.equal(planOf(`version: 1\ngateway: { name: T, drainTimeout: 20s }\n${endpoints}`).drainTimeout, 20_000)
  })
})

describe('cache durations written as bare numbers', () => {
  it('a warning at each, saying it is milliseconds and how to write seconds; with a unit, none', () => {
    const found = reported(`version: 1
gateway: { name: Test }
services:
  catalog: { url: "http://catalog.local", timeout: 1s, cache: { ttl: 30 } }
endpoints:
  GET /product/{id}:
    cache: { ttl: 300, staleWhileRevalidate: 60s, staleIfError: 600, partialTtl: 0 }
    calls:
      product: { request: "GET catalog /products/\${request.params.id}", cache: { ttl: 5 } }
      price: { request: "GET catalog /prices/\${request.params.id}", cache: { ttl: 5ms } }
    response: { product: "\${product}", price: "\${price}" }
  GET /other:
    cache: { ttl: 300s, staleIfError: 1500ms }
    calls:
      p: { request: GET catalog /p }
    response: "\${p}"
`)
    assert.deepEqual(found, [
      {
        severity: 'warning',
        code: 'BATON_CACHE_UNIT',
        line: 4,
        col: 70,
        message: 'ttl: 30 is 30 ms: a bare number is milliseconds',
        hint: 'write 30s if you meant seconds (as max-age, Redis and CDNs count), or 30ms to say milliseconds',
        path: 'services › catalog › cache › ttl',
      },
      {
        severity: 'warning',
        code: 'BATON_CACHE_UNIT',
        line: 7,
        col: 19,
        message: 'ttl: 300 is 300 ms: a bare number is milliseconds',
        hint: 'write 300s if you meant seconds (as max-age, Redis and CDNs count), or 300ms to say milliseconds',
        path: 'endpoints › GET /product/{id} › cache › ttl',
      },
      {
        severity: 'warning',
        code: 'BATON_CACHE_UNIT',
        line: 7,
        col: 65,
        message: 'staleIfError: 600 is 600 ms: a bare number is milliseconds',
        hint: 'write 600s if you meant seconds (as max-age, Redis and CDNs count), or 600ms to say milliseconds',
        path: 'endpoints › GET /product/{id} › cache › staleIfError',
      },
      {
        severity: 'warning',
        code: 'BATON_CACHE_UNIT',
        line: 9,
        col: 87,
        message: 'ttl: 5 is 5 ms: a bare number is milliseconds',
        hint: 'write 5s if you meant seconds (as max-age, Redis and CDNs count), or 5ms to say milliseconds',
        path: 'endpoints › GET /product/{id} › calls › product › cache › ttl',
      },
    ])
  })
})

describe('a cached answer that may depend on what its key leaves out', () => {
  const keyWarnings = (text: string): [number | undefined, number | undefined, string, string | undefined][] =>
    reported(text)
      .filter((d) => d.code === 'BATON_CACHE_KEY')
      .map((d) => [d.line, d.col, d.message, d.hint])

  it('the caller under scope public, a header or a query parameter outside the key, a forwarded header: a warning at each, once', () => {
    assert.deepEqual(
      keyWarnings(`version: 1
gateway: { name: Test, auth: { jwt: { secret: "\${env.JWT_SECRET}" } } }
services:
  catalog: { url: "http://catalog.local", timeout: 1s, forwardHeaders: [accept-language, x-tenant] }
endpoints:
  GET /product/{id}:
    auth: public
    cache: { ttl: 60s, key: { query: [lang], headers: [x-tenant] } }
    calls:
      product:
        request: "GET catalog /products/\${request.params.id}"
        query: { page: "\${request.query.page}", lang: "\${request.query.lang}" }
    response: { p: "\${product}", who: "\${auth.sub ?? 'anon'}", again: "\${auth.sub}", ua: "\${request.headers['user-agent']}" }
`),
      [
        [
          8,
          5,
          "the answer may depend on the client's accept-language header (a service forwards it: forwardHeaders), which the cache key leaves out: every caller would get the first one's variant",
          'add accept-language to cache.key.headers (then an entry is kept per value, and Vary says so)',
        ],
        [
          12,
          27,
          "the answer may depend on request.query.page, which the cache key leaves out: every caller would get the first one's answer, whatever their query",
          'add page to cache.key.query',
        ],
        [
          13,
          42,
          "the answer may depend on auth.sub, which the cache key leaves out: scope: public serves one entry to every caller, so each would get the first caller's answer",
          'use scope: user (one entry per caller), or keep the caller out of the calls and the answer',
        ],
        [
          13,
          93,
          "the answer may depend on request.headers['user-agent'], which the cache key leaves out: every caller would get the first one's variant",
          'add user-agent to cache.key.headers (then an entry is kept per value, and Vary says so)',
        ],
      ],
    )
  })

  it('none when the key covers what is read: scope user for the caller, the whole query, the listed headers; nor for what only a tag reads, nor for the request id and trace context', () => {
    assert.deepEqual(
      keyWarnings(`version: 1
gateway: { name: Test, auth: { jwt: { secret: "\${env.JWT_SECRET}" } } }
services:
  catalog: { url: "http://catalog.local", timeout: 1s, forwardHeaders: [accept-language, x-request-id, traceparent] }
endpoints:
  GET /mine:
    cache: { ttl: 60s, scope: user, key: { headers: [accept-language, x-tenant] }, tags: ["user:\${auth.sub}"] }
    calls:
      me: { request: "GET catalog /me/\${auth.sub}", query: { page: "\${request.query.page}" } }
    response: { me: "\${me}", tenant: "\${request.headers['x-tenant']}", id: "\${request.headers['x-request-id']}" }
  GET /catalog/{id}:
    auth: public
    cache: { ttl: 60s, tags: ["who:\${auth.sub ?? 'anon'}", "lang:\${request.headers['accept-language']}"] }
    calls:
      item: { request: "GET catalog /items/\${request.params.id}" }
    response: "\${item}"
`),
      [
        [
          13,
          5,
          "the answer may depend on the client's accept-language header (a service forwards it: forwardHeaders), which the cache key leaves out: every caller would get the first one's variant",
          'add accept-language to cache.key.headers (then an entry is kept per value, and Vary says so)',
        ],
      ],
    )
  })
})

describe('a value of the wrong form: the hint is the key’s own description', () => {
  it('none of a union’s forms (key.query: a word), the wrong type (a number for a service cache): what the key takes', () => {
    const found = errors(`version: 1
gateway: { name: Test }
services:
  catalog: { url: "http://catalog.local", timeout: 1s, cache: 5 }
endpoints:
  GET /product/{id}:
    cache: { ttl: 60s, key: { query: lang } }
    calls:
      product: { request: "GET catalog /products/\${request.params.id}" }
    response: "\${product}"
`)
    assert.deepEqual(
      found.map((d) => [d.code, d.line, d.col, d.message, d.hint]),
      [
        [
          'BATON_INVALID_VALUE',
          4,
          63,
          'expected object, got 5',
          'Per-call cache of the GET/HEAD calls to this service, in memory (a call may say otherwise): { ttl: 30s } or { honor: true }; maxSize bounds it.',
        ],
        [
          'BATON_INVALID_VALUE',
          7,
          38,
          'invalid value "lang"',
          'Query parameters in the key: true (all, the default), false (none), or a list of names.',
        ],
      ],
    )
  })
})

describe('JSON Schema', () => {
  it('schema/baton.schema.json is generated from the validator (run `npm run schema` after changing src/config/schema.ts)', () => {
    const committed: unknown = JSON.parse(readFileSync('schema/baton.schema.json', 'utf8'))
    assert.deepEqual(committed, jsonSchema())
  })
})

/**
 * Rate limits at the edge, over real sockets with a real stub upstream: per address (and who
 * the address is behind a proxy), per user, per endpoint, global; the RateLimit headers; the
 * config mistakes `baton check` reports; one limit shared through Redis, and what happens
 * while Redis is away. A request that is turned away never reaches a service.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { SignJWT } from 'jose'
import { type Logger, pino } from 'pino'
import { parseRate } from '../src/config/schema.ts'
import { ConfigError, type Diagnostic } from '../src/errors.ts'
import { compileText } from '../src/plan/compile.ts'
import { diagnosticsOf, errorsOf } from './helpers/config.ts'
import { assertError, type ClientResponse, get, startGateway, stubFor } from './helpers/gateway.ts'
import { freePort, ownRedisFor, redisFor, redisProxyFor, uniquePrefix } from './helpers/redis.ts'
import { fakeClock } from './helpers/resilience.ts'
import { eventually, json, type Stub } from './helpers/stub.ts'
import { logOptions } from '../src/observability/log.ts'

const SECRET = 'baton-rate-limit-tests-hs256-secret-0123456789'
const env = { JWT_SECRET: SECRET }
const RATE_HINT = 'write a rate like 100/min, 10/s, 5000/h or 100/10s (a window of at least 1s)'

const ONE_ENDPOINT = `  GET /x:
    calls:
      x: { request: GET s /x }
`

/**
 * A gateway with `rateLimit` (a YAML flow mapping) and one service on the stub, whose
 * `GET /<name>` answers { name }. `gateway` adds lines under gateway:, each starting "\n  ".
 */
const config = (
  stub: Stub,
  rateLimit: string,
  { gateway = '', endpoints = ONE_ENDPOINT }: { gateway?: string; endpoints?: string } = {},
): string => `
version: 1
gateway:
  name: Limited
  rateLimit: ${rateLimit}${gateway}
services:
  s: { url: "${stub.url}" }
endpoints:
${endpoints}`

async function limitedStub(t: TestContext): Promise<Stub> {
  const stub = await stubFor(t)
  stub.route('GET /:name', (req) => json({ name: req.params.name }))
  return stub
}

/** Requests the stub saw for one path. */
const callsTo = (stub: Stub, path: string): number => stub.requests.filter((r) => r.url === path).length

interface LogLine {
  level: string
  msg: string
  event?: string
  ip?: string
  reason?: string
  [key: string]: unknown
}

/** A pino logger writing every line, parsed, into `lines`. */
function capture(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const logger = pino(logOptions({ format: 'baton', time: 'epoch', level: 'info', service: 'test' }), {
    write: (line: string) => {
      lines.push(JSON.parse(line) as LogLine)
    },
  })
  return { logger, lines }
}

const storeLines = (lines: readonly LogLine[]): string[] =>
  lines.filter((l) => l.event === 'rate_limit_store').map((l) => l.msg)

async function bearer(sub: string): Promise<Record<string, string>> {
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(SECRET))
  return { authorization: `Bearer ${token}` }
}

const via = (chain: string): Record<string, string> => ({ 'x-forwarded-for': chain })

/** Asserts the RateLimit fields: the policies, then the one shown with its remaining count and a reset within the window. */
function assertRateLimit(
  res: ClientResponse,
  policy: string,
  shown: string,
  remaining: number,
  windowSeconds = 60,
): number {
  assert.equal(res.headers['ratelimit-policy'], policy)
  const m = /^"([a-z-]+)";r=(\d+);t=(\d+)$/.exec(res.headers.ratelimit ?? '')
  assert.ok(m !== null, `RateLimit header: ${res.headers.ratelimit}`)
  assert.equal(m[1], shown)
  assert.equal(Number(m[2]), remaining, `remaining in ${res.headers.ratelimit}`)
  const reset = Number(m[3])
  assert.ok(reset >= 1 && reset <= windowSeconds, `reset ${reset}s is not within the ${windowSeconds}s window`)
  return reset
}

const assertNoRateLimit = (res: ClientResponse): void => {
  assert.equal(res.headers.ratelimit, undefined)
  assert.equal(res.headers['ratelimit-policy'], undefined)
}

/** Retry-After: whole seconds within the window. */
function retryAfter(res: ClientResponse, windowSeconds = 60): number {
  const value = res.headers['retry-after'] ?? ''
  assert.match(value, /^\d+$/)
  const seconds = Number(value)
  assert.ok(seconds >= 1 && seconds <= windowSeconds, `Retry-After ${seconds} is not within 1..${windowSeconds}`)
  return seconds
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`)
  assert.equal(res.status, 200)
  return await res.text()
}

/** The value of one series, given its name and labels in exposition order; undefined when absent. */
function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('per address', () => {
  test('perIp 3/min: three pass with RateLimit headers, the fourth is 429 with Retry-After and never reaches the service', async (t) => {
    const stub = await limitedStub(t)
    const { url } = await startGateway(t, config(stub, '{ perIp: 3/min }'))
    for (const remaining of [2, 1, 0]) {
      const res = await get(`${url}/x`)
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { x: { name: 'x' } })
      assertRateLimit(res, '"per-ip";q=3;w=60', 'per-ip', remaining)
    }
    for (let i = 0; i < 2; i++) {
      const res = await get(`${url}/x`)
      assertError(res, 429, 'RATE_LIMITED', 'Too many requests (per-ip limit of 3 per minute)')
      const reset = assertRateLimit(res, '"per-ip";q=3;w=60', 'per-ip', 0)
      assert.equal(retryAfter(res), reset, 'Retry-After and the RateLimit reset disagree')
      assert.ok(res.headers['x-request-id'] !== undefined && res.headers['x-request-id'] !== '')
    }
    assert.equal(stub.requests.length, 3)
  })

  test('without trustedProxies, X-Forwarded-For is ignored: every request is the socket address 127.0.0.1', async (t) => {
    const stub = await limitedStub(t)
    const { logger, lines } = capture()
    const { url } = await startGateway(t, config(stub, '{ perIp: 1/min }'), { logger })
    assert.equal((await get(`${url}/x`, via('1.1.1.1'))).status, 200)
    assertError(
      await get(`${url}/x`, via('2.2.2.2')),
      429,
      'RATE_LIMITED',
      'Too many requests (per-ip limit of 1 per minute)',
    )
    assertError(
      await get(`${url}/x`, via('3.3.3.3, 4.4.4.4')),
      429,
      'RATE_LIMITED',
      'Too many requests (per-ip limit of 1 per minute)',
    )
    assertError(await get(`${url}/x`), 429, 'RATE_LIMITED', 'Too many requests (per-ip limit of 1 per minute)')
    const rejected = lines.filter((l) => l.event === 'rejected')
    assert.deepEqual(
      rejected.map((l) => [l.ip, l.reason, l.endpoint]),
      [
        ['127.0.0.1', 'rate_limited', 'GET /x'],
        ['127.0.0.1', 'rate_limited', 'GET /x'],
        ['127.0.0.1', 'rate_limited', 'GET /x'],
      ],
    )
    assert.equal(stub.requests.length, 1)
  })

  test('with trustedProxies, each forwarded address is a client of its own; a spoofed chain counts as its right-most untrusted address', async (t) => {
    const stub = await limitedStub(t)
    const { logger, lines } = capture()
    const { url } = await startGateway(
      t,
      config(stub, '{ perIp: 1/min }', { gateway: '\n  trustedProxies: [127.0.0.1, 10.0.0.0/8]' }),
      { logger },
    )
    const ipOfLastRejection = (): string | undefined => lines.filter((l) => l.event === 'rejected').at(-1)?.ip
    // The client claims to be 1.2.3.4; the proxy in front of us saw 5.6.7.8.
    assert.equal((await get(`${url}/x`, via('1.2.3.4, 5.6.7.8'))).status, 200)
    assertError(
      await get(`${url}/x`, via('5.6.7.8')),
      429,
      'RATE_LIMITED',
      'Too many requests (per-ip limit of 1 per minute)',
    )
    assert.equal(ipOfLastRejection(), '5.6.7.8')
    assert.equal((await get(`${url}/x`, via('1.2.3.4'))).status, 200, '1.2.3.4 was charged for a spoofed entry')
    assertError(
      await get(`${url}/x`, via('9.9.9.9, 1.2.3.4')),
      429,
      'RATE_LIMITED',
      'Too many requests (per-ip limit of 1 per minute)',
    )
    assert.equal(ipOfLastRejection(), '1.2.3.4')
    // A trusted proxy inside the chain (10.0.0.0/8) is skipped: the client is the address before it.
    assert.equal((await get(`${url}/x`, via('7.7.7.7, 10.1.2.3'))).status, 200)
    assertError(
      await get(`${url}/x`, via('7.7.7.7')),
      429,
      'RATE_LIMITED',
      'Too many requests (per-ip limit of 1 per minute)',
    )
    assert.equal(ipOfLastRejection(), '7.7.7.7')
    // Nothing forwarded: the trusted socket address is the client, with a budget of its own.
    assert.equal((await get(`${url}/x`)).status, 200)
    assert.equal(stub.requests.length, 4)
  })
})

describe('per user and per endpoint', () => {
  const authConfig = (stub: Stub, rateLimit: string, endpoints: string): string =>
    config(stub, rateLimit, {
      gateway: '\n  auth: { jwt: { secret: "${env.JWT_SECRET}" } }',
      endpoints,
    })

  test('perUser: each JWT subject has its own budget; anonymous calls to a public endpoint are not counted per user; both policies are listed', async (t) => {
    const stub = await limitedStub(t)
    const { url } = await startGateway(
      t,
      authConfig(
        stub,
        '{ perIp: 100/min, perUser: 2/min }',
        `  GET /me:
    calls:
      me: { request: GET s /me }
  GET /open:
    auth: public
    calls:
      open: { request: GET s /open }
`,
      ),
      { env },
    )
    const both = '"per-ip";q=100;w=60, "per-user";q=2;w=60'
    for (const user of ['alice', 'bob']) {
      const headers = await bearer(user)
      for (const remaining of [1, 0]) {
        const res = await get(`${url}/me`, headers)
        assert.equal(res.status, 200, user)
        assertRateLimit(res, both, 'per-user', remaining)
      }
      const over = await get(`${url}/me`, headers)
      assertError(over, 429, 'RATE_LIMITED', 'Too many requests (per-user limit of 2 per minute)')
      assertRateLimit(over, both, 'per-user', 0)
      retryAfter(over)
    }
    assert.equal(callsTo(stub, '/me'), 4)
    // Six requests so far came from 127.0.0.1 (the rejected ones count too): 94 left per address.
    for (const remaining of [93, 92, 91, 90]) {
      const res = await get(`${url}/open`)
      assert.equal(res.status, 200)
      assertRateLimit(res, '"per-ip";q=100;w=60', 'per-ip', remaining)
    }
    assert.equal(callsTo(stub, '/open'), 4)
  })

  test('perUser: a JWT subject and an API key of the same name are different callers', async (t) => {
    const stub = await limitedStub(t)
    const { url } = await startGateway(
      t,
      config(stub, '{ perUser: 1/min }', {
        gateway:
          '\n  auth: { jwt: { secret: "${env.JWT_SECRET}" }, apiKey: { header: x-api-key, keys: { alice: "${env.ALICE_KEY}" } } }',
      }),
      { env: { ...env, ALICE_KEY: 'k-alice' } },
    )
    assertRateLimit(await get(`${url}/x`, await bearer('alice')), '"per-user";q=1;w=60', 'per-user', 0)
    assertRateLimit(await get(`${url}/x`, { 'x-api-key': 'k-alice' }), '"per-user";q=1;w=60', 'per-user', 0)
    assertError(
      await get(`${url}/x`, { 'x-api-key': 'k-alice' }),
      429,
      'RATE_LIMITED',
      'Too many requests (per-user limit of 1 per minute)',
    )
    assert.equal(stub.requests.length, 2)
  })

  test('perEndpoint: per endpoint and user; an endpoint override applies to it alone; rateLimit: false answers without limits or headers', async (t) => {
    const stub = await limitedStub(t)
    const { url } = await startGateway(
      t,
      authConfig(
        stub,
        '{ perEndpoint: 2/min }',
        `  GET /a:
    calls:
      a: { request: GET s /a }
  GET /b:
    calls:
      b: { request: GET s /b }
  GET /c:
    auth: public
    rateLimit: { perEndpoint: 1/min }
    calls:
      c: { request: GET s /c }
  GET /free:
    auth: public
    rateLimit: false
    calls:
      free: { request: GET s /free }
`,
      ),
      { env },
    )
    const [alice, bob] = [await bearer('alice'), await bearer('bob')]
    const two = '"per-endpoint";q=2;w=60'
    assertRateLimit(await get(`${url}/a`, alice), two, 'per-endpoint', 1)
    assertRateLimit(await get(`${url}/a`, alice), two, 'per-endpoint', 0)
    assertError(
      await get(`${url}/a`, alice),
      429,
      'RATE_LIMITED',
      'Too many requests (per-endpoint limit of 2 per minute)',
    )
    const b = await get(`${url}/b`, alice)
    assert.equal(b.status, 200, 'a limit on /a held back /b')
    assertRateLimit(b, two, 'per-endpoint', 1)
    const a = await get(`${url}/a`, bob)
    assert.equal(a.status, 200, "alice's use of /a held back bob")
    assertRateLimit(a, two, 'per-endpoint', 1)

    const one = '"per-endpoint";q=1;w=60'
    const c = await get(`${url}/c`)
    assert.equal(c.status, 200)
    assertRateLimit(c, one, 'per-endpoint', 0)
    const cOver = await get(`${url}/c`)
    assertError(cOver, 429, 'RATE_LIMITED', 'Too many requests (per-endpoint limit of 1 per minute)')
    assertRateLimit(cOver, one, 'per-endpoint', 0)
    retryAfter(cOver)

    for (let i = 0; i < 5; i++) {
      const res = await get(`${url}/free`)
      assert.equal(res.status, 200)
      assertNoRateLimit(res)
    }
    assert.deepEqual(
      ['/a', '/b', '/c', '/free'].map((p) => callsTo(stub, p)),
      [3, 1, 1, 5],
    )
  })

  test('rateLimit: false is exempt from the per-address and global limits too, and does not use up their budget', async (t) => {
    const stub = await limitedStub(t)
    const { url } = await startGateway(
      t,
      config(stub, '{ perIp: 2/min, global: 3/min }', {
        endpoints: `${ONE_ENDPOINT}  GET /free:
    rateLimit: false
    calls:
      free: { request: GET s /free }
`,
      }),
    )
    for (let i = 0; i < 6; i++) {
      const res = await get(`${url}/free`)
      assert.equal(res.status, 200)
      assertNoRateLimit(res)
    }
    const policies = '"per-ip";q=2;w=60, "global";q=3;w=60'
    assertRateLimit(await get(`${url}/x`), policies, 'per-ip', 1)
    assertRateLimit(await get(`${url}/x`), policies, 'per-ip', 0)
    assertError(await get(`${url}/x`), 429, 'RATE_LIMITED', 'Too many requests (per-ip limit of 2 per minute)')
    const free = await get(`${url}/free`)
    assert.equal(free.status, 200)
    assertNoRateLimit(free)
    assert.deepEqual([callsTo(stub, '/x'), callsTo(stub, '/free')], [2, 7])
  })

  test("an endpoint's rateLimit without gateway.rateLimit is enforced, counted in memory", async (t) => {
    const stub = await limitedStub(t)
    const text = `
version: 1
gateway: { name: Limited }
services:
  s: { url: "${stub.url}" }
endpoints:
  GET /x:
    rateLimit: { perEndpoint: 1/min }
    calls:
      x: { request: GET s /x }
`
    assert.deepEqual(diagnosticsOf(text), [])
    const { url } = await startGateway(t, text)
    assert.equal((await get(`${url}/x`)).status, 200)
    assertError(await get(`${url}/x`), 429, 'RATE_LIMITED', 'Too many requests (per-endpoint limit of 1 per minute)')
    assert.equal(stub.requests.length, 1)
  })
})

describe('global', () => {
  test('global 2/min: the third request, from any address to any endpoint, is 503 OVERLOADED with Retry-After', async (t) => {
    const stub = await limitedStub(t)
    const { url } = await startGateway(
      t,
      config(stub, '{ global: 2/min }', {
        gateway: '\n  trustedProxies: [127.0.0.1]',
        endpoints: `${ONE_ENDPOINT}  GET /y:
    calls:
      y: { request: GET s /y }
`,
      }),
    )
    assertRateLimit(await get(`${url}/x`, via('1.1.1.1')), '"global";q=2;w=60', 'global', 1)
    assertRateLimit(await get(`${url}/y`, via('2.2.2.2')), '"global";q=2;w=60', 'global', 0)
    const over = await get(`${url}/x`, via('3.3.3.3'))
    assertError(over, 503, 'OVERLOADED', 'The gateway is over its request limit')
    const reset = assertRateLimit(over, '"global";q=2;w=60', 'global', 0)
    assert.equal(retryAfter(over), reset)
    assert.equal(stub.requests.length, 2)
  })

  test('a request refused per address does not use up the global budget (one flooding address cannot starve the others)', async (t) => {
    const stub = await limitedStub(t)
    const { url } = await startGateway(
      t,
      config(stub, '{ global: 2/min, perIp: 1/min }', { gateway: '\n  trustedProxies: [127.0.0.1]' }),
    )
    assertRateLimit(await get(`${url}/x`, via('1.1.1.1')), '"per-ip";q=1;w=60, "global";q=2;w=60', 'per-ip', 0)
    for (let i = 0; i < 5; i++) {
      const flood = await get(`${url}/x`, via('1.1.1.1'))
      assertError(flood, 429, 'RATE_LIMITED', 'Too many requests (per-ip limit of 1 per minute)')
      assertRateLimit(flood, '"per-ip";q=1;w=60', 'per-ip', 0)
    }
    // The global limit still has room for one more address, then refuses the next.
    assertRateLimit(await get(`${url}/x`, via('2.2.2.2')), '"per-ip";q=1;w=60, "global";q=2;w=60', 'per-ip', 0)
    const over = await get(`${url}/x`, via('3.3.3.3'))
    assertError(over, 503, 'OVERLOADED', 'The gateway is over its request limit')
    assertRateLimit(over, '"per-ip";q=1;w=60, "global";q=2;w=60', 'global', 0)
    retryAfter(over)
    assert.equal(stub.requests.length, 2)
  })
})

/** Every diagnostic of a config, whether or not it compiles. */

interface Found {
  code: string
  message: string
  hint: string | undefined
  path: Diagnostic['path']
}

/** The config must not compile; its error diagnostics, without file positions. */
function configErrors(text: string): Found[] {
  return errorsOf(text).map(({ code, message, hint, path }) => ({ code, message, hint, path }))
}

describe('config', () => {
  const text = (rateLimit: string, gateway = ''): string => `
version: 1
gateway:
  name: Limited
  rateLimit: ${rateLimit}${gateway}
services:
  s: { url: "http://127.0.0.1:9" }
endpoints:
${ONE_ENDPOINT}`

  test('parseRate: count per window, at least one second', () => {
    const good: [string, { limit: number; window: number }][] = [
      ['100/min', { limit: 100, window: 60_000 }],
      ['10/s', { limit: 10, window: 1000 }],
      ['5000/h', { limit: 5000, window: 3_600_000 }],
      ['100/10s', { limit: 100, window: 10_000 }],
      ['3/1.5s', { limit: 3, window: 1500 }],
      ['1/1000ms', { limit: 1, window: 1000 }],
      ['2 requests / minute', { limit: 2, window: 60_000 }],
      [' 7/day ', { limit: 7, window: 86_400_000 }],
    ]
    for (const [rate, parsed] of good) assert.deepEqual(parseRate(rate), parsed, rate)
    for (const rate of ['lots', '5/100ms', '10/999ms', '0/min', '-1/min', '1.5/min', '10/', '/min', '10/week', '']) {
      assert.equal(parseRate(rate), undefined, rate)
    }
  })

  test('a valid block compiles into the plan with its defaults', () => {
    const { plan, diagnostics } = compileText(
      'test.yaml',
      text(
        '{ perIp: 3/min, perEndpoint: 100/10s, global: 5000/h, onStoreError: reject }',
        '\n  trustedProxies: [127.0.0.1, 10.0.0.0/8, "fd00::/8"]',
      ),
      { env: {} },
    )
    assert.deepEqual(diagnostics, [])
    assert.deepEqual(plan.edge.rateLimit, {
      store: 'memory',
      redis: {
        url: 'redis://127.0.0.1:6379',
        prefix: 'baton:rl',
        timeout: 200,
        breaker: { failures: 3, openFor: 5000 },
      },
      onStoreError: 'reject',
      perUser: null,
      perIp: { limit: 3, window: 60_000 },
      perEndpoint: { limit: 100, window: 10_000 },
      global: { limit: 5000, window: 3_600_000 },
    })
    assert.deepEqual(plan.edge.trustedProxies, ['127.0.0.1', '10.0.0.0/8', 'fd00::/8'])
  })

  test('a rate that does not parse, or a window under a second, is BATON_INVALID_VALUE with the hint', () => {
    for (const rate of ['lots', '5/100ms']) {
      assert.deepEqual(
        configErrors(text(`{ perIp: ${rate} }`)),
        [
          {
            code: 'BATON_INVALID_VALUE',
            message: `invalid value "${rate}"`,
            hint: RATE_HINT,
            path: ['gateway', 'rateLimit', 'perIp'],
          },
        ],
        rate,
      )
    }
    assert.deepEqual(
      configErrors(
        text('{ perIp: 10/min }').replace(
          'x: { request: GET s /x }',
          'x: { request: GET s /x }\n    rateLimit: { perEndpoint: 1/ms }',
        ),
      ),
      [
        {
          code: 'BATON_INVALID_VALUE',
          message: 'invalid value "1/ms"',
          hint: RATE_HINT,
          path: ['endpoints', 'GET /x', 'rateLimit', 'perEndpoint'],
        },
      ],
    )
  })

  // Not also the warning "rateLimit sets no limit", which would tell the user the opposite of what they wrote.
  test('an invalid rate is reported once, not also as a block with no limit', () => {
    const codes = diagnosticsOf(text('{ perIp: lots }')).map((d) => d.code)
    assert.deepEqual(codes, ['BATON_INVALID_VALUE'])
  })

  test('rateLimit: {} compiles with the warning BATON_NO_LIMITS', () => {
    const { plan, diagnostics } = compileText('test.yaml', text('{}'), { env: {} })
    assert.deepEqual(
      diagnostics.map(({ severity, code, message, hint, path }) => ({ severity, code, message, hint, path })),
      [
        {
          severity: 'warning',
          code: 'BATON_NO_LIMITS',
          message: 'rateLimit sets no limit',
          hint: 'add perUser, perIp, perEndpoint or global, e.g. perIp: 500/min',
          path: ['gateway', 'rateLimit'],
        },
      ],
    )
    assert.notEqual(plan.edge.rateLimit, null)
  })

  test('a trustedProxies entry that is not an address or CIDR range is BATON_INVALID_VALUE, each at its index', () => {
    const hint = 'e.g. 10.0.0.0/8, 192.168.1.10 or fd00::/8'
    assert.deepEqual(
      configErrors(
        text(
          '{ perIp: 1/min }',
          '\n  trustedProxies: [10.0.0.1, proxy.local, 10.0.0.0/33, "::1/129", 1.2.3.4/8/1, 10.0.0.0/x]',
        ),
      ),
      [
        {
          code: 'BATON_INVALID_VALUE',
          message: "'proxy.local' is not an IP address or CIDR range",
          hint,
          path: ['gateway', 'trustedProxies', 1],
        },
        {
          code: 'BATON_INVALID_VALUE',
          message: "'10.0.0.0/33' is not an IP address or CIDR range",
          hint,
          path: ['gateway', 'trustedProxies', 2],
        },
        {
          code: 'BATON_INVALID_VALUE',
          message: "'::1/129' is not an IP address or CIDR range",
          hint,
          path: ['gateway', 'trustedProxies', 3],
        },
        {
          code: 'BATON_INVALID_VALUE',
          message: "'1.2.3.4/8/1' is not an IP address or CIDR range",
          hint,
          path: ['gateway', 'trustedProxies', 4],
        },
        {
          code: 'BATON_INVALID_VALUE',
          message: "'10.0.0.0/x' is not an IP address or CIDR range",
          hint,
          path: ['gateway', 'trustedProxies', 5],
        },
      ],
    )
  })

  test('store: redis with a URL that is not redis:// is BATON_INVALID_URL', () => {
    assert.deepEqual(configErrors(text('{ store: redis, perIp: 1/min, redis: { url: "http://x" } }')), [
      {
        code: 'BATON_INVALID_URL',
        message: "'http://x' is not a redis:// URL",
        hint: 'e.g. redis://127.0.0.1:6379',
        path: ['gateway', 'rateLimit', 'redis', 'url'],
      },
    ])
    // The URL may come from the environment; it is checked once resolved.
    const fromEnv = text('{ store: redis, perIp: 1/min, redis: { url: "${env.RL_REDIS}" } }')
    assert.throws(
      () => compileText('test.yaml', fromEnv, { env: { RL_REDIS: 'http://x' } }),
      (err: unknown) => err instanceof ConfigError && err.diagnostics.some((d) => d.code === 'BATON_INVALID_URL'),
    )
    assert.equal(
      compileText('test.yaml', fromEnv, { env: { RL_REDIS: 'rediss://cache:6380/2' } }).plan.edge.rateLimit?.redis.url,
      'rediss://cache:6380/2',
    )
  })

  test('gateway.redis is the Redis of the rate limits unless rateLimit.redis overrides it, key by key; prefix gets :rl', () => {
    const shared =
      '\n  redis: { url: "${env.REDIS_URL}", timeout: 50ms, prefix: shop, breaker: { failures: 5, openFor: 10s } }'
    const env = { env: { REDIS_URL: 'redis://shared:6379/1' } }
    const breaker = { failures: 5, openFor: 10_000 }
    const inherited = compileText('test.yaml', text('{ store: redis, perIp: 1/min }', shared), env).plan
    assert.deepEqual(inherited.redis, { url: 'redis://shared:6379/1', timeout: 50, prefix: 'shop', breaker })
    assert.deepEqual(inherited.edge.rateLimit?.redis, {
      url: 'redis://shared:6379/1',
      timeout: 50,
      prefix: 'shop:rl',
      breaker,
    })
    const own = compileText(
      'test.yaml',
      text('{ store: redis, perIp: 1/min, redis: { url: "redis://limits:6379", timeout: 20ms } }', shared),
      env,
    ).plan
    assert.deepEqual(own.edge.rateLimit?.redis, { url: 'redis://limits:6379', timeout: 20, prefix: 'shop:rl', breaker })
    assert.deepEqual(own.redis, inherited.redis)
    // Without either block: the defaults.
    assert.deepEqual(compileText('test.yaml', text('{ perIp: 1/min }'), { env: {} }).plan.redis, {
      url: 'redis://127.0.0.1:6379',
      timeout: 200,
      prefix: 'baton',
      breaker: { failures: 3, openFor: 5000 },
    })
  })

  test('gateway.redis: a URL that is not redis:// (an unset variable: a warning for check), a breaker of 0 failures or 0 openFor, each at its place', () => {
    assert.deepEqual(configErrors(text('{ perIp: 1/min }', '\n  redis: { url: "http://x" }')), [
      {
        code: 'BATON_INVALID_URL',
        message: "'http://x' is not a redis:// URL",
        hint: 'e.g. redis://127.0.0.1:6379',
        path: ['gateway', 'redis', 'url'],
      },
    ])
    // An unset variable: an error when serving, only the warning for `baton check`.
    const fromEnv = text('{ perIp: 1/min }', '\n  redis: { url: "${env.REDIS_URL}" }')
    assert.deepEqual(
      errorsOf(fromEnv).map((d) => [d.code, d.message]),
      [['BATON_INVALID_URL', "'' is not a redis:// URL"]],
    )
    assert.deepEqual(
      diagnosticsOf(fromEnv, { mode: 'check' }).map((d) => [d.severity, d.code]),
      [['warning', 'BATON_ENV_UNSET']],
    )
    const breaker = errorsOf(text('{ perIp: 1/min }', '\n  redis: { breaker: { failures: 0, openFor: 0 } }'))
    assert.deepEqual(
      breaker.map(({ code, path, hint, line, col }) => ({ code, path, hint, line, col })),
      [
        {
          code: 'BATON_INVALID_VALUE',
          path: ['gateway', 'redis', 'breaker', 'failures'],
          hint: 'Too small: expected number to be >0',
          line: 6,
          col: 33,
        },
        {
          code: 'BATON_INVALID_VALUE',
          path: ['gateway', 'redis', 'breaker', 'openFor'],
          hint: 'must be more than 0: write a duration like 200ms, 2s, 1.5m or 1h',
          line: 6,
          col: 45,
        },
      ],
    )
  })
})

describe('redis store', () => {
  const redisConfig = (stub: Stub, url: string, prefix: string, limits: string, gateway = ''): string =>
    config(stub, `{ store: redis, redis: { url: "${url}", prefix: "${prefix}" }, ${limits} }`, { gateway })

  /** One request from an address of its own (trustedProxies: [127.0.0.1]), which must be counted: listen() waits for Redis. */
  async function untilCounted(url: string, ip: string): Promise<number> {
    const res = await get(`${url}/x`, via(ip))
    assert.equal(res.status, 200)
    assert.notEqual(res.headers.ratelimit, undefined, `${url} did not count its first request in Redis`)
    return 1
  }

  test('two gateway instances share one limit: perIp 4/min across both, then both answer 429', async (t) => {
    const redis = await redisFor(t)
    if (redis === null) return
    const stub = await limitedStub(t)
    const yaml = redisConfig(stub, redis.url, redis.prefix, 'perIp: 4/min', '\n  trustedProxies: [127.0.0.1]')
    const [one, two] = [await startGateway(t, yaml), await startGateway(t, yaml)]
    const warmUp = (await untilCounted(one.url, '192.0.2.1')) + (await untilCounted(two.url, '192.0.2.2'))
    const statuses: number[] = []
    for (let i = 0; i < 8; i++) {
      const res = await get(`${(i % 2 === 0 ? one : two).url}/x`)
      statuses.push(res.status)
      if (res.status === 200) assertRateLimit(res, '"per-ip";q=4;w=60', 'per-ip', 3 - i)
      else assertError(res, 429, 'RATE_LIMITED', 'Too many requests (per-ip limit of 4 per minute)')
    }
    assert.deepEqual(statuses, [200, 200, 200, 200, 429, 429, 429, 429])
    assert.equal(stub.requests.length, warmUp + 4)
    const key = `${redis.prefix}:per-ip:127.0.0.1`
    assert.deepEqual(await redis.keys(), [key, `${redis.prefix}:per-ip:192.0.2.1`, `${redis.prefix}:per-ip:192.0.2.2`])
    const ttl = await redis.pttl(key)
    assert.ok(ttl > 0 && ttl <= 60_000, `ttl ${ttl}`)
  })

  // listen() waits for the Redis connection: a request that came while it was still connecting
  // would be let through uncounted, with an outage warning at every start.
  test('a gateway that has just started counts its first request in Redis, without an outage warning', async (t) => {
    const redis = await redisFor(t)
    if (redis === null) return
    const stub = await limitedStub(t)
    const { logger, lines } = capture()
    const { url } = await startGateway(t, redisConfig(stub, redis.url, redis.prefix, 'perIp: 4/min'), { logger })
    const first = await get(`${url}/x`)
    assert.equal(first.status, 200)
    assert.deepEqual(storeLines(lines), [])
    assertRateLimit(first, '"per-ip";q=4;w=60', 'per-ip', 3)
  })

  // No limit was applied, so none is announced.
  test('a request let through while the store is down carries no RateLimit field at all', async (t) => {
    const stub = await limitedStub(t)
    const { url } = await startGateway(
      t,
      redisConfig(stub, `redis://127.0.0.1:${await freePort()}`, uniquePrefix(), 'perIp: 2/min'),
    )
    const res = await get(`${url}/x`)
    assert.equal(res.status, 200)
    assertNoRateLimit(res)
  })

  test('Redis unreachable: requests flow without limits, one warning however many requests, failures counted; reject mode answers 503', async (t) => {
    const stub = await limitedStub(t)
    const port = await freePort()
    const unexpected: unknown[] = []
    const collect = (err: unknown): void => {
      unexpected.push(err)
    }
    process.on('uncaughtException', collect)
    process.on('unhandledRejection', collect)
    t.after(() => {
      process.off('uncaughtException', collect)
      process.off('unhandledRejection', collect)
    })
    const prefix = uniquePrefix()

    const { logger, lines } = capture()
    const { url } = await startGateway(t, redisConfig(stub, `redis://127.0.0.1:${port}`, prefix, 'perIp: 2/min'), {
      logger,
    })
    for (let i = 0; i < 8; i++) {
      const res = await get(`${url}/x`)
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { x: { name: 'x' } })
      // No RateLimit field: nothing was counted.
      assert.equal(res.headers.ratelimit, undefined)
      assert.equal(res.headers['retry-after'], undefined)
    }
    assert.equal(stub.requests.length, 8)
    const storeErrors = async (): Promise<number> =>
      metric(await scrape(url), 'baton_rate_limit_store_errors_total') ?? 0
    const errors = await storeErrors()
    assert.ok(errors >= 8, `baton_rate_limit_store_errors_total is ${errors}, expected one at least per request`)
    // Reconnection attempts keep failing meanwhile (counted too), and still without a second warning.
    const until = performance.now() + 3000
    while ((await storeErrors()) <= errors && performance.now() < until) await sleep(50)
    assert.ok((await storeErrors()) > errors, 'no failed reconnection was counted')
    assert.equal((await get(`${url}/x`)).status, 200)
    // Readiness says so: limits are not applied (degraded), but every endpoint is still served.
    const ready = await get(`${url}/health/ready`)
    assert.equal(ready.status, 200)
    assert.deepEqual(
      {
        status: (ready.body as { status: string }).status,
        rateLimits: (ready.body as { rateLimits: unknown }).rateLimits,
      },
      { status: 'degraded', rateLimits: { store: 'redis', up: false } },
    )
    const warnings = lines.filter((l) => l.event === 'rate_limit_store')
    assert.equal(warnings.length, 1, JSON.stringify(warnings))
    assert.equal(warnings[0]?.level, 'warn')
    assert.match(
      warnings[0]?.msg ?? '',
      /^rate limit store unavailable \(.+\): requests are let through unlimited until it is back$/,
    )

    const reject = capture()
    const strict = await startGateway(
      t,
      redisConfig(stub, `redis://127.0.0.1:${port}`, prefix, 'perIp: 2/min, onStoreError: reject'),
      { logger: reject.logger },
    )
    for (let i = 0; i < 3; i++) {
      const res = await get(`${strict.url}/x`)
      assertError(res, 503, 'RATE_LIMIT_UNAVAILABLE', 'Rate limits cannot be checked right now')
      assert.equal(res.headers['retry-after'], '1')
      assertNoRateLimit(res)
    }
    assert.equal(stub.requests.length, 9, 'a refused request reached the service')
    // With onStoreError: reject, the limited endpoints cannot be served at all: not ready.
    const down = await get(`${strict.url}/health/ready`)
    assert.deepEqual(
      { code: down.status, status: (down.body as { status: string }).status },
      { code: 503, status: 'down' },
    )
    assert.equal(
      metric(
        await scrape(strict.url),
        'baton_requests_rejected_total{method="GET",route="/x",reason="rate_limit_unavailable"}',
      ),
      3,
    )
    assert.deepEqual(
      storeLines(reject.lines).map((m) => m.replace(/\(.+\)/, '(…)')),
      ['rate limit store unavailable (…): requests are refused with 503 until it is back'],
    )
    assert.deepEqual(unexpected, [])
  })

  test('Redis going away and coming back: limits apply, then fail open with one warning, then apply again', async (t) => {
    const own = await ownRedisFor(t)
    if (own === null) return
    const stub = await limitedStub(t)
    const { logger, lines } = capture()
    const { url } = await startGateway(
      t,
      redisConfig(stub, own.url, uniquePrefix(), 'perIp: 2/min', '\n  trustedProxies: [127.0.0.1]'),
      { logger },
    )
    const from = (ip: string): Promise<ClientResponse> => get(`${url}/x`, via(ip))
    const warmUp = await untilCounted(url, '192.0.2.1')
    assert.deepEqual(storeLines(lines), [], 'no outage at start-up')
    const startup = storeLines(lines).length
    const logged = (): string[] => storeLines(lines).slice(startup)

    assertRateLimit(await from('10.0.0.1'), '"per-ip";q=2;w=60', 'per-ip', 1)
    assertRateLimit(await from('10.0.0.1'), '"per-ip";q=2;w=60', 'per-ip', 0)
    assertError(await from('10.0.0.1'), 429, 'RATE_LIMITED', 'Too many requests (per-ip limit of 2 per minute)')
    assert.deepEqual(logged(), [])

    await own.kill()
    // The client that was over its limit gets through while the store is away.
    for (let i = 0; i < 4; i++) {
      const res = await from('10.0.0.1')
      assert.equal(res.status, 200)
      assert.equal(res.headers.ratelimit, undefined)
    }
    const down = logged()
    assert.equal(down.length, 1, JSON.stringify(down))
    assert.match(
      down[0] ?? '',
      /^rate limit store unavailable \(.+\): requests are let through unlimited until it is back$/,
    )

    await own.restart()
    const back = (): boolean => logged().length > 1
    // The store is found back by a request that gets through to it: keep sending some, from an address of their own.
    const polled: number[] = []
    let polling = true
    const poller = (async () => {
      while (polling && !back()) {
        polled.push((await from('10.0.0.2')).status)
        await sleep(25)
      }
    })()
    try {
      await eventually(back, 'the gateway to log that the rate limit store is back', 8000)
    } finally {
      polling = false
      await poller
    }
    assert.ok(
      polled.every((s) => s === 200),
      `polled: ${polled.join(',')}`,
    )
    assert.deepEqual(logged().slice(1), ['rate limit store is back: limits apply again'])

    assertRateLimit(await from('10.0.0.3'), '"per-ip";q=2;w=60', 'per-ip', 1)
    assertRateLimit(await from('10.0.0.3'), '"per-ip";q=2;w=60', 'per-ip', 0)
    assertError(await from('10.0.0.3'), 429, 'RATE_LIMITED', 'Too many requests (per-ip limit of 2 per minute)')
    assert.equal(logged().length, 2)
    assert.equal(stub.requests.length, warmUp + 2 + 4 + polled.length + 2)
    const ready = (await get(`${url}/health/ready`)).body as { status: string; rateLimits: unknown }
    assert.deepEqual(
      { status: ready.status, rateLimits: ready.rateLimits },
      { status: 'ok', rateLimits: { store: 'redis', up: true } },
    )
  })

  /**
   * A gateway whose rate-limit Redis is behind a proxy that can freeze it (gateway.redis: timeout
   * 100ms, breaker 3 failures / 5s), on a fake clock for the breaker; its first request counted.
   */
  async function frozenGateway(t: TestContext, limits: string) {
    const redis = await redisFor(t)
    if (redis === null) return null
    const proxy = await redisProxyFor(t, redis.url)
    const stub = await limitedStub(t)
    const clock = fakeClock()
    const { logger, lines } = capture()
    const yaml = redisConfig(
      stub,
      proxy.url,
      redis.prefix,
      limits,
      '\n  trustedProxies: [127.0.0.1]\n  redis: { timeout: 100ms, breaker: { failures: 3, openFor: 5s } }',
    )
    const { url } = await startGateway(t, yaml, { logger, clock })
    const warmUp = await untilCounted(url, '192.0.2.1')
    return { proxy, stub, clock, lines, url, warmUp, from: (ip: string) => get(`${url}/x`, via(ip)) }
  }

  test('a frozen Redis: only the first 3 requests wait for its timeout, the rest skip it; after openFor one probe brings limits back', async (t) => {
    const g = await frozenGateway(t, 'perIp: 2/min')
    if (g === null) return
    const { proxy, from } = g
    proxy.pause()
    const before = proxy.commands
    for (let i = 0; i < 8; i++) {
      const res = await from(`192.0.2.${10 + i}`)
      assert.equal(res.status, 200)
      assertNoRateLimit(res)
    }
    assert.equal(proxy.commands - before, 3, 'requests that reached the frozen Redis')
    assert.equal(g.stub.requests.length, g.warmUp + 8)
    const text = await scrape(g.url)
    assert.equal(metric(text, 'baton_store_failures_total{store="rate_limit"}'), 3)
    assert.equal(metric(text, 'baton_store_up{store="rate_limit"}'), 0)
    assert.equal(metric(text, 'baton_rate_limit_store_errors_total'), 8)
    const ready = (await get(`${g.url}/health/ready`)).body as { status: string; rateLimits: unknown }
    assert.deepEqual(
      { status: ready.status, rateLimits: ready.rateLimits },
      { status: 'degraded', rateLimits: { store: 'redis', up: false } },
    )
    assert.deepEqual(storeLines(g.lines), [
      'rate limit store unavailable (3 commands failed in a row, the last: Command timed out): requests are let through unlimited until it is back',
    ])

    // Redis answers again; once openFor is over, the next request is the probe, and it is counted.
    proxy.resume()
    g.clock.advance(5000)
    const sent = proxy.commands
    assertRateLimit(await from('10.0.0.3'), '"per-ip";q=2;w=60', 'per-ip', 1)
    assert.equal(proxy.commands, sent + 1)
    assertRateLimit(await from('10.0.0.3'), '"per-ip";q=2;w=60', 'per-ip', 0)
    assertError(await from('10.0.0.3'), 429, 'RATE_LIMITED', 'Too many requests (per-ip limit of 2 per minute)')
    assert.deepEqual(storeLines(g.lines).slice(1), ['rate limit store is back: limits apply again'])
    const after = await scrape(g.url)
    assert.equal(metric(after, 'baton_store_up{store="rate_limit"}'), 1)
    assert.equal(metric(after, 'baton_store_failures_total{store="rate_limit"}'), 3)
    assert.equal(g.stub.requests.length, g.warmUp + 8 + 2)
  })

  test('a frozen Redis with onStoreError: reject: 503 for every request, and only the first 3 reach Redis', async (t) => {
    const g = await frozenGateway(t, 'perIp: 2/min, onStoreError: reject')
    if (g === null) return
    const { proxy, from } = g
    proxy.pause()
    const before = proxy.commands
    for (let i = 0; i < 6; i++) {
      const res = await from(`192.0.2.${10 + i}`)
      assertError(res, 503, 'RATE_LIMIT_UNAVAILABLE', 'Rate limits cannot be checked right now')
      assert.equal(res.headers['retry-after'], '1')
    }
    assert.equal(proxy.commands - before, 3)
    assert.equal(g.stub.requests.length, g.warmUp)
    // Still skipped just before openFor is over, even with Redis back.
    proxy.resume()
    g.clock.advance(4999)
    assertError(await from('10.0.0.4'), 503, 'RATE_LIMIT_UNAVAILABLE', 'Rate limits cannot be checked right now')
    assert.equal(proxy.commands - before, 3)
    g.clock.advance(1)
    assertRateLimit(await from('10.0.0.4'), '"per-ip";q=2;w=60', 'per-ip', 1)
    assert.deepEqual(
      storeLines(g.lines).map((m) => m.replace(/\(.+\)/, '(…)')),
      [
        'rate limit store unavailable (…): requests are refused with 503 until it is back',
        'rate limit store is back: limits apply again',
      ],
    )
  })
})

describe('metrics', () => {
  test('baton_requests_rejected_total counts 429s as rate_limited and global 503s as overloaded, per endpoint', async (t) => {
    const stub = await limitedStub(t)
    const endpoints = `${ONE_ENDPOINT}  GET /y:
    calls:
      y: { request: GET s /y }
`
    const perIp = await startGateway(t, config(stub, '{ perIp: 2/min }', { endpoints }))
    for (let i = 0; i < 5; i++) await get(`${perIp.url}/x`)
    const ipText = await scrape(perIp.url)
    assert.equal(metric(ipText, 'baton_requests_rejected_total{method="GET",route="/x",reason="rate_limited"}'), 3)
    assert.equal(
      metric(ipText, 'baton_requests_rejected_total{method="GET",route="/y",reason="rate_limited"}'),
      undefined,
    )
    assert.equal(
      metric(ipText, 'baton_requests_rejected_total{method="GET",route="/x",reason="overloaded"}'),
      undefined,
    )
    assert.equal(
      metric(ipText, 'baton_requests_total{method="GET",route="/x",status_class="2xx",outcome="complete"}'),
      2,
    )

    const global = await startGateway(t, config(stub, '{ global: 1/min }', { endpoints }))
    await get(`${global.url}/x`)
    await get(`${global.url}/x`)
    await get(`${global.url}/y`)
    const globalText = await scrape(global.url)
    assert.equal(metric(globalText, 'baton_requests_rejected_total{method="GET",route="/x",reason="overloaded"}'), 1)
    assert.equal(metric(globalText, 'baton_requests_rejected_total{method="GET",route="/y",reason="overloaded"}'), 1)
    assert.equal(
      metric(globalText, 'baton_requests_rejected_total{method="GET",route="/x",reason="rate_limited"}'),
      undefined,
    )
    assert.equal(stub.requests.length, 3)
  })
})

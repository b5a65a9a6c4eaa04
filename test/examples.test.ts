/**
 * The shipped examples, run as `baton dev` runs them: every service answered by its
 * `mock:` routes, some of them down or slow. And once through the real CLI, as a user would.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, test, type TestContext } from 'node:test'
import { devToken } from '../src/cli/devtoken.ts'
import { compileText } from '../src/plan/compile.ts'
import { createGateway } from '../src/server/gateway.ts'
import { startMocks, type MockOptions } from '../src/server/mocks.ts'
import { type Cli, startCli } from './helpers/cli.ts'
import { assertError, get, post, type ClientResponse } from './helpers/gateway.ts'

const CHECKOUT = 'examples/checkout/baton.yaml'
const DASHBOARD = 'examples/dashboard/baton.yaml'

/** The token `baton dev` prints for the checkout example (its JWT secret is a random stand-in per run). */
let checkoutToken = ''

/** `baton dev FILE [--down …] [--slow …]`, in process; returns the gateway's URL with its basePath. */
async function dev(t: TestContext, file: string, options: MockOptions = {}): Promise<string> {
  const { plan } = compileText(file, readFileSync(new URL(`../${file}`, import.meta.url), 'utf8'), {
    env: {},
    mode: 'dev',
  })
  if (file === CHECKOUT) checkoutToken = (await devToken(plan)) ?? ''
  const mocks = await startMocks(plan, options)
  t.after(() => mocks.close())
  const gateway = createGateway(plan, { origins: mocks.origins })
  t.after(() => gateway.close())
  const { url } = await gateway.listen({ port: 0, host: '127.0.0.1' })
  return url + plan.basePath
}

const CART_ITEMS = [
  { sku: 'SKU-1001', name: 'Wireless Mouse', quantity: 1, price: 2999 },
  { sku: 'SKU-2002', name: 'Mechanical Keyboard', quantity: 1, price: 8999 },
  { sku: 'SKU-3003', name: 'USB-C Hub', quantity: 1, price: 2999 },
]
const SUMMARY = {
  cart: { items: CART_ITEMS, itemCount: 3 },
  pricing: { subtotal: 14997, currency: 'USD' },
  shipping: { options: [], estimated: true },
  tax: { amount: 1237, rate: 0.0825 },
  total: 16234,
  availabilityConfirmed: true,
}

const summary = async (base: string, token = checkoutToken): Promise<ClientResponse> =>
  await post(`${base}/summary`, { cartId: 'cart-123' }, { authorization: `Bearer ${token}` })

describe('examples/checkout', () => {
  test('the filled example of the spec: the assembled summary', async (t) => {
    const res = await summary(await dev(t, CHECKOUT))
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, SUMMARY)
    assert.equal(res.headers['baton-degraded'], undefined)
  })

  test('validate: {} and {"cartId":""} are 400 VALIDATION_FAILED, and no service is called', async (t) => {
    const base = await dev(t, CHECKOUT)
    const refused = async (body: unknown): Promise<ClientResponse> =>
      await post(`${base}/summary`, body, { authorization: `Bearer ${checkoutToken}` })
    const expect = (res: ClientResponse, message: string, path = '/cartId'): void => {
      assert.equal(res.status, 400)
      assert.deepEqual(res.body, {
        error: {
          code: 'VALIDATION_FAILED',
          message: 'The request does not match what the endpoint accepts',
          failedServices: [],
          partialData: false,
          details: [{ in: 'body', path, message }],
        },
        data: {},
      })
    }
    expect(await refused({}), "must have required property 'cartId'")
    expect(await refused({ cartId: '' }), 'must NOT have fewer than 1 characters')
    expect(await refused({ cartId: 'c'.repeat(65) }), 'must NOT have more than 64 characters')
    // The mocks count nothing, but the metrics do: no call was made for any of the three.
    const metrics = (await get(`${base.replace(/\/v1\/checkout$/, '')}/metrics`)).body as string
    assert.match(metrics, /^baton_call_duration_seconds_count\{[^}]*call="cart"[^}]*\} 0$/m)
    assert.doesNotMatch(metrics, /^baton_call_duration_seconds_count\{[^}]*\} [1-9]/m)
    assert.match(metrics, /reason="validation_failed"\} 3$/m)
  })

  test('--down shipping: 200, shipping null, partialData, baton-degraded: shipping', async (t) => {
    const res = await summary(await dev(t, CHECKOUT, { down: new Set(['shipping']) }))
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { ...SUMMARY, shipping: null, partialData: true })
    assert.equal(res.headers['baton-degraded'], 'shipping')
  })

  test('--down cart: 502 naming cart', async (t) => {
    assertError(
      await summary(await dev(t, CHECKOUT, { down: new Set(['cart']) })),
      502,
      'DOWNSTREAM_FAILURE',
      /^cart failed \(503\)$/,
      ['cart'],
    )
  })

  test('--slow cart=3000: 504, cart timed out at its 200ms (the only call started)', async (t) => {
    const res = await summary(await dev(t, CHECKOUT, { slow: new Map([['cart', 3000]]) }))
    assertError(res, 504, 'GATEWAY_TIMEOUT', /^cart timed out$/, ['cart'])
  })

  test('--slow tax=3000: 502 naming tax (it timed out at its 300ms; the other calls answered)', async (t) => {
    const res = await summary(await dev(t, CHECKOUT, { slow: new Map([['tax', 3000]]) }))
    assertError(res, 502, 'DOWNSTREAM_FAILURE', /^tax failed: timed out$/, ['tax'])
  })
})

describe('examples/dashboard', () => {
  const USER = { id: '42', name: 'Ada Lovelace', email: 'ada@example.com' }
  const RECOMMENDATIONS = [
    { id: 'rec-1', title: 'Analytical Engine, a primer' },
    { id: 'rec-2', title: 'Notes on the Bernoulli numbers' },
  ]

  test('GET /bff/dashboard/42', async (t) => {
    const res = await get(`${await dev(t, DASHBOARD)}/dashboard/42`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, {
      user: USER,
      preferences: { theme: 'dark', notifications: false },
      recommendations: RECOMMENDATIONS,
    })
    assert.equal(res.headers['baton-degraded'], undefined)
  })

  test('--down preferences: the defaults, partialData', async (t) => {
    const res = await get(`${await dev(t, DASHBOARD, { down: new Set(['preferences']) })}/dashboard/42`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, {
      user: USER,
      preferences: { theme: 'light', notifications: true },
      recommendations: RECOMMENDATIONS,
      partialData: true,
    })
    assert.equal(res.headers['baton-degraded'], 'preferences')
  })

  test('--down recommendations: [], partialData', async (t) => {
    const res = await get(`${await dev(t, DASHBOARD, { down: new Set(['recommendations']) })}/dashboard/42`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, {
      user: USER,
      preferences: { theme: 'dark', notifications: false },
      recommendations: [],
      partialData: true,
    })
    assert.equal(res.headers['baton-degraded'], 'recommendations')
  })

  test('--down users: 502 naming users', async (t) => {
    assertError(
      await get(`${await dev(t, DASHBOARD, { down: new Set(['users']) })}/dashboard/42`),
      502,
      'DOWNSTREAM_FAILURE',
      /^users failed \(503\)$/,
      ['users'],
    )
  })
})

describe('the real CLI: `baton dev examples/checkout/baton.yaml`', () => {
  /** Runs it; resolves once it has printed its dev token (after the endpoints), with the URL and the token. */
  async function run(t: TestContext, ...flags: string[]): Promise<{ cli: Cli; base: string; token: string }> {
    const { cli, url } = await startCli(t, ['dev', CHECKOUT, '--port', '0', ...flags])
    const token = (await cli.waitFor(/export TOKEN=(\S+)/))[1] as string
    return { cli, base: url, token }
  }

  /** `n` summaries, 10 at a time (as fast as a person clicking around, and then some). */
  async function summaries(base: string, token: string, n: number): Promise<ClientResponse[]> {
    const out: ClientResponse[] = []
    for (let i = 0; i < n; i += 10)
      out.push(...(await Promise.all(Array.from({ length: Math.min(10, n - i) }, () => summary(base, token)))))
    return out
  }

  test('serves the summary, says what it does (no mock for payment, rate limits off), and stops on SIGTERM', async (t) => {
    const { cli, base, token } = await run(t)
    assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/v1\/checkout$/)
    // A service without mock: routes is called at its real URL, and the start-up says so.
    assert.match(cli.stdout, /^payment has no mock: calls go to http:\/\/payments\.internal:8080$/m)
    assert.doesNotMatch(cli.stdout, /^mock payment /m)
    assert.match(
      cli.stdout,
      /^rate limits off \(per-user 100\/min, per-IP 500\/min, per-endpoint 50\/min, global 10000\/min in the config\); --rate-limits applies them$/m,
    )

    // The example demands a JWT (the template's "Authentication: JWT"): without one, 401.
    assertError(await summary(base, ''), 401, 'UNAUTHENTICATED', 'Credentials are required')
    const res = await summary(base, token)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, SUMMARY)
    assert.equal(res.headers['ratelimit-policy'], undefined)
    // Over the template's 50/min per endpoint, and nothing trips.
    const many = await summaries(base, token, 51)
    assert.deepEqual(
      many.map((r) => r.status),
      many.map(() => 200),
    )

    cli.kill('SIGTERM')
    assert.deepEqual(await cli.exited, { code: 0, signal: null }, `stderr: ${cli.stderr}`)
    assert.match(cli.stdout, /stopping \(SIGTERM\)/)
    // Nothing was in flight: nothing to drain.
    assert.match(cli.stdout, /^stopped: 0 requests drained$/m)
  })

  test('--rate-limits applies the template table: the 51st summary in a minute is a 429', async (t) => {
    const { cli, base, token } = await run(t, '--rate-limits')
    assert.match(
      cli.stdout,
      /^rate limits on: per-user 100\/min, per-IP 500\/min, per-endpoint 50\/min, global 10000\/min$/m,
    )
    const fifty = await summaries(base, token, 50)
    assert.deepEqual(
      fifty.map((r) => r.status),
      fifty.map(() => 200),
    )
    assert.equal(
      fifty[0]?.headers['ratelimit-policy'],
      '"per-ip";q=500;w=60, "global";q=10000;w=60, "per-user";q=100;w=60, "per-endpoint";q=50;w=60',
    )
    const over = await summary(base, token)
    assertError(over, 429, 'RATE_LIMITED', /per-endpoint/)
    assert.ok(Number(over.headers['retry-after']) >= 1)
  })

  test('--down works for a service without mocks (a stand-in answers 503); the start-up says what is down or slow', async (t) => {
    // --down works for a service without mocks too: a stand-in answers 503 instead of its real URL.
    const { cli } = await run(t, '--down', 'payment,shipping', '--slow', 'tax=10')
    assert.match(cli.stdout, /^mock payment on http:\/\/127\.0\.0\.1:\d+ \(down\)$/m)
    assert.match(cli.stdout, /^mock shipping on http:\/\/127\.0\.0\.1:\d+ \(down\)$/m)
    assert.match(cli.stdout, /^mock tax on http:\/\/127\.0\.0\.1:\d+ \(\+10ms\)$/m)
    assert.doesNotMatch(cli.stdout, /has no mock/)
  })
})

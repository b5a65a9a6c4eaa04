/**
 * The shipped examples, run as `baton dev` runs them: every service answered by its
 * `mock:` routes, some of them down or slow. And once through the real CLI, as a user would.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, test, type TestContext } from 'node:test'
import { devToken } from '../src/cli/devtoken.ts'
import { compileText } from '../src/plan/compile.ts'
import { createGateway } from '../src/server/gateway.ts'
import { startMocks, type MockOptions } from '../src/server/mocks.ts'
import { assertError, get, post, type ClientResponse } from './helpers/gateway.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
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

test('the real CLI: `baton dev examples/checkout/baton.yaml --port 0` serves the summary and stops on SIGTERM', async (t) => {
  const child = spawn(process.execPath, ['bin/baton.js', 'dev', CHECKOUT, '--port', '0'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString()
  })
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no "listening on" line within 20s; stdout: ${stdout}; stderr: ${stderr}`)),
      20_000,
    )
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString()
      const m = /listening on (http:\/\/\S+)/.exec(stdout)
      // The dev token is printed after the endpoints, so wait for it too.
      if (m !== null && /export TOKEN=\S+/.test(stdout)) {
        clearTimeout(timer)
        resolve(m[1] as string)
      }
    })
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`baton dev exited (${code}) before listening; stdout: ${stdout}; stderr: ${stderr}`))
    })
  })
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/v1\/checkout$/)

  // The example demands a JWT (the template's "Authentication: JWT"): without one, 401.
  assertError(await summary(base, ''), 401, 'UNAUTHENTICATED', 'Credentials are required')
  const token = (/export TOKEN=(\S+)/.exec(stdout) as RegExpExecArray)[1] as string
  const res = await summary(base, token)
  assert.equal(res.status, 200)
  assert.deepEqual(res.body, SUMMARY)
  assert.equal(
    res.headers['ratelimit-policy'],
    '"per-ip";q=500;w=60, "global";q=10000;w=60, "per-user";q=100;w=60, "per-endpoint";q=50;w=60',
  )

  child.kill('SIGTERM')
  const [code, signal] = await exited
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, `stderr: ${stderr}`)
  assert.match(stdout, /stopping \(SIGTERM\)/)
})

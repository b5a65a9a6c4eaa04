/**
 * The screen always renders: an optional call never costs the answer (the deadline, a forEach
 * too long or with failing items), and the client's own mistakes are 400s, never blamed on a
 * service. Over real sockets against a stub service.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { compileText } from '../src/plan/compile.ts'
import { renderPlan } from '../src/cli/plan.ts'
import { assertError, get, post, startGateway, stubFor } from './helpers/gateway.ts'
import { eventually, hang, json, type Stub } from './helpers/stub.ts'

function gateway(stub: Stub, endpoint: string, services = ''): string {
  return `
version: 1
gateway: { name: Screen, logLevel: silent }
services:
  main: { url: "${stub.url}" }
  extra: { url: "${stub.url}"${services} }
endpoints:
${endpoint}`
}

async function aborted(stub: Stub, key: string): Promise<void> {
  await eventually(() => stub.requestsTo(key).every((r) => r.closed), `${key}'s connections to close`)
  assert.ok(stub.requestsTo(key).length > 0, `${key} was called`)
  for (const r of stub.requestsTo(key)) assert.equal(r.aborted, true, `${key} should be aborted before its answer`)
}

describe('the deadline never sacrifices the screen to an optional call', () => {
  test('a required call succeeds, an optional one hangs (its service has no timeout): 200 with its fallback at the deadline', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /user', json({ name: 'Ada' }))
    stub.route('GET /recs', hang())
    const { url } = await startGateway(
      t,
      gateway(
        stub,
        `  GET /screen:
    timeout: 300ms
    calls:
      user: { request: GET main /user }
      recs: { request: GET extra /recs, fallback: [] }
`,
      ),
    )
    const res = await get(`${url}/screen`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { user: { name: 'Ada' }, recs: [], partialData: true })
    assert.equal(res.headers['baton-degraded'], 'recs')
    await aborted(stub, 'GET /recs')
  })

  test('an optional forEach still running at the deadline takes its fallback; the call that succeeded is not blamed', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /ids', json(Array.from({ length: 30 }, (_, i) => i)))
    stub.route('GET /items/:id', async (req) => {
      await new Promise((resolve) => setTimeout(resolve, 100))
      return json({ id: Number(req.params.id) })
    })
    const { url } = await startGateway(
      t,
      gateway(
        stub,
        `  GET /screen:
    timeout: 400ms
    calls:
      ids: { request: GET main /ids }
      items: { request: "GET extra /items/\${id}", forEach: "\${ids}", as: id, concurrency: 2, fallback: [] }
`,
      ),
    )
    const res = await get(`${url}/screen`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { ids: Array.from({ length: 30 }, (_, i) => i), items: [], partialData: true })
    assert.equal(res.headers['baton-degraded'], 'items')
    // 30 items at 2 at a time and 100 ms each need 1.5 s: cut at the deadline after a few.
    assert.ok(stub.requestsTo('GET /items/:id').length < 30)
  })

  test('a required call still running at the deadline makes it a 504 naming it alone; the optional one is aborted too', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /user', hang())
    stub.route('GET /recs', hang())
    const { url } = await startGateway(
      t,
      gateway(
        stub,
        `  GET /screen:
    timeout: 300ms
    calls:
      user: { request: GET main /user }
      recs: { request: GET extra /recs, fallback: [] }
`,
      ),
    )
    assertError(await get(`${url}/screen`), 504, 'GATEWAY_TIMEOUT', "the endpoint's 300ms deadline passed", ['main'])
    await aborted(stub, 'GET /user')
    await aborted(stub, 'GET /recs')
  })
})

describe('forEach: maxItems, itemFallback, into', () => {
  const items = (n: number): { id: number }[] => Array.from({ length: n }, (_, i) => ({ id: i }))

  test('a list from the request longer than maxItems: 400, and no item is requested', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /items/:id', json({ ok: true }))
    const { url } = await startGateway(
      t,
      gateway(
        stub,
        `  POST /screen:
    calls:
      items: { request: "GET main /items/\${item}", forEach: "\${request.body.ids}", maxItems: 5 }
`,
      ),
    )
    assertError(
      await post(`${url}/screen`, { ids: [1, 2, 3, 4, 5, 6] }),
      400,
      'BAD_REQUEST',
      '${request.body.ids} has 6 items, over the 5 that items accepts (maxItems)',
      ['main'],
    )
    assertError(
      await post(`${url}/screen`, { ids: 'one,two' }),
      400,
      'BAD_REQUEST',
      '${request.body.ids} is not a list (forEach of items)',
      ['main'],
    )
    assert.equal(stub.requestsTo('GET /items/:id').length, 0)
    const ok = await post(`${url}/screen`, { ids: [1, 2, 3, 4, 5] })
    assert.equal(ok.status, 200)
    assert.equal(stub.requestsTo('GET /items/:id').length, 5)
  })

  test('a list from a service over the default maxItems (100): a required call is 502 naming the service, an optional one falls back', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /list', json(items(101)))
    stub.route('GET /items/:id', json({ ok: true }))
    const { url } = await startGateway(
      t,
      gateway(
        stub,
        `  GET /required:
    calls:
      list: { request: GET main /list }
      each: { request: "GET extra /items/\${item.id}", forEach: "\${list}" }
  GET /optional:
    calls:
      list: { request: GET main /list }
      each: { request: "GET extra /items/\${item.id}", forEach: "\${list}", fallback: [] }
    response: { count: "\${size(list)}", each: "\${each}" }
`,
      ),
    )
    assertError(
      await get(`${url}/required`),
      502,
      'DOWNSTREAM_FAILURE',
      'extra failed: ${list} has 101 items, over the 100 that each accepts (maxItems)',
      ['extra'],
    )
    const optional = await get(`${url}/optional`)
    assert.equal(optional.status, 200)
    assert.deepEqual(optional.body, { count: 101, each: [], partialData: true })
    assert.equal(stub.requestsTo('GET /items/:id').length, 0)
  })

  test('itemFallback: a failed item takes it, the list keeps its length and order, and the answer is partial', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /items/:id', (req) =>
      req.params.id === '2' ? json({ error: 'boom' }, { status: 500 }) : json({ name: `item ${req.params.id}` }),
    )
    const { url } = await startGateway(
      t,
      gateway(
        stub,
        `  POST /screen:
    calls:
      items:
        request: "GET main /items/\${item}"
        forEach: "\${request.body.ids}"
        itemFallback: { name: "unknown \${item}" }
`,
      ),
    )
    const res = await post(`${url}/screen`, { ids: [1, 2, 3, 2] })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, {
      items: [{ name: 'item 1' }, { name: 'unknown 2' }, { name: 'item 3' }, { name: 'unknown 2' }],
      partialData: true,
    })
    assert.equal(res.headers['baton-degraded'], 'items')
    // Identical requests are made once: /items/2 once for both of its items.
    assert.equal(stub.requestsTo('GET /items/:id').length, 3)
  })

  test('into with scalar items: each becomes { <as>: item, <into>: result }', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', (req) => json({ name: `user ${req.params.id}` }))
    const { url } = await startGateway(
      t,
      gateway(
        stub,
        `  POST /screen:
    calls:
      users: { request: "GET main /users/\${id}", forEach: "\${request.body.ids}", as: id, into: user }
`,
      ),
    )
    const res = await post(`${url}/screen`, { ids: [7, 'x'] })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, {
      users: [
        { id: 7, user: { name: 'user 7' } },
        { id: 'x', user: { name: 'user x' } },
      ],
    })
  })
})

describe("an empty path segment is never sent: the client's mistake is a 400 naming the input", () => {
  const yaml = (stub: Stub): string =>
    gateway(
      stub,
      `  POST /cart:
    calls:
      cart: { request: "GET main /carts/\${request.body.cartId}" }
  POST /optional:
    calls:
      cart: { request: "GET main /carts/\${request.body.cartId}", fallback: null }
  GET /from-a-service:
    calls:
      user: { request: GET main /user }
      prefs: { request: "GET extra /prefs/\${user.prefsId}", fallback: { theme: light } }
`,
    )

  test('missing, null or empty in the request: 400 BAD_REQUEST naming it, and the service sees nothing (even for an optional call)', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /carts', json({ everyone: 'all carts' }))
    stub.route('GET /carts/:id', json({ id: 'c' }))
    const { url } = await startGateway(t, yaml(stub))
    for (const body of [{}, { cartId: null }, { cartId: '' }]) {
      for (const path of ['/cart', '/optional']) {
        assertError(
          await post(`${url}${path}`, body),
          400,
          'BAD_REQUEST',
          'request.body.cartId is missing or empty, and a path segment cannot be empty',
          ['main'],
        )
      }
    }
    assert.equal(stub.requests.length, 0)
    assert.equal((await post(`${url}/cart`, { cartId: 'c' })).status, 200)
  })

  test('empty in a service answer: the call cannot be made (an optional call falls back), never GET /prefs/', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /user', json({ name: 'Ada', prefsId: null }))
    stub.route('GET /prefs', json({ everyone: true }))
    const { url } = await startGateway(t, yaml(stub))
    const res = await get(`${url}/from-a-service`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { user: { name: 'Ada', prefsId: null }, prefs: { theme: 'light' }, partialData: true })
    assert.equal(stub.requestsTo('GET /prefs').length, 0)
  })
})

describe('baton plan and baton check: the worst case of a forEach', () => {
  const config = `version: 1
gateway: { name: Plan }
services:
  main: { url: "http://main.local", timeout: 100ms }
endpoints:
  GET /screen:
    timeout: 1500ms
    calls:
      ids: { request: GET main /ids }
      items: { request: "GET main /items/\${item}", forEach: "\${ids}", concurrency: 10, maxItems: 300, fallback: [] }
`

  test('per item × ⌈items ÷ concurrency⌉, bounded by maxItems, shown in the plan', () => {
    const { plan } = compileText('baton.yaml', config, { env: {} })
    const text = renderPlan(plan)
    const row = text.split('\n').find((line) => line.includes('items (main): GET'))
    assert.ok(row !== undefined)
    assert.match(row, /\| 100ms × ⌈n ÷ 10⌉ \(n ≤ 300: 3s\) \(deadline\) \|/)
  })

  test('an optional call that can outlive the deadline is warned about, at the call', () => {
    const { diagnostics } = compileText('baton.yaml', config, { env: {} })
    const warning = diagnostics.find((d) => d.code === 'BATON_OPTIONAL_OVER_DEADLINE')
    assert.deepEqual(
      warning && {
        severity: warning.severity,
        line: warning.line,
        path: warning.path.join(' › '),
        message: warning.message,
      },
      {
        severity: 'warning',
        line: 10,
        path: 'endpoints › GET /screen › calls › items',
        message:
          "items can run 3s (100ms × ⌈n ÷ 10⌉, n ≤ 300), past the endpoint's 1500ms deadline: when the deadline comes it takes its fallback",
      },
    )
  })
})

describe('metrics: a fallback is counted only when one was served', () => {
  test('an optional call that failed in a request that failed anyway: its failure counted, no fallback', async (t) => {
    const stub = await stubFor(t)
    // recs fails first (and takes its fallback); user fails after it, so the answer is a 502.
    stub.route('GET /user', async () => {
      await new Promise((resolve) => setTimeout(resolve, 100))
      return json({ error: 'down' }, { status: 500 })
    })
    stub.route('GET /recs', json({ error: 'down' }, { status: 503 }))
    const { url } = await startGateway(
      t,
      gateway(
        stub,
        `  GET /screen:
    calls:
      user: { request: GET main /user }
      recs: { request: GET extra /recs, fallback: [] }
  GET /partial:
    calls:
      recs: { request: GET extra /recs, fallback: [] }
`,
      ),
    )
    assert.equal((await get(`${url}/screen`)).status, 502)
    assert.equal((await get(`${url}/partial`)).status, 200)
    const text = await (await fetch(`${url}/metrics`)).text()
    const outcomes = text
      .split('\n')
      .filter((l) => l.startsWith('baton_call_outcomes_total{') && l.includes('call="recs"'))
      .sort()
    assert.deepEqual(outcomes, [
      'baton_call_outcomes_total{method="GET",route="/partial",call="recs",service="extra",outcome="fallback"} 1',
      'baton_call_outcomes_total{method="GET",route="/partial",call="recs",service="extra",outcome="status_5xx"} 1',
      'baton_call_outcomes_total{method="GET",route="/screen",call="recs",service="extra",outcome="status_5xx"} 1',
    ])
  })
})

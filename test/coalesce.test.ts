/**
 * Coalescing: identical calls in flight at the same moment, from any client requests, share one
 * upstream request. Counted at the stub; the stub holds its answer until every client request
 * is in flight at the gateway (read off its in-flight gauge).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { renderPlan } from '../src/cli/plan.ts'
import { compileText } from '../src/plan/compile.ts'
import { diagnosticsOf } from './helpers/config.ts'
import { get, inFlight, startGateway, stubFor, type ClientResponse } from './helpers/gateway.ts'
import { captureLog } from './helpers/log.ts'
import { gate } from './helpers/resilience.ts'
import { eventually, json, type Stub } from './helpers/stub.ts'

function config(stub: Stub, service = '', call = ''): string {
  return `
version: 1
gateway: { name: Coalesce, logLevel: silent }
services:
  users: { url: "${stub.url}"${service} }
endpoints:
  GET /profile/{id}:
    timeout: 5s
    calls:
      user: { request: "GET users /users/\${request.params.id}"${call} }
  GET /hurried/{id}:
    timeout: 300ms
    calls:
      user: { request: "GET users /users/\${request.params.id}"${call} }
  POST /write/{id}:
    calls:
      user: { request: "POST users /users/\${request.params.id}"${call} }
`
}

async function metric(url: string, name: string): Promise<string[]> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return text.split('\n').filter((l) => l.startsWith(name))
}

describe('identical calls in flight share one upstream request', () => {
  test('20 concurrent requests for one profile: the service sees one request, every client gets the answer', async (t) => {
    const stub = await stubFor(t)
    const release = gate()
    stub.route('GET /users/:id', release.hold(json({ id: 7, name: 'Ada' })))
    const { url } = await startGateway(t, config(stub))
    // Each request differs (its query, which no call reads): the endpoint runs each; their calls share.
    const answers = Array.from({ length: 20 }, async (_, i) => await get(`${url}/profile/7?client=${i}`))
    await inFlight(url, 20)
    release.open()
    for (const res of await Promise.all(answers)) {
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { user: { id: 7, name: 'Ada' } })
    }
    assert.equal(stub.requestsTo('GET /users/:id').length, 1)
    assert.deepEqual(await metric(url, 'baton_coalesced_calls_total'), [
      'baton_coalesced_calls_total{service="users"} 19',
    ])
    // Once answered, the next request makes its own call: nothing is cached.
    assert.equal((await get(`${url}/profile/7`)).status, 200)
    assert.equal(stub.requestsTo('GET /users/:id').length, 2)
  })

  test('different paths, a POST, or coalesce: false do not share', async (t) => {
    for (const [what, service, call, paths, expected] of [
      ['different ids', '', '', ['/profile/1?c=1', '/profile/2?c=2', '/profile/1?c=3'], 2],
      [
        'coalesce: false on the service',
        ', coalesce: false',
        '',
        ['/profile/1?c=1', '/profile/1?c=2', '/profile/1?c=3'],
        3,
      ],
      ['coalesce: false on the call', '', ', coalesce: false', ['/profile/1?c=1', '/profile/1?c=2'], 2],
    ] as const) {
      await t.test(what, async (t) => {
        const stub = await stubFor(t)
        const release = gate()
        stub.route('GET /users/:id', release.hold(json({ ok: true })))
        const { url } = await startGateway(t, config(stub, service, call))
        const answers = paths.map(async (p) => await get(`${url}${p}`))
        await inFlight(url, paths.length)
        release.open()
        for (const res of await Promise.all(answers)) assert.equal(res.status, 200)
        assert.equal(stub.requestsTo('GET /users/:id').length, expected)
      })
    }
    await t.test('POST calls are not coalesced unless the call says so', async (t) => {
      const stub = await stubFor(t)
      const release = gate()
      stub.route('POST /users/:id', release.hold(json({ ok: true })))
      const { url } = await startGateway(t, config(stub))
      const post = async (): Promise<ClientResponse> => {
        const res = await fetch(`${url}/write/1`, { method: 'POST' })
        return { status: res.status, headers: {}, body: await res.json() }
      }
      const answers = [post(), post()]
      await inFlight(url, 2)
      release.open()
      for (const res of await Promise.all(answers)) assert.equal(res.status, 200)
      assert.equal(stub.requestsTo('POST /users/:id').length, 2)
    })
  })

  test('a waiter whose own deadline passes leaves; the shared request goes on for the others', async (t) => {
    const stub = await stubFor(t)
    const release = gate()
    stub.route('GET /users/:id', release.hold(json({ id: 7 })))
    const { url } = await startGateway(t, config(stub))
    const patient = get(`${url}/profile/7`)
    await inFlight(url, 1)
    const hurried = await get(`${url}/hurried/7`)
    assert.equal(hurried.status, 504)
    release.open()
    const res = await patient
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { user: { id: 7 } })
    const seen = stub.requestsTo('GET /users/:id')
    assert.equal(seen.length, 1)
    assert.equal(seen[0]?.aborted, false)
  })

  test('when every waiter has left, the shared request is aborted', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', () => new Promise(() => {}))
    const { url } = await startGateway(t, config(stub))
    const answers = await Promise.all([get(`${url}/hurried/7`), get(`${url}/hurried/7`)])
    assert.deepEqual(
      answers.map((r) => r.status),
      [504, 504],
    )
    await eventually(() => stub.requestsTo('GET /users/:id').every((r) => r.closed), 'the shared request to close')
    const seen = stub.requestsTo('GET /users/:id')
    assert.equal(seen.length, 1)
    assert.equal(seen[0]?.aborted, true)
  })

  test('callers with different forwarded credentials never share: each gets the answer for its own', async (t) => {
    const stub = await stubFor(t)
    const release = gate()
    stub.route('GET /users/:id', async (req) => {
      await release.hold(json({}))(req)
      return json({ who: req.headers.authorization })
    })
    const { url } = await startGateway(t, config(stub, ', forwardHeaders: [authorization]'))
    const asUser = (token: string, i: number): Promise<ClientResponse> =>
      get(`${url}/profile/me?c=${i}`, { authorization: `Bearer ${token}` })
    const answers = [asUser('alice', 1), asUser('bob', 2), asUser('alice', 3)]
    await inFlight(url, 3)
    release.open()
    assert.deepEqual(
      (await Promise.all(answers)).map((r) => r.body),
      [{ user: { who: 'Bearer alice' } }, { user: { who: 'Bearer bob' } }, { user: { who: 'Bearer alice' } }],
    )
    assert.equal(stub.requestsTo('GET /users/:id').length, 2)
  })
})

describe('identical requests in flight share one run (endpoint coalescing)', () => {
  test('20 identical requests: one run, one upstream request, each answer with its own request id', async (t) => {
    const stub = await stubFor(t)
    const release = gate()
    stub.route('GET /users/:id', release.hold(json({ id: 7, name: 'Ada' })))
    const { logger, lines } = captureLog()
    const { url } = await startGateway(t, config(stub), { logger })
    const answers = Array.from(
      { length: 20 },
      async (_, i) => await get(`${url}/profile/7`, { 'x-request-id': `client-${i}`, traceparent: traceparent(i) }),
    )
    await inFlight(url, 20)
    release.open()
    const got = await Promise.all(answers)
    got.forEach((res, i) => {
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { user: { id: 7, name: 'Ada' } })
      assert.equal(res.headers['x-request-id'], `client-${i}`)
      assert.equal(res.headers['cache-control'], 'no-store')
    })
    assert.equal(stub.requestsTo('GET /users/:id').length, 1)
    assert.deepEqual(await metric(url, 'baton_coalesced_requests_total{method="GET",route="/profile/:id"}'), [
      'baton_coalesced_requests_total{method="GET",route="/profile/:id"} 19',
    ])
    // One log line per request: the run's own (its calls, its outcome), and 19 naming the run they got their answer from.
    // (The gauge's scrapes of /metrics have lines of their own.)
    const logged = lines.filter((l) => l.event === 'request' && String(l.requestId).startsWith('client-'))
    assert.deepEqual(logged.map((l) => l.requestId).sort(), got.map((_, i) => `client-${i}`).sort())
    const ran = logged.filter((l) => l.sharedRun === undefined)
    assert.equal(ran.length, 1)
    const waited = logged.filter((l) => l.sharedRun !== undefined)
    assert.deepEqual(
      waited.map((l) => [l.sharedRun, l.status]),
      waited.map(() => [ran[0]?.requestId, 200]),
    )
    assert.match(String(waited[0]?.msg), / \(run of client-\d+\)$/)
    // Each timed from its own arrival: they all waited for the service.
    for (const l of waited) assert.ok(Number(l.durationMs) > 1, `durationMs ${String(l.durationMs)}`)
    // The calls did not need to coalesce: there was one run.
    assert.deepEqual(await metric(url, 'baton_coalesced_calls_total'), [])
    // Every request is counted, the 19 that waited as well.
    assert.deepEqual(await metric(url, 'baton_requests_total{method="GET",route="/profile/:id"'), [
      'baton_requests_total{method="GET",route="/profile/:id",status_class="2xx",outcome="complete"} 20',
    ])
    // Once answered, the next request runs again: nothing is kept.
    assert.equal((await get(`${url}/profile/7`)).status, 200)
    assert.equal(stub.requestsTo('GET /users/:id').length, 2)
  })

  test('a partial answer shared by a run is partial for every request that waited: metrics and log lines', async (t) => {
    const stub = await stubFor(t)
    const release = gate()
    stub.route('GET /users/:id', release.hold(json({ id: 7 })))
    stub.route('GET /extras/:id', json({}, { status: 503 }))
    const { logger, lines } = captureLog()
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Coalesce }
services:
  users: { url: "${stub.url}" }
endpoints:
  GET /profile/{id}:
    calls:
      user: { request: "GET users /users/\${request.params.id}" }
      extras: { request: "GET users /extras/\${request.params.id}", required: false, fallback: null }
`,
      { logger },
    )
    const answers = Array.from(
      { length: 5 },
      async (_, i) => await get(`${url}/profile/7`, { 'x-request-id': `c-${i}` }),
    )
    await inFlight(url, 5)
    release.open()
    for (const res of await Promise.all(answers)) {
      assert.equal(res.status, 200)
      assert.equal(res.headers['baton-degraded'], 'extras')
    }
    assert.deepEqual(await metric(url, 'baton_requests_total{method="GET",route="/profile/:id"'), [
      'baton_requests_total{method="GET",route="/profile/:id",status_class="2xx",outcome="partial"} 5',
    ])
    const logged = lines.filter((l) => l.event === 'request' && String(l.requestId).startsWith('c-'))
    assert.deepEqual(
      logged.map((l) => l.outcome),
      ['partial', 'partial', 'partial', 'partial', 'partial'],
    )
    assert.equal(logged.filter((l) => l.sharedRun !== undefined).length, 4)
  })

  test('another query, another header value or another caller: a run of its own', async (t) => {
    const stub = await stubFor(t)
    const release = gate()
    stub.route('GET /users/:id', async (req) => {
      await release.hold(json({}))(req)
      return json({ who: req.headers.authorization ?? null })
    })
    const { url } = await startGateway(t, config(stub, ', forwardHeaders: [authorization]'))
    const answers = [
      get(`${url}/profile/7`, { authorization: 'Bearer alice' }),
      get(`${url}/profile/7`, { authorization: 'Bearer bob' }),
      get(`${url}/profile/7?page=2`, { authorization: 'Bearer alice' }),
      get(`${url}/profile/7`, { authorization: 'Bearer alice', 'accept-language': 'fr' }),
      get(`${url}/profile/7`, { authorization: 'Bearer alice' }),
    ]
    await inFlight(url, 5)
    release.open()
    assert.deepEqual(
      (await Promise.all(answers)).map((r) => r.body),
      ['alice', 'bob', 'alice', 'alice', 'alice'].map((who) => ({ user: { who: `Bearer ${who}` } })),
    )
    // Four runs (the last request waited for the first); their calls shared what they could: alice's and bob's.
    assert.deepEqual(await metric(url, 'baton_coalesced_requests_total{method="GET",route="/profile/:id"}'), [
      'baton_coalesced_requests_total{method="GET",route="/profile/:id"} 1',
    ])
    assert.equal(stub.requestsTo('GET /users/:id').length, 2)
  })

  test('coalesce: false on the endpoint: each request runs (its calls still share)', async (t) => {
    const stub = await stubFor(t)
    const release = gate()
    stub.route('GET /users/:id', release.hold(json({ id: 7 })))
    const yaml = config(stub).replace('  GET /profile/{id}:\n', '  GET /profile/{id}:\n    coalesce: false\n')
    const { url } = await startGateway(t, yaml)
    const answers = Array.from({ length: 3 }, async () => await get(`${url}/profile/7`))
    await inFlight(url, 3)
    release.open()
    for (const res of await Promise.all(answers)) assert.equal(res.status, 200)
    assert.equal(stub.requestsTo('GET /users/:id').length, 1)
    assert.deepEqual(await metric(url, 'baton_coalesced_calls_total'), [
      'baton_coalesced_calls_total{service="users"} 2',
    ])
    assert.deepEqual(await metric(url, 'baton_coalesced_requests_total{method="GET",route="/profile/:id"}'), [])
  })

  test('the first client leaves: the run goes on for the others; when all have left, it is aborted', async (t) => {
    const stub = await stubFor(t)
    const release = gate()
    stub.route('GET /users/:id', release.hold(json({ id: 7 })))
    const { url } = await startGateway(t, config(stub))
    const first = new AbortController()
    const leaving = fetch(`${url}/profile/7`, { signal: first.signal }).catch((err: unknown) => err)
    await inFlight(url, 1)
    const staying = get(`${url}/profile/7`)
    await inFlight(url, 2)
    first.abort()
    await leaving
    // Time for the gateway to see the first connection close (were it to end the run, the service would see an abort).
    await new Promise((resolve) => setTimeout(resolve, 100))
    release.open()
    const res = await staying
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { user: { id: 7 } })
    await leaving
    const seen = stub.requestsTo('GET /users/:id')
    assert.equal(seen.length, 1)
    assert.equal(seen[0]?.aborted, false)

    const stuck = await stubFor(t)
    stuck.route('GET /users/:id', () => new Promise(() => {}))
    const second = await startGateway(t, config(stuck))
    const clients = [new AbortController(), new AbortController()]
    const gone = clients.map(
      async (c) => await fetch(`${second.url}/profile/7`, { signal: c.signal }).catch(() => null),
    )
    await inFlight(second.url, 2)
    for (const c of clients) c.abort()
    await Promise.all(gone)
    await eventually(() => stuck.requestsTo('GET /users/:id').every((r) => r.closed), 'the shared request to close')
    assert.equal(stuck.requestsTo('GET /users/:id').length, 1)
    assert.equal(stuck.requestsTo('GET /users/:id')[0]?.aborted, true)
  })

  test('coalesce: true where requests cannot share a run: BATON_COALESCE at its line, with a hint', () => {
    const yaml = `version: 1
gateway: { name: C }
services:
  users: { url: "http://127.0.0.1:1" }
endpoints:
  POST /x:
    coalesce: true
    calls:
      user: { request: POST users /users }
  GET /y:
    coalesce: true
    calls:
      user: { request: GET users /users, coalesce: false }
  GET /z:
    coalesce: true
    cache: { ttl: 1s }
    calls:
      user: { request: GET users /users }
`
    const errors = diagnosticsOf(yaml).filter((d) => d.severity === 'error')
    assert.deepEqual(
      errors.map((d) => [d.code, d.line, d.col, d.message]),
      [
        [
          'BATON_COALESCE',
          7,
          15,
          'coalesce: true, but a POST endpoint may change what services hold: each request runs on its own',
        ],
        ['BATON_COALESCE', 11, 15, 'coalesce: true, but its call user does not coalesce'],
        ['BATON_COALESCE', 15, 15, 'coalesce: true, but its response cache collapses identical requests already'],
      ],
    )
    assert.match(errors[1]?.hint ?? '', /let user coalesce/)
    const four = `version: 1
gateway: { name: C }
services:
  users: { url: "http://127.0.0.1:1" }
endpoints:
  GET /a: { calls: { user: { request: GET users /users } } }
  GET /b: { coalesce: false, calls: { user: { request: GET users /users } } }
  POST /c: { calls: { user: { request: GET users /users } } }
  GET /d: { response: { ok: true } }
`
    assert.deepEqual(
      compileText('t.yaml', four).plan.endpoints.map((e) => e.coalesce),
      [true, false, false, false],
    )
    // baton plan says so in its caching table.
    const rows = renderPlan(compileText('t.yaml', four).plan)
      .split('\n')
      .filter((line) => line.includes('No cache'))
    assert.deepEqual(
      rows.map((line) => line.split('|')[2]?.trim()),
      ['No cache (in flight: coalesced)', 'No cache', 'No cache', 'No cache'],
    )
  })
})

function traceparent(i: number): string {
  return `00-${String(i + 1).padStart(32, '0')}-${String(i + 1).padStart(16, '0')}-01`
}

/**
 * Coalescing: identical calls in flight at the same moment, from any client requests, share one
 * upstream request. Counted at the stub; the stub holds its answer until every client request
 * is in flight at the gateway (read off its in-flight gauge).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { get, startGateway, stubFor, type ClientResponse } from './helpers/gateway.ts'
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

/** Resolves once the gateway has `n` requests in flight. */
async function inFlight(url: string, n: number): Promise<void> {
  let value = -1
  const read = async (): Promise<number> => {
    const text = await (await fetch(`${url}/metrics`)).text()
    return Number(/^baton_requests_in_flight (\d+)$/m.exec(text)?.[1] ?? -1)
  }
  for (let i = 0; i < 500 && value !== n; i++) {
    value = await read()
    if (value !== n) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  assert.equal(value, n, `${n} requests in flight at the gateway`)
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
    const answers = Array.from({ length: 20 }, async () => await get(`${url}/profile/7`))
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
      ['different ids', '', '', ['/profile/1', '/profile/2', '/profile/1'], 2],
      ['coalesce: false on the service', ', coalesce: false', '', ['/profile/1', '/profile/1', '/profile/1'], 3],
      ['coalesce: false on the call', '', ', coalesce: false', ['/profile/1', '/profile/1'], 2],
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
    const asUser = (token: string): Promise<ClientResponse> =>
      get(`${url}/profile/me`, { authorization: `Bearer ${token}` })
    const answers = [asUser('alice'), asUser('bob'), asUser('alice')]
    await inFlight(url, 3)
    release.open()
    assert.deepEqual(
      (await Promise.all(answers)).map((r) => r.body),
      [{ user: { who: 'Bearer alice' } }, { user: { who: 'Bearer bob' } }, { user: { who: 'Bearer alice' } }],
    )
    assert.equal(stub.requestsTo('GET /users/:id').length, 2)
  })
})

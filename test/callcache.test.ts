/**
 * The per-call cache: identical calls answered from memory, for a fixed ttl or as the service's
 * own Cache-Control allows (RFC 9111). Counted at the stub; time is a fake clock, moved on by the
 * test instead of waited for.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { renderPlan } from '../src/cli/plan.ts'
import { compileText } from '../src/plan/compile.ts'
import { diagnosticsOf } from './helpers/config.ts'
import { get, startGateway, stubFor } from './helpers/gateway.ts'
import { SPAN_KIND, startCollector } from './helpers/otlp.ts'
import { fakeClock, inTurn } from './helpers/resilience.ts'
import { json, type Reply, type Stub, type StubRequest } from './helpers/stub.ts'

function config(stub: Stub, service = '', call = '', more = ''): string {
  return `
version: 1
gateway: { name: CallCache, logLevel: silent }
services:
  users: { url: "${stub.url}"${service} }
endpoints:
  GET /profile/{id}:
    calls:
      user: { request: "GET users /users/\${request.params.id}"${call} }
  POST /touch/{id}:
    calls:
      user: { request: "POST users /users/\${request.params.id}" }
${more}`
}

async function lookups(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const counts: Record<string, number> = {}
  for (const m of text.matchAll(/^baton_call_cache_lookups_total\{([^}]*)\} (\d+)$/gm)) {
    const labels = m[1] as string
    const result = /result="(\w+)"/.exec(labels)?.[1] as string
    assert.match(labels, /service="users"/)
    counts[`${/call="(\w+)"/.exec(labels)?.[1]}:${result}`] = Number(m[2])
  }
  return counts
}

/** Answers with these headers; what it was asked, so far. */
function answering(stub: Stub, headers: Record<string, string>): () => StubRequest[] {
  stub.route('GET /users/:id', json({ id: 7, name: 'Ada' }, { headers }))
  return () => stub.requestsTo('GET /users/:id')
}

describe('cache: { ttl }', () => {
  test('two requests make one upstream call; once the ttl has passed, a second one', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', json({ id: 7, name: 'Ada' }))
    const clock = fakeClock()
    const { url } = await startGateway(t, config(stub, '', ', cache: { ttl: 30s }'), { clock })
    for (let i = 0; i < 2; i++) {
      const res = await get(`${url}/profile/7`)
      assert.equal(res.status, 200)
      assert.deepEqual(res.body, { user: { id: 7, name: 'Ada' } })
    }
    assert.equal(stub.requestsTo('GET /users/:id').length, 1)
    // Another id is another request.
    assert.equal((await get(`${url}/profile/8`)).status, 200)
    assert.equal(stub.requestsTo('GET /users/:id').length, 2)
    clock.advance(29_999)
    assert.equal((await get(`${url}/profile/7`)).status, 200)
    assert.equal(stub.requestsTo('GET /users/:id').length, 2)
    clock.advance(1)
    assert.deepEqual((await get(`${url}/profile/7`)).body, { user: { id: 7, name: 'Ada' } })
    assert.equal(stub.requestsTo('GET /users/:id').length, 3)
    assert.deepEqual(await lookups(url), { 'user:hit': 2, 'user:miss': 3 })
  })

  test("the service's cache applies to its GET calls, not its POST calls; a call's cache: false opts out", async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', json({ id: 7 }))
    stub.route('POST /users/:id', json({ id: 7 }))
    const more = `  GET /fresh/{id}:
    calls:
      user: { request: "GET users /users/\${request.params.id}", cache: false }
`
    const { url } = await startGateway(t, config(stub, ', cache: { ttl: 1m }', '', more))
    for (const path of ['/profile/7', '/profile/7', '/fresh/7', '/fresh/7'])
      assert.equal((await get(`${url}${path}`)).status, 200)
    assert.equal(stub.requestsTo('GET /users/:id').length, 3)
    for (let i = 0; i < 2; i++) assert.equal((await fetch(`${url}/touch/7`, { method: 'POST' })).status, 200)
    assert.equal(stub.requestsTo('POST /users/:id').length, 2)
  })

  test('a hit makes no request: no client span in the trace, the server span as usual', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', json({ id: 7 }))
    const collector = await startCollector(t)
    const yaml = config(stub, '', ', cache: { ttl: 1m }').replace(
      'logLevel: silent }',
      `logLevel: silent, tracing: { endpoint: "${collector.url}" } }`,
    )
    const gateway = await startGateway(t, yaml)
    for (let i = 0; i < 2; i++) assert.equal((await get(`${gateway.url}/profile/7`)).status, 200)
    await gateway.close()
    const kinds = collector.spans.map((s) => s.kind)
    assert.equal(kinds.filter((k) => k === SPAN_KIND.SERVER).length, 2)
    assert.equal(kinds.filter((k) => k === SPAN_KIND.CLIENT).length, 1)
    assert.equal(stub.requestsTo('GET /users/:id').length, 1)
  })

  test('an answer outside 2xx is never cached', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', inTurn(json({ error: 'boom' }, { status: 500 }), json({ id: 7 })))
    const { url } = await startGateway(t, config(stub, '', ', cache: { ttl: 1m }'))
    assert.equal((await get(`${url}/profile/7`)).status, 502)
    assert.deepEqual((await get(`${url}/profile/7`)).body, { user: { id: 7 } })
    assert.deepEqual((await get(`${url}/profile/7`)).body, { user: { id: 7 } })
    assert.equal(stub.requestsTo('GET /users/:id').length, 2)
    assert.deepEqual(await lookups(url), { 'user:hit': 1, 'user:miss': 2 })
  })

  test("callers with different forwarded Authorization never share an entry; the same caller's do", async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', (req) => json({ seenBy: req.headers.authorization }))
    const { url } = await startGateway(t, config(stub, ', forwardHeaders: [authorization]', ', cache: { ttl: 1m }'))
    const as = async (token: string): Promise<unknown> =>
      (await get(`${url}/profile/7`, { authorization: `Bearer ${token}` })).body
    assert.deepEqual(await as('alice'), { user: { seenBy: 'Bearer alice' } })
    assert.deepEqual(await as('bob'), { user: { seenBy: 'Bearer bob' } })
    assert.deepEqual(await as('alice'), { user: { seenBy: 'Bearer alice' } })
    assert.deepEqual(await as('bob'), { user: { seenBy: 'Bearer bob' } })
    assert.equal(stub.requestsTo('GET /users/:id').length, 2)
  })

  test('a cached body serves many answers unchanged (forEach into builds new objects around it)', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users', json([{ id: 1 }, { id: 2 }]))
    stub.route('GET /users/:id', (req) => json({ name: `user ${req.params.id}` }))
    const more = `  GET /team:
    calls:
      members: { request: "GET users /users", cache: { ttl: 1m } }
      details: { request: "GET users /users/\${m.id}", forEach: "\${members}", as: m, into: detail }
    response:
      members: \${members}
      details: \${details}
`
    const { url } = await startGateway(t, config(stub, '', '', more))
    const expected = {
      members: [{ id: 1 }, { id: 2 }],
      details: [
        { id: 1, detail: { name: 'user 1' } },
        { id: 2, detail: { name: 'user 2' } },
      ],
    }
    for (let i = 0; i < 3; i++) assert.deepEqual((await get(`${url}/team`)).body, expected)
    assert.equal(stub.requestsTo('GET /users').length, 1)
    assert.equal(stub.requestsTo('GET /users/:id').length, 6)
  })
})

describe('cache: { honor: true }', () => {
  const HONOR = ', cache: { honor: true }'

  test('Cache-Control: max-age=60 is kept 60 s', async (t) => {
    const stub = await stubFor(t)
    const seen = answering(stub, { 'cache-control': 'max-age=60' })
    const clock = fakeClock()
    const { url } = await startGateway(t, config(stub, HONOR), { clock })
    for (let i = 0; i < 3; i++) assert.deepEqual((await get(`${url}/profile/7`)).body, { user: { id: 7, name: 'Ada' } })
    assert.equal(seen().length, 1)
    clock.advance(61_000)
    assert.equal((await get(`${url}/profile/7`)).status, 200)
    assert.equal(seen().length, 2)
    assert.deepEqual(await lookups(url), { 'user:hit': 2, 'user:miss': 2 })
  })

  test('no-store, private, or no freshness at all: not kept', async (t) => {
    for (const headers of [
      { 'cache-control': 'no-store' },
      { 'cache-control': 'private, max-age=60' },
      {},
      { 'cache-control': 'max-age=0' },
    ] as Record<string, string>[]) {
      await t.test(JSON.stringify(headers), async (t) => {
        const stub = await stubFor(t)
        const seen = answering(stub, headers)
        const { url } = await startGateway(t, config(stub, HONOR))
        for (let i = 0; i < 2; i++) assert.equal((await get(`${url}/profile/7`)).status, 200)
        assert.equal(seen().length, 2)
        assert.deepEqual(await lookups(url), { 'user:bypass': 2 })
      })
    }
  })

  test('Expires is followed', async (t) => {
    const stub = await stubFor(t)
    const seen = answering(stub, { expires: new Date(Date.now() + 120_000).toUTCString() })
    const clock = fakeClock()
    const { url } = await startGateway(t, config(stub, HONOR), { clock })
    for (let i = 0; i < 2; i++) assert.equal((await get(`${url}/profile/7`)).status, 200)
    assert.equal(seen().length, 1)
    clock.advance(121_000)
    assert.equal((await get(`${url}/profile/7`)).status, 200)
    assert.equal(seen().length, 2)
  })

  test('stale with an ETag: revalidated with If-None-Match; a 304 serves the stored body and keeps it fresh', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', (req): Reply => {
      if (req.headers['if-none-match'] === '"v1"') {
        return {
          kind: 'send',
          status: 304,
          headers: { 'cache-control': 'max-age=60', etag: '"v1"' },
          body: '',
          delay: 0,
          chunked: false,
        }
      }
      return json({ id: 7, name: 'Ada' }, { headers: { 'cache-control': 'max-age=60', etag: '"v1"' } })
    })
    const seen = (): StubRequest[] => stub.requestsTo('GET /users/:id')
    const clock = fakeClock()
    const { url } = await startGateway(t, config(stub, HONOR), { clock })
    assert.equal((await get(`${url}/profile/7`)).status, 200)
    assert.equal(seen()[0]?.headers['if-none-match'], undefined)
    clock.advance(61_000)
    const res = await get(`${url}/profile/7`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { user: { id: 7, name: 'Ada' } })
    assert.equal(seen().length, 2)
    assert.equal(seen()[1]?.headers['if-none-match'], '"v1"')
    // The 304 made it fresh for another 60 s.
    clock.advance(30_000)
    assert.deepEqual((await get(`${url}/profile/7`)).body, { user: { id: 7, name: 'Ada' } })
    assert.equal(seen().length, 2)
    assert.deepEqual(await lookups(url), { 'user:hit': 1, 'user:miss': 1, 'user:stale': 1 })
  })

  test('stale with Last-Modified: revalidated with If-Modified-Since; a new 200 replaces the entry', async (t) => {
    const stub = await stubFor(t)
    const modified = new Date(Date.now() - 3_600_000).toUTCString()
    stub.route(
      'GET /users/:id',
      inTurn(
        json({ v: 1 }, { headers: { 'cache-control': 'max-age=10', 'last-modified': modified } }),
        json({ v: 2 }, { headers: { 'cache-control': 'max-age=10' } }),
      ),
    )
    const seen = (): StubRequest[] => stub.requestsTo('GET /users/:id')
    const clock = fakeClock()
    const { url } = await startGateway(t, config(stub, HONOR), { clock })
    assert.deepEqual((await get(`${url}/profile/7`)).body, { user: { v: 1 } })
    clock.advance(11_000)
    assert.deepEqual((await get(`${url}/profile/7`)).body, { user: { v: 2 } })
    assert.equal(seen()[1]?.headers['if-modified-since'], modified)
    assert.deepEqual((await get(`${url}/profile/7`)).body, { user: { v: 2 } })
    assert.equal(seen().length, 2)
  })

  test('no-cache with an ETag: every call revalidates', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', (req): Reply => {
      const headers = { 'cache-control': 'no-cache', etag: '"v1"' }
      if (req.headers['if-none-match'] === '"v1"')
        return { kind: 'send', status: 304, headers, body: '', delay: 0, chunked: false }
      return json({ id: 7 }, { headers })
    })
    const { url } = await startGateway(t, config(stub, HONOR))
    for (let i = 0; i < 3; i++) assert.deepEqual((await get(`${url}/profile/7`)).body, { user: { id: 7 } })
    const seen = (): StubRequest[] => stub.requestsTo('GET /users/:id')
    assert.deepEqual(
      seen().map((r) => r.headers['if-none-match'] ?? null),
      [null, '"v1"', '"v1"'],
    )
  })

  test("private answers are kept per caller when the call forwards the caller's Authorization", async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users/:id', (req) =>
      json({ seenBy: req.headers.authorization }, { headers: { 'cache-control': 'private, max-age=60' } }),
    )
    const { url } = await startGateway(t, config(stub, ', forwardHeaders: [authorization]' + HONOR))
    const as = async (token: string): Promise<unknown> =>
      (await get(`${url}/profile/7`, { authorization: `Bearer ${token}` })).body
    for (const who of ['alice', 'bob', 'alice', 'bob'])
      assert.deepEqual(await as(who), { user: { seenBy: `Bearer ${who}` } })
    assert.equal(stub.requestsTo('GET /users/:id').length, 2)
  })

  test("the service's own token does not stop an answer from being kept", async (t) => {
    const stub = await stubFor(t)
    const seen = answering(stub, { 'cache-control': 'max-age=60' })
    const { url } = await startGateway(t, config(stub, ', auth: { bearer: "${env.T}" }' + HONOR), {
      env: { T: 't0ken' },
    })
    for (let i = 0; i < 2; i++) assert.equal((await get(`${url}/profile/7`)).status, 200)
    assert.equal(seen().length, 1)
    assert.equal(seen()[0]?.headers.authorization, 'Bearer t0ken')
  })
})

describe('cache config', () => {
  test('a POST call with a cache: BATON_CACHE_METHOD at its line, with a hint', () => {
    const yaml = `version: 1
gateway: { name: C }
services:
  users: { url: "http://127.0.0.1:1" }
endpoints:
  POST /x:
    calls:
      user:
        request: POST users /users
        cache: { ttl: 30s }
`
    const errors = diagnosticsOf(yaml).filter((d) => d.severity === 'error')
    assert.deepEqual(
      errors.map((d) => [d.code, d.line, d.col, d.message]),
      [['BATON_CACHE_METHOD', 10, 9, 'user is a POST call: only GET and HEAD answers are cached']],
    )
    assert.match(errors[0]?.hint ?? '', /remove cache here/)
  })

  test('ttl and honor together, honor: false, or a bad ttl: BATON_INVALID_VALUE with how to write it', () => {
    for (const [where, cache] of [
      ['service', '{ ttl: 30s, honor: true }'],
      ['call', '{ ttl: 30s, honor: true }'],
      ['call', '{ honor: false }'],
      ['call', '{ ttl: soon }'],
      ['service', '{ ttl: 0s }'],
    ]) {
      const service = where === 'service' ? `, cache: ${cache}` : ''
      const call = where === 'call' ? `, cache: ${cache}` : ''
      const yaml = `version: 1
gateway: { name: C }
services:
  users: { url: "http://127.0.0.1:1"${service} }
endpoints:
  GET /x:
    calls:
      user: { request: GET users /users${call} }
`
      const errors = diagnosticsOf(yaml).filter((d) => d.severity === 'error')
      assert.equal(errors.length, 1, `${where} ${cache}: ${JSON.stringify(errors)}`)
      assert.equal(errors[0]?.code, 'BATON_INVALID_VALUE')
      assert.equal(errors[0]?.line, where === 'service' ? 4 : 8, `${where} ${cache}`)
      assert.match(`${errors[0]?.message} ${errors[0]?.hint}`, /ttl|duration/, `${where} ${cache}`)
    }
  })

  test("baton plan shows each call's cache", () => {
    const { plan } = compileText(
      'baton.yaml',
      `version: 1
gateway: { name: Plan }
services:
  users: { url: "http://users.internal", cache: { honor: true } }
endpoints:
  GET /x:
    calls:
      a: { request: GET users /a, cache: { ttl: 30s } }
      b: { request: GET users /b }
      c: { request: GET users /c, cache: false }
`,
    )
    const rows = renderPlan(plan)
      .split('\n')
      .filter((l) => /^\| 1 /.test(l))
      .map((l) => l.split('|')[2]?.trim())
    assert.deepEqual(rows, ['a (users): GET /a, cache 30s', 'b (users): GET /b, cache honor', 'c (users): GET /c'])
  })
})

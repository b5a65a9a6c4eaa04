/**
 * Downstreams as they really answer: a 204 or an empty 2xx (the call's value is null, not a
 * failure), and redirects (not followed unless the service opts in with followRedirects, and
 * then on its own origin only: its credentials never go anywhere else).
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import { errorsOf } from './helpers/config.ts'
import { assertError, get, post, startGateway, stubFor } from './helpers/gateway.ts'
import { json, type Stub, text } from './helpers/stub.ts'

describe('a required call with nothing to say: its value is null', () => {
  const yaml = (stub: Stub): string => `
version: 1
gateway: { name: Empty }
services:
  s: { url: "${stub.url}" }
endpoints:
  GET /x/{how}:
    calls:
      x: { request: "GET s /\${request.params.how}" }
    response:
      value: "\${x}"
      field: "\${x.id}"
      status: "\${calls.x.status}"
      ok: "\${calls.x.ok}"
`
  for (const [how, reply, status] of [
    ['no-content', text('', { status: 204 }), 204],
    ['empty', text('', { headers: { 'content-type': 'application/json' } }), 200],
    ['empty-chunked', text('', { chunked: true }), 200],
    ['accepted', text('', { status: 202 }), 202],
  ] as const) {
    test(`${how}: ${status} without a body`, async (t) => {
      const stub = await stubFor(t)
      stub.route(`GET /${how}`, reply)
      const { url } = await startGateway(t, yaml(stub))
      const res = await get(`${url}/x/${how}`)
      assert.equal(res.status, 200)
      assert.equal(res.headers['baton-degraded'], undefined)
      assert.deepEqual(res.body, { value: null, field: null, status, ok: true })
    })
  }

  test('a 2xx whose body is not JSON is a failure, not an empty answer', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /junk', text(' ', { headers: { 'content-type': 'application/json' } }))
    const { url } = await startGateway(t, yaml(stub))
    assertError(
      await get(`${url}/x/junk`),
      502,
      'DOWNSTREAM_FAILURE',
      's failed: answered with a body that is not JSON',
      ['s'],
    )
  })
  test('informational answers first (103 Early Hints): the call takes the final answer', async (t) => {
    let seen = 0
    const server = createServer((_req, res) => {
      seen++
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":7}')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(() => new Promise((resolve) => server.close(resolve)))
    const { port } = server.address() as AddressInfo
    const { url } = await startGateway(t, yaml({ url: `http://127.0.0.1:${port}` } as Stub))
    const res = await get(`${url}/x/hinted`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { value: { id: 7 }, field: 7, status: 200, ok: true })
    assert.equal(seen, 1)
  })
})

const redirecting = (stub: Stub, follow = '', extra = ''): string => `
version: 1
gateway: { name: Redirects }
services:
  s: { url: "${stub.url}/api", auth: { bearer: "\${env.TOKEN}" }${follow}${extra} }
endpoints:
  GET /get:
    calls:
      x: { request: GET s /a }
    response: "\${x}"
  POST /post:
    calls:
      x: { request: POST s /a, body: { n: 1 } }
    response: "\${x}"
  GET /optional:
    calls:
      x: { request: GET s /a, required: false, fallback: { fell: back } }
    response: "\${x}"
`
const TOKEN = { env: { TOKEN: 'svc-token-1' } }

describe('redirects from a service', () => {
  test('not followed by default: a required call fails with 502, the Location is never asked for', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /api/a', text('', { status: 302, headers: { location: '/api/b' } }))
    stub.route('GET /api/b', json({ moved: true }))
    const { url } = await startGateway(t, redirecting(stub), TOKEN)
    assertError(
      await get(`${url}/get`),
      502,
      'DOWNSTREAM_FAILURE',
      's answered a redirect (302), which is not followed',
      ['s'],
    )
    const optional = await get(`${url}/optional`)
    assert.equal(optional.status, 200)
    assert.deepEqual(optional.body, { fell: 'back', partialData: true })
    assert.equal(optional.headers['baton-degraded'], 'x')
    assert.equal(stub.requestsTo('GET /api/b').length, 0)
  })

  test('followRedirects: a same-origin redirect is followed, with the credentials and request id on each hop', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /api/a', text('', { status: 301, headers: { location: '/api/b' } }))
    // Relative to the path it answered: /api/b → /api/c?q=1.
    stub.route('GET /api/b', text('', { status: 307, headers: { location: 'c?q=1' } }))
    stub.route('GET /api/c', json({ moved: 'twice' }))
    const { url } = await startGateway(t, redirecting(stub, ', followRedirects: 2'), TOKEN)
    const res = await get(`${url}/get`, { 'x-request-id': 'hop-1' })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { moved: 'twice' })
    assert.deepEqual(
      stub.requests.map((r) => [r.method, r.url, r.headers.authorization, r.headers['x-request-id']]),
      [
        ['GET', '/api/a', 'Bearer svc-token-1', 'hop-1'],
        ['GET', '/api/b', 'Bearer svc-token-1', 'hop-1'],
        ['GET', '/api/c?q=1', 'Bearer svc-token-1', 'hop-1'],
      ],
    )
  })

  test('303 after a POST is followed with a GET without a body; 307 resends the POST and its body', async (t) => {
    const stub = await stubFor(t)
    let first = true
    stub.route('POST /api/a', () => {
      const status = first ? 303 : 307
      const location = first ? '/api/result' : '/api/again'
      first = false
      return text('', { status, headers: { location } })
    })
    stub.route('GET /api/result', json({ via: 'get' }))
    stub.route('POST /api/again', (req) => json({ via: 'post', got: req.body }))
    const { url } = await startGateway(t, redirecting(stub, ', followRedirects: 1'), TOKEN)
    assert.deepEqual((await post(`${url}/post`, {})).body, { via: 'get' })
    const result = stub.requestsTo('GET /api/result')[0]
    assert.equal(result?.body, null)
    assert.equal(result?.headers['content-type'], undefined)
    assert.equal(result?.headers['content-length'], undefined)
    assert.deepEqual((await post(`${url}/post`, {})).body, { via: 'post', got: { n: 1 } })
    assert.equal(stub.requestsTo('POST /api/again')[0]?.headers['content-type'], 'application/json')
  })

  test('a redirect to another origin fails the call, and nothing (no credentials) is sent there', async (t) => {
    const stub = await stubFor(t)
    const elsewhere = await stubFor(t)
    elsewhere.route('GET /steal', json({ stolen: true }))
    stub.route('GET /api/a', text('', { status: 302, headers: { location: `${elsewhere.url}/steal` } }))
    const { url } = await startGateway(t, redirecting(stub, ', followRedirects: 5'), TOKEN)
    assertError(
      await get(`${url}/get`),
      502,
      'DOWNSTREAM_FAILURE',
      `s failed: redirected to another origin (${elsewhere.url}), which is never followed`,
      ['s'],
    )
    assert.equal(elsewhere.requests.length, 0)
    assert.equal(stub.requests.length, 1)
    const metrics = await (await fetch(`${url}/metrics`)).text()
    assert.match(
      metrics,
      /baton_call_outcomes_total\{method="GET",route="\/get",call="x",service="s",outcome="redirect"\} 1/,
    )
  })

  test('another scheme or host name is another origin', async (t) => {
    const stub = await stubFor(t)
    const byName = stub.url.replace('127.0.0.1', 'localhost')
    stub.route('GET /api/a', text('', { status: 308, headers: { location: `${byName}/api/b` } }))
    stub.route('GET /api/b', json({ moved: true }))
    const { url } = await startGateway(t, redirecting(stub, ', followRedirects: 5'), TOKEN)
    assertError(
      await get(`${url}/get`),
      502,
      'DOWNSTREAM_FAILURE',
      `s failed: redirected to another origin (${byName}), which is never followed`,
      ['s'],
    )
    assert.equal(stub.requestsTo('GET /api/b').length, 0)
  })

  test('more redirects than followRedirects: 502, and no more requests than allowed', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /api/a', text('', { status: 302, headers: { location: '/api/a' } }))
    const { url } = await startGateway(t, redirecting(stub, ', followRedirects: 2'), TOKEN)
    assertError(await get(`${url}/get`), 502, 'DOWNSTREAM_FAILURE', 's failed: redirected more than 2 times', ['s'])
    assert.equal(stub.requestsTo('GET /api/a').length, 3)
  })

  test('followRedirects is validated', () => {
    const config = (value: string): string => `version: 1
gateway: { name: X }
services:
  s: { url: "http://s.local", followRedirects: ${value} }
`
    for (const value of ['-1', '11', '1.5', 'yes']) {
      assert.deepEqual(
        errorsOf(config(value)).map((d) => [d.code, d.path.join(' › ')]),
        [['BATON_INVALID_VALUE', 'services › s › followRedirects']],
        value,
      )
    }
  })
})

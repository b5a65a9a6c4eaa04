/**
 * A method a path does not take is 405 METHOD_NOT_ALLOWED with an Allow header listing the ones
 * it does (routes with parameters, basePath, health and metrics included); a path nobody
 * serves stays 404, and so does an OPTIONS that is not a CORS preflight.
 */
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import { assertError, type ClientResponse, rawRequest, startGateway, stubFor } from './helpers/gateway.ts'
import { json, type Stub } from './helpers/stub.ts'

const NOT_ALLOWED = 'The path does not accept this method'
const NOT_FOUND = 'No endpoint matches this method and path'

async function setup(t: TestContext, gateway = ''): Promise<{ base: string; url: string; stub: Stub }> {
  const stub = await stubFor(t)
  stub.route('GET /x', json({ ok: true }))
  const gw = await startGateway(
    t,
    `
version: 1
gateway:
  name: Methods
  basePath: /v1
${gateway}
services:
  shop: { url: "${stub.url}" }
endpoints:
  POST /summary:
    calls: { c: { request: GET shop /x } }
  GET /users/{id}:
    calls: { c: { request: GET shop /x } }
  PUT /users/{id}:
    calls: { c: { request: GET shop /x } }
  POST /users/me:
    calls: { c: { request: GET shop /x } }
  GET /:
    calls: { c: { request: GET shop /x } }
`,
  )
  return { base: gw.url, url: `${gw.url}/v1`, stub }
}

function assertNotAllowed(res: ClientResponse, allow: string): void {
  assertError(res, 405, 'METHOD_NOT_ALLOWED', NOT_ALLOWED)
  assert.equal(res.headers.allow, allow)
  assert.ok(res.headers['x-request-id'])
}

describe('405 METHOD_NOT_ALLOWED', () => {
  test('DELETE on a POST-only path: 405, Allow: POST, and no service is called', async (t) => {
    const { url, stub } = await setup(t)
    assertNotAllowed(await rawRequest('DELETE', `${url}/summary`, {}), 'POST')
    assertNotAllowed(await rawRequest('GET', `${url}/summary?cartId=c1`, {}), 'POST')
    assertNotAllowed(await rawRequest('PATCH', `${url}/summary/`, {}), 'POST')
    assert.equal(stub.requests.length, 0)
  })

  test('a route with a parameter: DELETE /users/42 is 405 with GET, HEAD (served with GET) and PUT', async (t) => {
    const { url, stub } = await setup(t)
    assertNotAllowed(await rawRequest('DELETE', `${url}/users/42`, {}), 'GET, HEAD, PUT')
    assertNotAllowed(await rawRequest('POST', `${url}/users/42`, {}), 'GET, HEAD, PUT')
    // /users/me is POST /users/me, and GET /users/{id} and PUT /users/{id} too, as the router matches them.
    assertNotAllowed(await rawRequest('DELETE', `${url}/users/me`, {}), 'GET, HEAD, POST, PUT')
    assert.equal(stub.requests.length, 0)
  })

  test('HEAD is served with GET, and 405 on a path without GET; the basePath itself is a route', async (t) => {
    const { url } = await setup(t)
    assert.equal((await rawRequest('HEAD', `${url}/users/42`, {})).status, 200)
    const head = await rawRequest('HEAD', `${url}/summary`, {})
    assert.equal(head.status, 405)
    assert.equal(head.headers.allow, 'POST')
    assertNotAllowed(await rawRequest('DELETE', url, {}), 'GET, HEAD')
  })

  test('health and metrics paths are GET routes', async (t) => {
    const { base } = await setup(t)
    for (const path of ['/health', '/health/ready', '/metrics'])
      assertNotAllowed(await rawRequest('POST', `${base}${path}`, {}), 'GET, HEAD')
  })

  test('metrics on an admin port are no route of the main port: 404 there', async (t) => {
    const { base } = await setup(t, '  metrics: { port: 0 }')
    assertError(await rawRequest('POST', `${base}/metrics`, {}), 404, 'NOT_FOUND', NOT_FOUND)
  })

  test('a path nobody serves stays 404: unknown, outside basePath, a segment too many', async (t) => {
    const { base, url } = await setup(t)
    for (const target of [`${url}/nope`, `${base}/summary`, `${url}/users/42/orders`, `${url}/summary/x`])
      assertError(await rawRequest('DELETE', target, {}), 404, 'NOT_FOUND', NOT_FOUND)
  })

  test('an OPTIONS that is not a preflight stays 404, as with CORS', async (t) => {
    const { url } = await setup(t)
    const res = await rawRequest('OPTIONS', `${url}/summary`, {})
    assertError(res, 404, 'NOT_FOUND', NOT_FOUND)
    assert.equal(res.headers.allow, undefined)
  })

  test('with CORS: preflights are still answered, and a 405 carries the CORS headers a script needs to read it', async (t) => {
    const origin = 'https://app.example.com'
    const { url } = await setup(t, `  cors: { origins: ["${origin}"] }`)
    const pre = await rawRequest('OPTIONS', `${url}/summary`, { origin, 'access-control-request-method': 'POST' })
    assert.equal(pre.status, 204)
    assert.equal(pre.headers['access-control-allow-origin'], origin)
    const res = await rawRequest('DELETE', `${url}/summary`, { origin })
    assertNotAllowed(res, 'POST')
    assert.equal(res.headers['access-control-allow-origin'], origin)
  })

  test('with credentials demanded: a 405 needs none (no endpoint, so nothing to authenticate for)', async (t) => {
    const { url } = await setup(t, '  auth: { apiKey: { header: x-api-key, keys: { app: k-0123456789 } } }')
    assertNotAllowed(await rawRequest('DELETE', `${url}/summary`, {}), 'POST')
    assert.equal((await rawRequest('POST', `${url}/summary`, {})).status, 401)
  })
})

/** Downstreams as they really answer: a 204 or an empty 2xx (the call's value is null, not a failure). */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { assertError, get, startGateway, stubFor } from './helpers/gateway.ts'
import { type Stub, text } from './helpers/stub.ts'

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
})

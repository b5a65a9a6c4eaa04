/**
 * Compressed answers, both ways. Services are asked for compressed answers and their gzip,
 * deflate and brotli bodies are decoded, within maxResponseSize counted on the decoded size
 * (a zip bomb fails as too_large without being inflated); clients that accept it get
 * compressed answers above gateway.compression.threshold.
 */
import assert from 'node:assert/strict'
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib'
import { describe, test } from 'node:test'
import { assertError, get, startGateway, stubFor } from './helpers/gateway.ts'
import { eventually, json, type Stub, text } from './helpers/stub.ts'

const ENCODERS: Record<string, (body: Buffer) => Buffer> = {
  gzip: gzipSync,
  deflate: deflateSync,
  br: brotliCompressSync,
}

/** A JSON answer compressed with `encoding`, as a service that honours accept-encoding sends it. */
function compressed(body: unknown, encoding: string, chunked = false): ReturnType<typeof text> {
  const encode = ENCODERS[encoding] as (body: Buffer) => Buffer
  return text(encode(Buffer.from(JSON.stringify(body))), {
    headers: { 'content-type': 'application/json', 'content-encoding': encoding },
    chunked,
  })
}

const downstream = (stub: Stub, service = ''): string => `
version: 1
gateway: { name: Compressed }
services:
  s: { url: "${stub.url}", maxResponseSize: 64kb${service} }
endpoints:
  GET /x:
    calls:
      x: { request: GET s /x }
    response: "\${x}"
`

describe('answers services compress', () => {
  test('every call asks for gzip, deflate or br', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /x', json({ ok: true }))
    stub.route('GET /healthz', json({ ok: true }))
    const { url } = await startGateway(t, downstream(stub, ', health: { path: /healthz, interval: 1h }'))
    assert.equal((await get(`${url}/x`)).status, 200)
    await eventually(() => stub.requestsTo('GET /healthz').length === 1, 'the probe')
    assert.equal(stub.requestsTo('GET /x')[0]?.headers['accept-encoding'], 'gzip, deflate, br')
    assert.equal(stub.requestsTo('GET /healthz')[0]?.headers['accept-encoding'], 'gzip, deflate, br')
  })

  for (const encoding of ['gzip', 'deflate', 'br']) {
    for (const chunked of [false, true]) {
      test(`a ${encoding} answer${chunked ? ', chunked,' : ''} is decoded`, async (t) => {
        const stub = await stubFor(t)
        const body = { items: Array.from({ length: 50 }, (_, i) => ({ sku: `sku-${i}`, qty: i })) }
        stub.route('GET /x', compressed(body, encoding, chunked))
        const { url } = await startGateway(t, downstream(stub))
        const res = await get(`${url}/x`)
        assert.equal(res.status, 200)
        assert.deepEqual(res.body, body)
      })
    }
  }

  test('maxResponseSize holds for the decoded size: 3 KB of gzip that inflates to 1 MB is too large', async (t) => {
    const stub = await stubFor(t)
    const big = { pad: 'a'.repeat(1024 * 1024) }
    const reply = compressed(big, 'gzip')
    assert.ok(reply.kind === 'send' && reply.body.length < 4 * 1024, 'the compressed answer is small')
    stub.route('GET /x', reply)
    const { url } = await startGateway(t, downstream(stub))
    assertError(await get(`${url}/x`), 502, 'DOWNSTREAM_FAILURE', 's failed: answer too large', ['s'])
    const metrics = await (await fetch(`${url}/metrics`)).text()
    assert.match(metrics, /baton_call_outcomes_total\{endpoint="GET \/x",call="x",service="s",outcome="too_large"\} 1/)
  })

  test('a zip bomb is not inflated: reading stops past the limit, while the service is still sending', async (t) => {
    const stub = await stubFor(t)
    // 4096 gzip members of 1 MiB of zeros each: ~4 MB on the wire, 4 GiB inflated.
    const member = gzipSync(Buffer.alloc(1024 * 1024))
    const bomb = Buffer.concat(Array.from({ length: 4096 }, () => member))
    stub.route('GET /x', text(bomb, { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } }))
    // The limit is above the bytes on the wire: only the count of inflated bytes can stop it.
    const { url } = await startGateway(
      t,
      downstream(stub, ', timeout: 5s').replace('maxResponseSize: 64kb', 'maxResponseSize: 8mb'),
    )
    const started = performance.now()
    assertError(await get(`${url}/x`), 502, 'DOWNSTREAM_FAILURE', 's failed: answer too large', ['s'])
    // Inflating 4 GiB takes seconds; stopping at 8 MB takes a few milliseconds.
    assert.ok(performance.now() - started < 3000, `answered after ${Math.round(performance.now() - started)} ms`)
    await eventually(() => stub.requestsTo('GET /x')[0]?.closed === true, 'the connection to close')
    assert.equal(stub.requestsTo('GET /x')[0]?.aborted, true, 'the gateway hung up before the whole bomb was sent')
  })

  test('compressed bytes are limited too: a stream of empty gzip members that inflates to nothing is too large', async (t) => {
    const stub = await stubFor(t)
    const empty = gzipSync(Buffer.alloc(0))
    const endless = Buffer.concat(Array.from({ length: Math.ceil((128 * 1024) / empty.length) }, () => empty))
    stub.route(
      'GET /x',
      text(endless, { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, chunked: true }),
    )
    const { url } = await startGateway(t, downstream(stub))
    assertError(await get(`${url}/x`), 502, 'DOWNSTREAM_FAILURE', 's failed: answer too large', ['s'])
  })

  test('a body that does not decode, or an encoding Baton does not know: 502, bad_body', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /garbage', text('{"not":"gzip"}', { headers: { 'content-encoding': 'gzip' } }))
    stub.route('GET /lzw', text('{"a":1}', { headers: { 'content-encoding': 'compress' } }))
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Undecodable }
services:
  s: { url: "${stub.url}" }
endpoints:
  GET /garbage:
    calls:
      x: { request: GET s /garbage }
  GET /lzw:
    calls:
      x: { request: GET s /lzw }
`,
    )
    assertError(
      await get(`${url}/garbage`),
      502,
      'DOWNSTREAM_FAILURE',
      's failed: answered with a gzip body that does not decode',
      ['s'],
    )
    assertError(
      await get(`${url}/lzw`),
      502,
      'DOWNSTREAM_FAILURE',
      's failed: answered with content-encoding compress, which Baton does not decode',
      ['s'],
    )
  })

  test('an empty body is empty whatever its content-encoding says: the value is null, as without one', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /x', text('', { headers: { 'content-encoding': 'gzip' } }))
    const { url } = await startGateway(t, downstream(stub))
    const res = await get(`${url}/x`)
    assert.equal(res.status, 200)
    assert.equal(res.body, null)
  })

  test('a service may ask for identity answers with its headers', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /x', json({ ok: true }))
    const { url } = await startGateway(t, downstream(stub, ', headers: { accept-encoding: identity }'))
    assert.equal((await get(`${url}/x`)).status, 200)
    assert.equal(stub.requestsTo('GET /x')[0]?.headers['accept-encoding'], 'identity')
  })
})

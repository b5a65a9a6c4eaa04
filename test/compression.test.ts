/**
 * Compressed answers, both ways. Services are asked for compressed answers and their gzip,
 * deflate and brotli bodies are decoded, within maxResponseSize counted on the decoded size
 * (a zip bomb fails as too_large without being inflated); clients that accept it get
 * compressed answers above gateway.compression.threshold.
 */
import assert from 'node:assert/strict'
import {
  brotliCompressSync,
  brotliDecompressSync,
  deflateSync,
  gunzipSync,
  gzipSync,
  inflateSync,
  zstdDecompressSync,
} from 'node:zlib'
import { describe, test } from 'node:test'
import { Precompressed } from '../src/server/precompress.ts'
import { errorsOf } from './helpers/config.ts'
import { assertError, get, getBytes, inFlight, startGateway, stubFor } from './helpers/gateway.ts'
import { gate } from './helpers/resilience.ts'
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
    assert.match(
      metrics,
      /baton_call_outcomes_total\{method="GET",route="\/x",call="x",service="s",outcome="too_large"\} 1/,
    )
  })

  test('a zip bomb is not inflated: reading stops past the limit, while the service is still sending', async (t) => {
    const stub = await stubFor(t)
    // 65,536 gzip members of 1 MiB of zeros each: ~67 MB on the wire, 64 GiB inflated. The wire
    // size is above what loopback socket buffers can hold (net.ipv4.tcp_wmem + tcp_rmem maxima,
    // 4 + 32 MB here): with a 4 MB bomb the whole of it could be handed to the kernel before the
    // gateway hung up, and the stub would not see the abort.
    const member = gzipSync(Buffer.alloc(1024 * 1024))
    const bomb = Buffer.concat(Array.from({ length: 65_536 }, () => member))
    stub.route('GET /x', text(bomb, { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } }))
    // The limit is above the bytes on the wire: only the count of inflated bytes can stop it.
    const { url } = await startGateway(
      t,
      downstream(stub, ', timeout: 5s').replace('maxResponseSize: 64kb', 'maxResponseSize: 8mb'),
    )
    // Inflating 64 GiB would outlast the 5 s timeout (a 504): "too large" means it stopped at 8 MB.
    assertError(await get(`${url}/x`), 502, 'DOWNSTREAM_FAILURE', 's failed: answer too large', ['s'])
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

const DECODE: Record<string, (body: Buffer) => Buffer> = {
  zstd: zstdDecompressSync,
  br: brotliDecompressSync,
  gzip: gunzipSync,
  deflate: inflateSync,
}

/** 50 posts with their authors: ~20 KB of JSON. */
const POSTS = Array.from({ length: 50 }, (_, i) => ({
  id: i,
  title: `post number ${i} about compression`,
  body: 'lorem ipsum dolor sit amet '.repeat(8),
  author: { id: i % 5, name: `Author ${i % 5}`, email: `author${i % 5}@example.com` },
}))

const upstream = (stub: Stub, gateway = ''): string => `
version: 1
gateway: { name: Compressing, serverTiming: true${gateway} }
services:
  s: { url: "${stub.url}" }
endpoints:
  GET /posts:
    calls:
      posts: { request: GET s /posts }
      extra: { request: GET s /extra, required: false }
    response: { posts: "\${posts}", extra: "\${extra}" }
  GET /small:
    calls:
      small: { request: GET s /small }
  GET /broken:
    calls:
      broken: { request: GET s /broken }
`

function postsStub(stub: Stub): void {
  stub.route('GET /posts', json(POSTS))
  stub.route('GET /extra', json({ error: 'down' }, { status: 503 }))
  stub.route('GET /small', json({ ok: true }))
  stub.route('GET /broken', json({ error: 'boom' }, { status: 500 }))
}

describe('answers compressed for clients that accept it', () => {
  for (const encoding of ['zstd', 'br', 'gzip', 'deflate']) {
    test(`${encoding}: above the threshold, with content-type, x-request-id, Server-Timing and baton-degraded kept`, async (t) => {
      const stub = await stubFor(t)
      postsStub(stub)
      const { url } = await startGateway(t, upstream(stub))
      const res = await getBytes(`${url}/posts`, { 'accept-encoding': encoding, 'x-request-id': 'zip-1' })
      assert.equal(res.status, 200)
      assert.equal(res.headers['content-encoding'], encoding)
      assert.equal(res.headers.vary, 'accept-encoding')
      assert.equal(res.headers['content-type'], 'application/json; charset=utf-8')
      assert.equal(res.headers['x-request-id'], 'zip-1')
      assert.match(
        res.headers['server-timing'] ?? '',
        /^posts;dur=[\d.]+, extra;desc="503";dur=[\d.]+, total;dur=[\d.]+$/,
      )
      assert.equal(res.headers['baton-degraded'], 'extra')
      const plain = JSON.stringify({ posts: POSTS, extra: null, partialData: true })
      const decoded = (DECODE[encoding] as (b: Buffer) => Buffer)(res.body)
      assert.deepEqual(JSON.parse(decoded.toString('utf8')), JSON.parse(plain))
      assert.ok(
        res.body.length < Buffer.byteLength(plain) / 4,
        `${res.body.length} bytes for ${Buffer.byteLength(plain)}`,
      )
    })
  }

  test('the client chooses by its preference; among equals the gateway prefers zstd, gzip, br, deflate', async (t) => {
    const stub = await stubFor(t)
    postsStub(stub)
    const { url } = await startGateway(t, upstream(stub))
    const chosen = async (accept: string): Promise<string | undefined> =>
      (await getBytes(`${url}/posts`, { 'accept-encoding': accept })).headers['content-encoding']
    assert.equal(await chosen('gzip, deflate, br, zstd'), 'zstd')
    assert.equal(await chosen('gzip, deflate, br'), 'gzip')
    assert.equal(await chosen('deflate, br'), 'br')
    assert.equal(await chosen('gzip;q=0.5, br'), 'br')
    assert.equal(await chosen('identity'), undefined)
  })

  test('with CORS, Vary names both Origin and accept-encoding', async (t) => {
    const stub = await stubFor(t)
    postsStub(stub)
    const { url } = await startGateway(t, upstream(stub, ", cors: { origins: ['https://app.example.com'] }"))
    const res = await getBytes(`${url}/posts`, { 'accept-encoding': 'gzip', origin: 'https://app.example.com' })
    assert.equal(res.headers['content-encoding'], 'gzip')
    assert.equal(res.headers['access-control-allow-origin'], 'https://app.example.com')
    assert.deepEqual(
      res.headers.vary
        ?.split(',')
        .map((v) => v.trim().toLowerCase())
        .sort(),
      ['accept-encoding', 'origin'],
    )
  })

  test('not compressed: without accept-encoding, below the threshold, or an error envelope', async (t) => {
    const stub = await stubFor(t)
    postsStub(stub)
    const { url } = await startGateway(t, upstream(stub))
    const none = await getBytes(`${url}/posts`, {})
    assert.equal(none.headers['content-encoding'], undefined)
    assert.equal(JSON.parse(none.body.toString('utf8')).posts.length, 50)
    const small = await getBytes(`${url}/small`, { 'accept-encoding': 'gzip, br' })
    assert.equal(small.headers['content-encoding'], undefined)
    assert.deepEqual(JSON.parse(small.body.toString('utf8')), { small: { ok: true } })
    for (const path of ['/broken', '/nope']) {
      const error = await getBytes(`${url}${path}`, { 'accept-encoding': 'gzip, br' })
      assert.ok(error.status === 502 || error.status === 404)
      assert.equal(error.headers['content-encoding'], undefined)
      assert.equal(error.headers['content-type'], 'application/json; charset=utf-8')
      assert.match(error.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/)
      assert.equal(error.headers['content-length'], String(error.body.length))
      assert.equal((JSON.parse(error.body.toString('utf8')) as { data: unknown }).data !== undefined, true)
    }
  })

  test("threshold and encodings are the config's; compression: false turns it off", async (t) => {
    const stub = await stubFor(t)
    postsStub(stub)
    const tuned = await startGateway(t, upstream(stub, ', compression: { threshold: 10, encodings: [gzip] }'))
    const small = await getBytes(`${tuned.url}/small`, { 'accept-encoding': 'zstd, br, gzip' })
    assert.equal(small.headers['content-encoding'], 'gzip')
    assert.deepEqual(JSON.parse(gunzipSync(small.body).toString('utf8')), { small: { ok: true } })
    assert.equal(
      (await getBytes(`${tuned.url}/posts`, { 'accept-encoding': 'br' })).headers['content-encoding'],
      undefined,
    )
    const off = await startGateway(t, upstream(stub, ', compression: false'))
    const res = await getBytes(`${off.url}/posts`, { 'accept-encoding': 'gzip, br, zstd' })
    assert.equal(res.status, 200)
    assert.equal(res.headers['content-encoding'], undefined)
    assert.equal(res.headers.vary, undefined)
  })

  test('an answer of up to 256 KB is compressed in one call, sent with its length; a larger one is streamed', async (t) => {
    const stub = await stubFor(t)
    const rows = (n: number): unknown[] => Array.from({ length: n }, (_, i) => ({ i, text: `row ${i} `.repeat(12) }))
    stub.route('GET /mid', json(rows(1000)))
    stub.route('GET /big', json(rows(4000)))
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Sizes }
services:
  s: { url: "${stub.url}" }
endpoints:
  GET /mid:
    coalesce: false
    calls:
      rows: { request: GET s /mid }
    response: "\${rows}"
  GET /big:
    coalesce: false
    calls:
      rows: { request: GET s /big }
    response: "\${rows}"
`,
    )
    const mid = await getBytes(`${url}/mid`, { 'accept-encoding': 'gzip' })
    const midPlain = gunzipSync(mid.body)
    assert.ok(midPlain.length > 64 * 1024 && midPlain.length < 256 * 1024, `${midPlain.length} bytes`)
    assert.equal(mid.headers['content-encoding'], 'gzip')
    assert.equal(mid.headers['content-length'], String(mid.body.length))
    assert.deepEqual(JSON.parse(midPlain.toString('utf8')), rows(1000))
    const big = await getBytes(`${url}/big`, { 'accept-encoding': 'gzip' })
    const bigPlain = gunzipSync(big.body)
    assert.ok(bigPlain.length > 256 * 1024, `${bigPlain.length} bytes`)
    assert.equal(big.headers['content-encoding'], 'gzip')
    assert.equal(big.headers['transfer-encoding'], 'chunked')
    assert.deepEqual(JSON.parse(bigPlain.toString('utf8')), rows(4000))
  })

  test('a compressed request body is not decoded: it is not JSON', async (t) => {
    const stub = await stubFor(t)
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Bodies }
services:
  s: { url: "${stub.url}" }
endpoints:
  POST /echo:
    calls:
      echo: { request: POST s /echo, body: "\${request.body}" }
`,
    )
    const res = await fetch(`${url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: gzipSync(Buffer.from('{"a":1}')),
    })
    assert.equal(res.status, 400)
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'INVALID_JSON')
    assert.equal(stub.requests.length, 0)
  })

  test('the config is validated', () => {
    const config = (compression: string): string => `version: 1
gateway: { name: X, compression: ${compression} }
`
    const union = 'write { threshold: 1kb, encodings: [zstd, gzip, br, deflate] } (encodings among those), or false'
    for (const [value, at, hint] of [
      ['{ encodings: [lzma] }', 'gateway › compression', union],
      ['true', 'gateway › compression', union],
      ['{ encodings: [] }', 'gateway › compression › encodings', 'Too small: expected array to have >=1 items'],
      [
        '{ threshold: lots }',
        'gateway › compression › threshold',
        'write a size like 512kb or 1mb (a bare number means bytes)',
      ],
    ] as const) {
      assert.deepEqual(
        errorsOf(config(value)).map((d) => [d.code, d.path.join(' › '), d.hint]),
        [['BATON_INVALID_VALUE', at, hint]],
        value,
      )
    }
  })
})

/** The members of a Vary header, lowercased and sorted. */
const varied = (vary: string | undefined): string[] =>
  (vary ?? '')
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== '')
    .sort()

describe('shared and cached answers: compressed once per body, for all their clients', () => {
  test('a cached answer: each encoding made once and served to every hit, HEAD alike; Vary keeps Origin and the key headers', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /posts', json(POSTS))
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Cached, cors: { origins: ['https://app.example.com'] } }
services:
  s: { url: "${stub.url}" }
endpoints:
  GET /posts:
    cache: { ttl: 60s, scope: public, key: { headers: [x-tenant] } }
    calls:
      posts: { request: GET s /posts }
    response: "\${posts}"
`,
    )
    const asked = { origin: 'https://app.example.com', 'x-tenant': 'acme' }
    const plain = Buffer.from(JSON.stringify(POSTS))
    const miss = await getBytes(`${url}/posts`, { ...asked, 'accept-encoding': 'gzip' })
    const hit = await getBytes(`${url}/posts`, { ...asked, 'accept-encoding': 'gzip' })
    assert.match(miss.headers['cache-status'] ?? '', /fwd=miss; stored/)
    assert.match(hit.headers['cache-status'] ?? '', /; hit;/)
    for (const res of [miss, hit]) {
      assert.equal(res.status, 200)
      assert.equal(res.headers['content-encoding'], 'gzip')
      assert.equal(res.headers['content-length'], String(res.body.length))
      assert.equal(res.headers['access-control-allow-origin'], 'https://app.example.com')
      assert.deepEqual(varied(res.headers.vary), ['accept-encoding', 'origin', 'x-tenant'])
      assert.deepEqual(gunzipSync(res.body), plain)
    }
    assert.ok(miss.body.equals(hit.body))
    const br = await getBytes(`${url}/posts`, { ...asked, 'accept-encoding': 'br' })
    assert.equal(br.headers['content-encoding'], 'br')
    assert.deepEqual(brotliDecompressSync(br.body), plain)
    const head = await getBytes(`${url}/posts`, { ...asked, 'accept-encoding': 'gzip' }, 'HEAD')
    assert.equal(head.status, 200)
    assert.equal(head.headers['content-encoding'], 'gzip')
    assert.equal(head.headers['content-length'], String(miss.body.length))
    assert.equal(head.body.length, 0)
    // Without accept-encoding: the bytes as stored, still varying on accept-encoding (a CDN must not
    // serve this copy to browsers that take a compressed one), as with x-no-compression.
    for (const extra of [{}, { 'accept-encoding': 'gzip', 'x-no-compression': '1' }]) {
      const none = await getBytes(`${url}/posts`, { ...asked, ...extra })
      assert.equal(none.headers['content-encoding'], undefined)
      assert.deepEqual(varied(none.headers.vary), ['accept-encoding', 'origin', 'x-tenant'])
      assert.deepEqual(none.body, plain)
    }
    assert.equal(stub.requestsTo('GET /posts').length, 1)
  })

  test('a coalesced run: its 20 waiting clients get one compression of its answer', async (t) => {
    const stub = await stubFor(t)
    const release = gate()
    stub.route('GET /posts', release.hold(json(POSTS)))
    const { url } = await startGateway(
      t,
      `
version: 1
gateway: { name: Shared }
services:
  s: { url: "${stub.url}" }
endpoints:
  GET /posts:
    calls:
      posts: { request: GET s /posts }
    response: "\${posts}"
`,
    )
    const answers = Array.from(
      { length: 20 },
      async () => await getBytes(`${url}/posts`, { 'accept-encoding': 'gzip, deflate, br, zstd' }),
    )
    await eventually(() => stub.requestsTo('GET /posts').length === 1, 'the run')
    // Every client has been counted in flight before the run is let go (they all wait for it).
    await inFlight(url, 20)
    release.open()
    const got = await Promise.all(answers)
    const first = got[0]?.body as Buffer
    for (const res of got) {
      assert.equal(res.status, 200)
      assert.equal(res.headers['content-encoding'], 'zstd')
      assert.equal(res.headers.vary, 'accept-encoding')
      // Sent as bytes made beforehand (the plugin would stream a body this size, without a length).
      assert.equal(res.headers['content-length'], String(first.length))
      assert.ok(res.body.equals(first))
    }
    assert.deepEqual(JSON.parse(zstdDecompressSync(first).toString('utf8')), POSTS)
    assert.equal(stub.requestsTo('GET /posts').length, 1)
  })

  test('Precompressed: one compression per body and encoding, shared while it runs, the same bytes after', async () => {
    const forms = new Precompressed({ threshold: 100, encodings: ['zstd', 'gzip', 'br'] })
    const body = Buffer.from(JSON.stringify(POSTS))
    // A body of ordinary size is compressed on the spot, once.
    const made = forms.form(body, 'gzip')
    assert.ok(Buffer.isBuffer(made))
    assert.equal(forms.form(body, 'gzip'), made)
    assert.deepEqual(gunzipSync(made), body)
    // Another body, or another encoding, is another form.
    assert.notEqual(forms.form(Buffer.from(body), 'gzip'), made)
    assert.deepEqual(brotliDecompressSync(forms.form(body, 'br') as Buffer), body)
    // A large one goes to the threadpool: clients that ask meanwhile share that one compression.
    const large = Buffer.from(JSON.stringify(Array.from({ length: 40 }, () => POSTS)))
    assert.ok(large.length > 256 * 1024)
    const pending = [forms.form(large, 'zstd'), forms.form(large, 'zstd')]
    assert.ok(pending[0] instanceof Promise)
    assert.equal(pending[0], pending[1])
    const done = await pending[0]
    assert.equal(forms.form(large, 'zstd'), done)
    assert.deepEqual(zstdDecompressSync(done), large)
    // The negotiation is the plugin's: the client's preference, then the configured order; * and x-gzip are gzip.
    const choose = (headers: Record<string, string>, bytes = body): string | null => forms.choose(headers, bytes)
    assert.equal(choose({ 'accept-encoding': 'gzip, br, zstd' }), 'zstd')
    assert.equal(choose({ 'accept-encoding': 'gzip;q=0.5, br' }), 'br')
    assert.equal(choose({ 'accept-encoding': 'X-GZIP' }), 'gzip')
    assert.equal(choose({ 'accept-encoding': '*' }), 'gzip')
    assert.equal(choose({ 'accept-encoding': 'deflate' }), null)
    assert.equal(choose({ 'accept-encoding': 'identity' }), null)
    assert.equal(choose({}), null)
    assert.equal(choose({ 'accept-encoding': 'gzip', 'x-no-compression': '1' }), null)
    assert.equal(choose({ 'accept-encoding': 'gzip' }, Buffer.from('{"ok":true}')), null)
  })
})

/**
 * Hostile clients and hostile services, end to end over real sockets: oversized and slow
 * requests, values that try to leave their URL segment or header, prototype keys and
 * pathological bodies in services' answers, headers that must stop at the gateway, and
 * services that lie about their Content-Length. After every attack the same gateway still
 * answers a normal request.
 */
import assert from 'node:assert/strict'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, test, type TestContext } from 'node:test'
import { assertError, type ClientResponse, get, rawRequest, startGateway, stubFor } from './helpers/gateway.ts'
import { json, type Stub, text } from './helpers/stub.ts'

const ENVELOPE = (code: string, message: string): unknown => ({
  error: { code, message, failedServices: [], partialData: false },
  data: {},
})

interface Setup {
  stub: Stub
  url: string
}

/**
 * One stub behind services `s` (plain), `guarded` (a touchy circuit breaker), `plain`, `fwd`
 * and `own` (client credentials), and `raw` (a hand-written TCP server, when given).
 */
async function setup(t: TestContext, options: { gateway?: string; raw?: string } = {}): Promise<Setup> {
  const stub = await stubFor(t)
  stub.route('GET /ok', json({ ok: true }))
  const gateway = await startGateway(
    t,
    `
version: 1
gateway: { name: Hardening${options.gateway === undefined ? '' : `, ${options.gateway}`} }
services:
  s: { url: "${stub.url}" }
  guarded: { url: "${stub.url}", circuitBreaker: { failures: 3, window: 60s, openFor: 60s } }
  plain: { url: "${stub.url}" }
  fwd: { url: "${stub.url}", forwardHeaders: [authorization] }
  own: { url: "${stub.url}", auth: { bearer: "\${env.TOKEN}" } }
  raw: { url: "${options.raw ?? 'http://127.0.0.1:1'}" }
endpoints:
  GET /ok:
    calls:
      ok: { request: GET s /ok }
  POST /echo:
    calls:
      echo: { request: POST s /echo, body: "\${request.body}" }
  GET /fetch:
    calls:
      f: { request: "GET s /fetch/\${request.query.v}" }
  GET /header:
    calls:
      h: { request: GET guarded /ok, headers: { x-q: "\${request.query.q}" } }
  GET /hop:
    calls:
      hop: { request: GET s /hop }
    response: "\${hop}"
  GET /who:
    calls:
      plain: { request: GET plain /plain }
      fwd: { request: GET fwd /fwd }
      own: { request: GET own /own }
  GET /proto:
    calls:
      p: { request: GET s /proto }
    response:
      whole: "\${p}"
      a: "\${p.a}"
      protoByIndex: '\${p["__proto__"]}'
      constructorByIndex: '\${p["constructor"]}'
      keys: "\${keys(p)}"
  GET /proto/each:
    calls:
      list: { request: GET s /proto-list }
      details: { request: "GET s /proto/\${item.id}", forEach: "\${list}", into: detail }
    response: { items: "\${details}" }
  GET /proto/degraded:
    calls:
      p: { request: GET s /proto }
      down: { request: GET s /down, required: false }
    response: "\${p}"
  GET /deep:
    calls:
      d: { request: GET s /deep }
    response: { deep: "\${d}" }
  GET /deep/forwarded:
    calls:
      d: { request: GET s /deep }
      echo: { request: POST s /echo, body: { x: "\${d}" } }
  GET /raw/{what}:
    calls:
      r: { request: "GET raw /\${request.params.what}" }
`,
    { env: { TOKEN: 's3rv1ce-token' } },
  )
  return { stub, url: gateway.url }
}

/** The attack is over: the same gateway answers a normal request, through the same stub. */
async function assertStillServing({ stub, url }: Setup): Promise<void> {
  const before = stub.requestsTo('GET /ok').length
  const res = await get(`${url}/ok`)
  assert.equal(res.status, 200)
  assert.deepEqual(res.body, { ok: { ok: true } })
  assert.equal(stub.requestsTo('GET /ok').length, before + 1)
}

interface RawAnswer {
  /** `HTTP/1.1 431 Request Header Fields Too Large` */
  readonly statusLine: string
  readonly headers: Record<string, string>
  readonly body: unknown
  /** The gateway ended the connection (rather than our 5 s safety timer). */
  readonly closedByServer: boolean
  /** ms from connect to close. */
  readonly ms: number
}

/**
 * Opens a connection, writes `parts` (`gap` ms apart, stopping once the connection is gone)
 * and reads until the gateway closes it; after 5 s the test gives up and closes it itself.
 */
async function exchange(url: string, parts: readonly string[], gap = 0): Promise<RawAnswer> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  const chunks: Buffer[] = []
  let closedByServer = false
  const started = performance.now()
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.on('end', () => {
    closedByServer = true
  })
  socket.on('error', () => {
    closedByServer = true
  })
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  const safety = setTimeout(() => socket.destroy(), 5000)
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  for (const [i, part] of parts.entries()) {
    if (i > 0 && gap > 0) await sleep(gap)
    if (socket.destroyed || !socket.writable) break
    socket.write(part)
  }
  await closed
  clearTimeout(safety)
  const raw = Buffer.concat(chunks).toString('utf8')
  const split = raw.indexOf('\r\n\r\n')
  const [statusLine = '', ...lines] = (split === -1 ? raw : raw.slice(0, split)).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  const bodyText = split === -1 ? '' : raw.slice(split + 4)
  let body: unknown = bodyText
  try {
    body = JSON.parse(bodyText)
  } catch {
    /* keep the text */
  }
  return { statusLine, headers, body, closedByServer, ms: performance.now() - started }
}

/** A raw answer in the envelope, with `connection: close`, and the connection actually closed. */
function assertRawError(res: RawAnswer, statusLine: string, code: string, message: string): void {
  assert.equal(res.statusLine, statusLine)
  assert.equal(res.headers['content-type'], 'application/json; charset=utf-8')
  assert.equal(res.headers.connection, 'close')
  assert.deepEqual(res.body, ENVELOPE(code, message))
  assert.equal(Number(res.headers['content-length']), Buffer.byteLength(JSON.stringify(res.body)))
  assert.equal(res.closedByServer, true, 'the gateway did not close the connection')
}

describe('oversized request heads', () => {
  const cases: [string, string][] = [
    ['one 8 KiB header', `x-big: ${'a'.repeat(8 * 1024)}\r\n`],
    ['100 headers of 60 bytes', Array.from({ length: 100 }, (_, i) => `x-h${i}: ${'b'.repeat(52)}\r\n`).join('')],
  ]
  for (const [what, headers] of cases) {
    test(`${what} over gateway.maxHeaderSize 4kb: 431 HEADERS_TOO_LARGE in the envelope, connection closed`, async (t) => {
      const gateway = await setup(t, { gateway: 'maxHeaderSize: 4kb' })
      const res = await exchange(gateway.url, [`GET /ok HTTP/1.1\r\nhost: x\r\n${headers}\r\n`])
      assertRawError(
        res,
        'HTTP/1.1 431 Request Header Fields Too Large',
        'HEADERS_TOO_LARGE',
        'The request headers are too large',
      )
      assert.equal(gateway.stub.requests.length, 0)
      await assertStillServing(gateway)
    })
  }

  test("a 3 KiB header under the 4kb limit is served (the limit is the configured one, not Node's 16 KiB)", async (t) => {
    const gateway = await setup(t, { gateway: 'maxHeaderSize: 4kb' })
    const res = await get(`${gateway.url}/ok`, { 'x-big': 'a'.repeat(3 * 1024) })
    assert.equal(res.status, 200)
    assert.equal(gateway.stub.requests.length, 1)
  })
})

describe('requests that are not HTTP: 400 BAD_REQUEST in the envelope, connection closed', () => {
  const cases: [string, string][] = [
    ['bytes that are not a request line', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n'],
    ['an unknown method', 'BREW /ok HTTP/1.1\r\nhost: x\r\n\r\n'],
    ['a header line without a colon', 'GET /ok HTTP/1.1\r\nhost: x\r\nnot a header\r\n\r\n'],
    [
      'both Content-Length and Transfer-Encoding (request smuggling)',
      'POST /ok HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
    ],
    [
      'two different Content-Lengths',
      'POST /ok HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nabcde',
    ],
  ]
  for (const [what, bytes] of cases) {
    test(what, async (t) => {
      const gateway = await setup(t)
      const res = await exchange(gateway.url, [bytes])
      assertRawError(res, 'HTTP/1.1 400 Bad Request', 'BAD_REQUEST', 'The request is malformed')
      assert.equal(gateway.stub.requests.length, 0)
      await assertStillServing(gateway)
    })
  }
})

describe('slow clients (clientTimeouts headers 300ms, body 600ms): 408 REQUEST_TIMEOUT, disconnected', () => {
  const SLOW = 'clientTimeouts: { headers: 300ms, body: 600ms }'
  const TIMEOUT: [string, string, string] = [
    'HTTP/1.1 408 Request Timeout',
    'REQUEST_TIMEOUT',
    'The request was not received in time',
  ]

  test('half a request head, then nothing', async (t) => {
    const gateway = await setup(t, { gateway: SLOW })
    const res = await exchange(gateway.url, ['GET /ok HTTP/1.1\r\nhost: x\r\nx-a: '])
    assertRawError(res, ...TIMEOUT)
    assert.ok(res.ms >= 250 && res.ms < 3000, `answered after ${Math.round(res.ms)}ms`)
    assert.equal(gateway.stub.requests.length, 0)
    await assertStillServing(gateway)
  })

  test('a head trickled a few bytes at a time: the clock runs from the first byte, each byte does not reset it', async (t) => {
    const gateway = await setup(t, { gateway: SLOW })
    const head = `GET /ok HTTP/1.1\r\nhost: x\r\nx-slow: ${'a'.repeat(400)}\r\n\r\n`
    // 10 bytes every 100 ms: the whole head would take over 4 s.
    const parts = head.match(/[^]{1,10}/g) ?? []
    const res = await exchange(gateway.url, parts, 100)
    assertRawError(res, ...TIMEOUT)
    assert.ok(res.ms < 2500, `answered after ${Math.round(res.ms)}ms`)
    assert.equal(gateway.stub.requests.length, 0)
    await assertStillServing(gateway)
  })

  test('a connection that never sends a byte', async (t) => {
    const gateway = await setup(t, { gateway: SLOW })
    const res = await exchange(gateway.url, [])
    assertRawError(res, ...TIMEOUT)
    assert.equal(gateway.stub.requests.length, 0)
    await assertStillServing(gateway)
  })

  test('the whole head with content-length 100, then 10 bytes of body and nothing more', async (t) => {
    const gateway = await setup(t, { gateway: SLOW })
    gateway.stub.route('POST /echo', json({ echoed: true }))
    const res = await exchange(gateway.url, [
      'POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":"xxxx',
    ])
    assertRawError(res, ...TIMEOUT)
    // The head arrived in time, so it is the body timer (600 ms) that fired, not the head's (300 ms).
    assert.ok(res.ms >= 500 && res.ms < 3000, `answered after ${Math.round(res.ms)}ms`)
    assert.equal(gateway.stub.requests.length, 0)
    await assertStillServing(gateway)
  })
})

describe("prototype keys in a service's answer", () => {
  /** What a hostile service answers; JSON.parse keeps __proto__ as an own key, never as the prototype. */
  const POLLUTED = '{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"a":1}'

  function assertNotPolluted(): void {
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
    assert.equal('polluted' in {}, false)
    assert.equal(Object.hasOwn(Object.prototype, 'polluted'), false)
    assert.equal(Object.hasOwn(Array.prototype, 'polluted'), false)
  }

  /** The exact text the gateway answered (a parsed body would hide how __proto__ came out). */
  async function getText(url: string): Promise<{ status: number; headers: Headers; text: string }> {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) })
    return { status: res.status, headers: res.headers, text: await res.text() }
  }

  const asJson = { headers: { 'content-type': 'application/json' } }

  test('the whole value, a field, keys() and ["__proto__"] in the response template', async (t) => {
    const gateway = await setup(t)
    gateway.stub.route('GET /proto', text(POLLUTED, asJson))
    const res = await getText(`${gateway.url}/proto`)
    assert.equal(res.status, 200)
    // The whole value comes back as the service sent it, __proto__ included as a plain key;
    // expressions cannot read __proto__ or constructor, even as own keys (null).
    assert.equal(
      res.text,
      `{"whole":${POLLUTED},"a":1,"protoByIndex":null,"constructorByIndex":null,"keys":["__proto__","constructor","a"]}`,
    )
    assertNotPolluted()
    await assertStillServing(gateway)
    assertNotPolluted()
  })

  test('forEach items spread into their results with into:', async (t) => {
    const gateway = await setup(t)
    gateway.stub.route(
      'GET /proto-list',
      text(
        '[{"id":"p1","__proto__":{"polluted":"yes"}},{"id":"p2","constructor":{"prototype":{"polluted":"yes"}}}]',
        asJson,
      ),
    )
    gateway.stub.route('GET /proto/:id', text(POLLUTED, asJson))
    const res = await getText(`${gateway.url}/proto/each`)
    assert.equal(res.status, 200)
    assert.equal(
      res.text,
      `{"items":[{"id":"p1","__proto__":{"polluted":"yes"},"detail":${POLLUTED}},{"id":"p2","constructor":{"prototype":{"polluted":"yes"}},"detail":${POLLUTED}}]}`,
    )
    assert.deepEqual(
      gateway.stub
        .requestsTo('GET /proto/:id')
        .map((r) => r.url)
        .sort(),
      ['/proto/p1', '/proto/p2'],
    )
    assertNotPolluted()
    await assertStillServing(gateway)
  })

  test('a degraded answer spreads the response to add partialData', async (t) => {
    const gateway = await setup(t)
    gateway.stub.route('GET /proto', text(POLLUTED, asJson))
    gateway.stub.route('GET /down', json({ error: 'down' }, { status: 500 }))
    const res = await getText(`${gateway.url}/proto/degraded`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('baton-degraded'), 'down')
    assert.equal(res.text, `${POLLUTED.slice(0, -1)},"partialData":true}`)
    assertNotPolluted()
    await assertStillServing(gateway)
  })
})

describe('values interpolated into a downstream request', () => {
  test('an absolute or scheme-relative URL as a path value stays one encoded segment on the configured host', async (t) => {
    const gateway = await setup(t)
    const evil = await stubFor(t)
    gateway.stub.route('GET /fetch/:v', (req) => json({ v: req.params.v }))
    const host = new URL(gateway.stub.url).host
    const values = [
      'http://evil.example/x',
      '//evil.example',
      '/evil.example',
      `${evil.url}/x`,
      '\\\\evil.example\\x',
      'user@evil.example:80',
    ]
    for (const value of values) {
      const res = await get(`${gateway.url}/fetch?v=${encodeURIComponent(value)}`)
      assert.equal(res.status, 200, value)
      assert.deepEqual(res.body, { f: { v: value } })
      const seen = gateway.stub.requests.at(-1)
      assert.equal(seen?.url, `/fetch/${encodeURIComponent(value)}`, value)
      assert.equal(seen.headers.host, host, value)
    }
    assert.equal(gateway.stub.requests.length, values.length)
    assert.equal(evil.requests.length, 0)
  })

  test('CR, LF or NUL in a value sent into a call header: 400 BAD_REQUEST, nothing sent, the breaker untouched', async (t) => {
    const gateway = await setup(t)
    // Four bad requests; the service's breaker opens after three failures if they counted.
    for (const q of ['a\r\nx-injected: 1', 'a\nx-injected: 1', 'a\rb', 'a\0b']) {
      const res = await get(`${gateway.url}/header?q=${encodeURIComponent(q)}`)
      const why = q.includes('\0') ? 'has characters a header cannot carry' : 'contains line breaks'
      assertError(res, 400, 'BAD_REQUEST', `a value for header x-q of h ${why}`, ['guarded'])
    }
    assert.equal(gateway.stub.requests.length, 0)
    const res = await get(`${gateway.url}/header?q=fine`)
    assert.equal(res.status, 200)
    assert.equal(gateway.stub.requests[0]?.headers['x-q'], 'fine')
    assert.equal(gateway.stub.requests[0]?.headers['x-injected'], undefined)
    await assertStillServing(gateway)
  })

  // Were these left to the HTTP client, it would throw, the call would count as a network failure,
  // and three such requests from one client would open the service's breaker for everyone.
  test('a value a header cannot carry (DEL, U+0100, €): 400 BAD_REQUEST, and the breaker untouched', async (t) => {
    const gateway = await setup(t)
    const answers: ClientResponse[] = []
    for (const q of ['a\x7fb', 'Ā', '€10']) answers.push(await get(`${gateway.url}/header?q=${encodeURIComponent(q)}`))
    const after = await get(`${gateway.url}/header?q=fine`)
    assert.deepEqual(
      {
        bad: answers.map((r) => `${r.status} ${(r.body as { error?: { code?: string } }).error?.code}`),
        after: after.status,
      },
      { bad: ['400 BAD_REQUEST', '400 BAD_REQUEST', '400 BAD_REQUEST'], after: 200 },
    )
    for (const res of answers)
      assertError(res, 400, 'BAD_REQUEST', 'a value for header x-q of h has characters a header cannot carry', [
        'guarded',
      ])
    assert.deepEqual(
      gateway.stub.requests.map((r) => r.headers['x-q']),
      ['fine'],
    )
  })
})

test("hop-by-hop and private headers of a service's answer never reach the client", async (t) => {
  const gateway = await setup(t)
  const sent = {
    connection: 'x-secret, close',
    'x-secret': 's',
    'keep-alive': 'timeout=5',
    'proxy-authenticate': 'Basic realm="internal"',
    trailer: 'x-trailer',
    upgrade: 'h2c',
    'set-cookie': 'sid=1',
    'x-internal': '1',
  }
  // Chunked, so that Node lets the stub declare a Trailer.
  gateway.stub.route(
    'GET /hop',
    text('{"a":1}', { chunked: true, headers: { 'content-type': 'application/json', ...sent } }),
  )
  // The stub really sends them.
  const direct = await rawRequest('GET', `${gateway.stub.url}/hop`, {})
  for (const [name, value] of Object.entries(sent)) assert.equal(direct.headers[name], value, name)

  for (const connection of ['close', 'keep-alive']) {
    const res = await rawRequest('GET', `${gateway.url}/hop`, { connection })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, { a: 1 })
    const expected =
      connection === 'close'
        ? ['cache-control', 'connection', 'content-length', 'content-type', 'date', 'x-request-id']
        : ['cache-control', 'connection', 'content-length', 'content-type', 'date', 'keep-alive', 'x-request-id']
    assert.deepEqual(Object.keys(res.headers).sort(), expected, connection)
    assert.equal(res.headers.connection, connection)
    // The gateway's own: its answers are made per request (the endpoint has no cache).
    assert.equal(res.headers['cache-control'], 'no-store')
    // The gateway's own keep-alive, not the service's timeout=5.
    if (connection === 'keep-alive') assert.notEqual(res.headers['keep-alive'], sent['keep-alive'])
  }
  await assertStillServing(gateway)
})

test("a client's Authorization and Cookie reach only a service that forwards them, and never one with credentials of its own", async (t) => {
  const gateway = await setup(t)
  for (const path of ['/plain', '/fwd', '/own']) gateway.stub.route(`GET ${path}`, json({ ok: true }))
  const res = await get(`${gateway.url}/who`, { authorization: 'Bearer client', cookie: 'sid=1' })
  assert.equal(res.status, 200)
  assert.deepEqual(res.body, { plain: { ok: true }, fwd: { ok: true }, own: { ok: true } })
  const seen = (route: string): Record<string, unknown> => {
    const r = gateway.stub.requestsTo(route)
    assert.equal(r.length, 1, route)
    return { authorization: r[0]?.headers.authorization, cookie: r[0]?.headers.cookie }
  }
  assert.deepEqual(seen('GET /plain'), { authorization: undefined, cookie: undefined })
  assert.deepEqual(seen('GET /fwd'), { authorization: 'Bearer client', cookie: undefined })
  assert.deepEqual(seen('GET /own'), { authorization: 'Bearer s3rv1ce-token', cookie: undefined })
  // The service's token went to its own service only.
  for (const r of gateway.stub.requests.filter((r) => r.route !== 'GET /own'))
    assert.doesNotMatch(JSON.stringify(r.headers), /s3rv1ce/)
  await assertStillServing(gateway)
})

describe('pathological answers from a service', () => {
  /** 100 000 nested lists: 200 KB, well under maxResponseSize, far deeper than JSON.stringify can go. */
  const DEEP = '['.repeat(100_000) + ']'.repeat(100_000)

  test('JSON nested 100 000 deep, returned in the response: 502 RESPONSE_ASSEMBLY_FAILED', async (t) => {
    const gateway = await setup(t)
    gateway.stub.route('GET /deep', text(DEEP, { headers: { 'content-type': 'application/json' } }))
    const res = await get(`${gateway.url}/deep`)
    assertError(res, 502, 'RESPONSE_ASSEMBLY_FAILED', "The response could not be assembled from the services' answers")
    assert.ok(res.headers['x-request-id'] !== undefined)
    assert.equal(gateway.stub.requestsTo('GET /deep').length, 1)
    await assertStillServing(gateway)
  })

  test("JSON nested 100 000 deep, sent on in another call's body: 502 naming that call's service, which is never contacted", async (t) => {
    const gateway = await setup(t)
    gateway.stub.route('GET /deep', text(DEEP, { headers: { 'content-type': 'application/json' } }))
    gateway.stub.route('POST /echo', json({ echoed: true }))
    const res = await get(`${gateway.url}/deep/forwarded`)
    // The request body cannot be serialised (RangeError); Baton files that as a connection
    // error today ("s failed: connection error"), so only the prefix is pinned here.
    assertError(res, 502, 'DOWNSTREAM_FAILURE', /^s failed: /, ['s'])
    assert.equal(gateway.stub.requestsTo('POST /echo').length, 0)
    await assertStillServing(gateway)
  })

  /** A hand-written HTTP/1.1 server: keep-alive, one answer per request head, misbehaving on some paths. */
  async function rawService(t: TestContext): Promise<{ url: string; connections: () => number; paths: string[] }> {
    const sockets = new Set<Socket>()
    const paths: string[] = []
    const ok = (s: Socket, body: string): void => {
      s.write(
        `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      )
    }
    const server = createServer((socket) => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {})
      let buffered = ''
      socket.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('latin1')
        for (let end = buffered.indexOf('\r\n\r\n'); end !== -1; end = buffered.indexOf('\r\n\r\n')) {
          const path = buffered.slice(0, end).split(' ')[1] ?? ''
          buffered = buffered.slice(end + 4)
          paths.push(path)
          if (path === '/short') {
            // Claims 100 bytes, sends 7, hangs up.
            socket.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":1}')
            return
          }
          if (path === '/long-response') {
            // 7 bytes declared and sent, then (in the same write) a whole second answer nobody asked for.
            socket.write(
              'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{"a":1}HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 17\r\n\r\n{"poisoned":true}',
            )
            continue
          }
          if (path === '/long-garbage') {
            socket.write(
              'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{"a":1}{"poisoned":true}',
            )
            continue
          }
          ok(socket, JSON.stringify({ n: paths.length }))
        }
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    let connections = 0
    server.on('connection', () => connections++)
    t.after(async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    })
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, connections: () => connections, paths }
  }

  test('a Content-Length that claims more bytes than are sent before the service hangs up: 502 DOWNSTREAM_FAILURE', async (t) => {
    const raw = await rawService(t)
    const gateway = await setup(t, { raw: raw.url })
    assertError(await get(`${gateway.url}/raw/short`), 502, 'DOWNSTREAM_FAILURE', 'raw failed: connection error', [
      'raw',
    ])
    // The next call to the service works, over a new connection.
    const next = await get(`${gateway.url}/raw/next`)
    assert.equal(next.status, 200)
    assert.deepEqual(next.body, { r: { n: 2 } })
    assert.deepEqual(raw.paths, ['/short', '/next'])
    assert.equal(raw.connections(), 2)
    await assertStillServing(gateway)
  })

  for (const [what, path] of [
    ['a whole forged answer', 'long-response'],
    ['garbage', 'long-garbage'],
  ] as const) {
    test(`more bytes than the Content-Length on a keep-alive connection (${what}): the first answer is what the length allows, the connection is dropped, nothing leaks into the next answers`, async (t) => {
      const raw = await rawService(t)
      const gateway = await setup(t, { raw: raw.url })
      const first = await get(`${gateway.url}/raw/${path}`)
      assert.equal(first.status, 200)
      assert.deepEqual(first.body, { r: { a: 1 } })
      // The extra bytes are never taken as the answer to the next request: undici throws the
      // connection away (parse error on data nobody asked for) and opens a new one.
      for (const n of [2, 3]) {
        const next = await get(`${gateway.url}/raw/next`)
        assert.equal(next.status, 200)
        assert.deepEqual(next.body, { r: { n } })
      }
      assert.deepEqual(raw.paths, [`/${path}`, '/next', '/next'])
      assert.equal(raw.connections(), 2)
      await assertStillServing(gateway)
    })
  }
})

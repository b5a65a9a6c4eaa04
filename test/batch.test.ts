/**
 * A batched forEach: the distinct keys of the items in batches of `size`, one upstream request
 * per batch with the keys as `${ids}`, the answer matched back to the items by key. Over real
 * sockets against a stub service that records what it was asked; then `baton check` and
 * `baton plan`.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, test, type TestContext } from 'node:test'
import { renderPlan } from '../src/cli/plan.ts'
import { compileText } from '../src/plan/compile.ts'
import { diagnosticsOf } from './helpers/config.ts'
import { assertError, get, post, startGateway, stubFor } from './helpers/gateway.ts'
import { json, type Stub, type StubRequest } from './helpers/stub.ts'

interface Post {
  userId: number
  id: number
  title: string
}
interface User {
  id: number
  name: string
}
const fixture = (name: string): unknown =>
  JSON.parse(readFileSync(new URL(`./fixtures/jsonplaceholder/${name}`, import.meta.url), 'utf8'))
const POSTS = fixture('posts.json') as Post[]
const USERS = fixture('users.json') as User[]
const userOf = (post: Post): User => USERS.find((u) => u.id === post.userId) as User
/** The userIds of the posts, each once, in the order first met. */
const DISTINCT = [...new Set(POSTS.map((p) => p.userId))]

/** The `id` query values a request carried. */
const idsOf = (req: StubRequest): string[] => new URL(req.url, 'http://stub').searchParams.getAll('id')

/** GET /users?id=1&id=2…: the users asked for that exist, in the service's own order; a 502 when `failOn` is asked. */
function usersRoute(stub: Stub, options: { failOn?: number; answer?: unknown } = {}): void {
  stub.route('GET /users', (req) => {
    const ids = idsOf(req).map(Number)
    if (options.failOn !== undefined && ids.includes(options.failOn)) return json({ error: 'down' }, { status: 502 })
    if (options.answer !== undefined) return json(options.answer)
    return json(USERS.filter((u) => ids.includes(u.id)))
  })
}

function yaml(stub: Stub, endpoints: string): string {
  return `
version: 1
gateway: { name: Blog, logLevel: silent }
services:
  posts: { url: "${stub.url}" }
  users: { url: "${stub.url}" }
endpoints:
${endpoints}`
}

/** The posts, and their authors in batches: the call as the README shows it. */
const authors = (batch: string, extra = ''): string => `    calls:
      posts: { request: GET posts /posts }
      authors:
        forEach: \${posts}
        as: post
        request: GET users /users
        query: { id: "\${ids}" }
        batch: ${batch}
        into: author${extra}
    response: "\${authors}"
`

async function start(t: TestContext, stub: Stub, endpoints: string): Promise<string> {
  return (await startGateway(t, yaml(stub, endpoints))).url
}

describe('batch: one request per batch of distinct keys', () => {
  test('100 posts by 10 authors, size 100: ONE request with the 10 ids, and every post gets its author', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /posts', json(POSTS))
    usersRoute(stub)
    const url = await start(t, stub, `  GET /posts:\n${authors('{ itemKey: "${post.userId}", key: id }')}`)
    const res = await get(`${url}/posts`)
    assert.equal(res.status, 200)
    assert.equal(POSTS.length, 100)
    assert.equal(DISTINCT.length, 10)
    assert.deepEqual(
      res.body,
      POSTS.map((p) => ({ ...p, author: userOf(p) })),
    )
    const batches = stub.requestsTo('GET /users')
    assert.equal(batches.length, 1)
    assert.equal(batches[0]?.url, `/users?${DISTINCT.map((id) => `id=${id}`).join('&')}`)
    assert.equal(stub.requests.length, 2)
  })

  test('size 4: 3 requests of 4, 4 and 2 keys; baton_batch_size counts them', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /posts', json(POSTS))
    usersRoute(stub)
    const url = await start(t, stub, `  GET /posts:\n${authors('{ itemKey: "${post.userId}", key: id, size: 4 }')}`)
    const res = await get(`${url}/posts`)
    assert.equal(res.status, 200)
    assert.deepEqual(
      res.body,
      POSTS.map((p) => ({ ...p, author: userOf(p) })),
    )
    const asked = stub
      .requestsTo('GET /users')
      .map(idsOf)
      .sort((a, b) => Number(a[0]) - Number(b[0]))
    assert.deepEqual(
      asked,
      [DISTINCT.slice(0, 4), DISTINCT.slice(4, 8), DISTINCT.slice(8)].map((ids) => ids.map(String)),
    )
    const metrics = await (await fetch(`${url}/metrics`)).text()
    const series = (suffix: string): string | undefined =>
      metrics.split('\n').find((l) => l.startsWith(`baton_batch_size_${suffix}`))
    assert.equal(
      series('bucket{le="2",method="GET",route="/posts",call="authors"}'),
      'baton_batch_size_bucket{le="2",method="GET",route="/posts",call="authors"} 1',
    )
    assert.equal(
      series('bucket{le="5",method="GET",route="/posts",call="authors"}'),
      'baton_batch_size_bucket{le="5",method="GET",route="/posts",call="authors"} 3',
    )
    assert.equal(
      series('sum{method="GET",route="/posts",call="authors"}'),
      'baton_batch_size_sum{method="GET",route="/posts",call="authors"} 10',
    )
    assert.equal(
      series('count{method="GET",route="/posts",call="authors"}'),
      'baton_batch_size_count{method="GET",route="/posts",call="authors"} 3',
    )
  })

  test('an empty list: no request, an empty result', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /posts', json([]))
    usersRoute(stub)
    const url = await start(t, stub, `  GET /posts:\n${authors('{ itemKey: "${post.userId}", key: id }')}`)
    const res = await get(`${url}/posts`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, [])
    assert.equal(stub.requestsTo('GET /users').length, 0)
  })
})

describe('batch: items without a match, failed batches', () => {
  /** Three posts by users 1, 2 and 99; users has no 99. */
  const POSTS3 = [
    { id: 1, userId: 1 },
    { id: 2, userId: 99 },
    { id: 3, userId: 2 },
  ]
  const u = (id: number): User => USERS.find((x) => x.id === id) as User

  test('a key with no match takes itemFallback, that item only; the answer is partial', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /posts', json(POSTS3))
    usersRoute(stub)
    const url = await start(
      t,
      stub,
      `  GET /posts:\n${authors('{ itemKey: "${post.userId}", key: id }', '\n        itemFallback: { name: "unknown user ${post.userId}" }')}`,
    )
    const res = await get(`${url}/posts`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, [
      { id: 1, userId: 1, author: u(1) },
      { id: 2, userId: 99, author: { name: 'unknown user 99' } },
      { id: 3, userId: 2, author: u(2) },
    ])
    assert.equal(res.headers['baton-degraded'], 'authors')
    assert.deepEqual(stub.requestsTo('GET /users').map(idsOf), [['1', '99', '2']])
  })

  test('without itemFallback, a key with no match fails the call: 502 naming the service and the key', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /posts', json(POSTS3))
    usersRoute(stub)
    const url = await start(t, stub, `  GET /posts:\n${authors('{ itemKey: "${post.userId}", key: id }')}`)
    assertError(
      await get(`${url}/posts`),
      502,
      'DOWNSTREAM_FAILURE',
      'users failed: no id 99 in the answer to its batch',
      ['users'],
    )
  })

  test('a failed batch (502): its items take itemFallback, the other batches keep their results', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /posts', json(POSTS3))
    usersRoute(stub, { failOn: 2 })
    const url = await start(
      t,
      stub,
      `  GET /posts:\n${authors('{ itemKey: "${post.userId}", key: id, size: 2 }', '\n        itemFallback: { name: "unknown user ${post.userId}" }')}`,
    )
    const res = await get(`${url}/posts`)
    assert.equal(res.status, 200)
    // Batches: [1, 99] (no 99 in its answer) and [2] (failed).
    assert.deepEqual(res.body, [
      { id: 1, userId: 1, author: u(1) },
      { id: 2, userId: 99, author: { name: 'unknown user 99' } },
      { id: 3, userId: 2, author: { name: 'unknown user 2' } },
    ])
    assert.equal(stub.requestsTo('GET /users').length, 2)
  })

  test('a failed batch without itemFallback: a required call is a 502, an optional one takes its fallback', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /posts', json(POSTS3))
    usersRoute(stub, { failOn: 1 })
    const url = await start(
      t,
      stub,
      `  GET /required:\n${authors('{ itemKey: "${post.userId}", key: id }')}  GET /optional:\n${authors('{ itemKey: "${post.userId}", key: id }', '\n        fallback: []')}`,
    )
    assertError(await get(`${url}/required`), 502, 'DOWNSTREAM_FAILURE', 'users failed (502)', ['users'])
    const optional = await get(`${url}/optional`)
    assert.equal(optional.status, 200)
    assert.deepEqual(optional.body, [])
    assert.equal(optional.headers['baton-degraded'], 'authors')
  })

  test('an answer that is not a list fails the batch', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /posts', json(POSTS3))
    usersRoute(stub, { answer: { users: USERS } })
    const url = await start(t, stub, `  GET /posts:\n${authors('{ itemKey: "${post.userId}", key: id }')}`)
    assertError(
      await get(`${url}/posts`),
      502,
      'DOWNSTREAM_FAILURE',
      'users failed: the answer to a batch of authors is not a list',
      ['users'],
    )
  })
})

describe('batch: keys', () => {
  test('keys match as text (7 and "7"); an item without a key takes itemFallback and is not asked for', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users', (req) => json(idsOf(req).map((id) => ({ id: Number(id), name: `user ${id}` }))))
    const url = await start(
      t,
      stub,
      `  POST /users:
    calls:
      users:
        forEach: \${request.body.ids}
        as: id
        request: GET users /users
        query: { id: "\${ids}" }
        batch: { itemKey: "\${id}", key: id }
        itemFallback: null
`,
    )
    const res = await post(`${url}/users`, { ids: ['7', 8, null, 7, ''] })
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, {
      users: [{ id: 7, name: 'user 7' }, { id: 8, name: 'user 8' }, null, { id: 7, name: 'user 7' }, null],
      partialData: true,
    })
    assert.deepEqual(stub.requestsTo('GET /users').map(idsOf), [['7', '8']])
  })

  test('without itemFallback, an item without a key fails the call before anything is sent', async (t) => {
    const stub = await stubFor(t)
    usersRoute(stub)
    const url = await start(
      t,
      stub,
      `  POST /users:
    calls:
      users:
        forEach: \${request.body.ids}
        as: id
        request: GET users /users
        query: { id: "\${ids}" }
        batch: { itemKey: "\${id}", key: id }
`,
    )
    assertError(
      await post(`${url}/users`, { ids: [1, null] }),
      502,
      'DOWNSTREAM_FAILURE',
      'users failed: could not build its request',
      ['users'],
    )
    assert.equal(stub.requests.length, 0)
  })

  test('${ids} joined with commas in the query, and as a JSON list in a body', async (t) => {
    const stub = await stubFor(t)
    stub.route('GET /users', (req) =>
      json(
        (new URL(req.url, 'http://stub').searchParams.get('ids') ?? '')
          .split(',')
          .map((id) => ({ id: Number(id), name: `user ${id}` })),
      ),
    )
    stub.route('POST /users/search', (req) =>
      json((req.body as { ids: number[] }).ids.map((id) => ({ id, name: `user ${id}` }))),
    )
    const url = await start(
      t,
      stub,
      `  POST /joined:
    calls:
      users:
        forEach: \${request.body.ids}
        request: GET users /users
        query: { ids: "\${ids.join(',')}" }
        batch: { itemKey: "\${item}", key: id }
  POST /body:
    calls:
      users:
        forEach: \${request.body.ids}
        request: POST users /users/search
        body: { ids: "\${ids}" }
        batch: { itemKey: "\${item}", key: id }
`,
    )
    const want = { users: [1, 2, 1].map((id) => ({ id, name: `user ${id}` })) }
    const joined = await post(`${url}/joined`, { ids: [1, 2, 1] })
    assert.deepEqual({ status: joined.status, body: joined.body }, { status: 200, body: want })
    assert.deepEqual(
      stub.requestsTo('GET /users').map((r) => r.url),
      ['/users?ids=1%2C2'],
    )
    const body = await post(`${url}/body`, { ids: [1, 2, 1] })
    assert.deepEqual({ status: body.status, body: body.body }, { status: 200, body: want })
    assert.deepEqual(
      stub.requestsTo('POST /users/search').map((r) => r.body),
      [{ ids: [1, 2] }],
    )
  })
})

describe('baton check and baton plan: a batched forEach', () => {
  const config = (call: string, extra = ''): string => `version: 1
gateway: { name: Blog }
services:
  users: { url: "http://users.local", timeout: 100ms }
endpoints:
  GET /posts:
    calls:${extra}
      posts: { request: GET users /posts }
      authors:
${call}
`
  const errors = (text: string): { code: string; line?: number; col?: number; message: string; hint?: string }[] =>
    diagnosticsOf(text)
      .filter((d) => d.severity === 'error')
      .map((d) => ({
        code: d.code,
        ...(d.line === undefined ? {} : { line: d.line }),
        ...(d.col === undefined ? {} : { col: d.col }),
        message: d.message,
        ...(d.hint === undefined ? {} : { hint: d.hint }),
      }))

  test('a batch without forEach', () => {
    assert.deepEqual(
      errors(
        config(`        request: GET users /users
        query: { id: "\${ids}" }
        batch: { itemKey: "\${item.userId}", key: id }`),
      ),
      [
        {
          code: 'BATON_EXPRESSION',
          line: 11,
          col: 25,
          message: "unknown name 'ids' in '${ids}'",
          hint: 'known names: auth, authors, calls, env, posts, request',
        },
        {
          code: 'BATON_FOREACH_ONLY',
          line: 12,
          col: 9,
          message: "'batch' only applies to a forEach call",
          hint: 'add forEach: ${someCall.list}, or remove it',
        },
      ],
    )
  })

  test('a size under 1, a missing key, an unknown service', () => {
    assert.deepEqual(
      errors(
        config(`        forEach: \${posts}
        request: GET user /users
        query: { id: "\${ids}" }
        batch: { itemKey: "\${item.userId}", size: 0 }`),
      ).filter((e) => e.code !== 'BATON_EXPRESSION'),
      [
        {
          code: 'BATON_UNKNOWN_SERVICE',
          line: 11,
          col: 22,
          message: "no service named 'user'",
          hint: "did you mean 'users'?",
        },
        {
          code: 'BATON_MISSING_KEY',
          line: 13,
          col: 16,
          message: "missing required key 'key'",
          // The key's description in the schema (and the JSON Schema) says what it wants.
          hint: "The field of each result in the batch's answer (a JSON list) that holds its key, e.g. id.",
        },
        {
          code: 'BATON_INVALID_VALUE',
          line: 13,
          col: 51,
          message: 'invalid value 0',
          hint: 'Too small: expected number to be >0',
        },
      ],
    )
  })

  test('a request that never sends ${ids}', () => {
    assert.deepEqual(
      errors(
        config(`        forEach: \${posts}
        request: GET users /users
        batch: { itemKey: "\${item.userId}", key: id }`),
      ),
      [
        {
          code: 'BATON_BATCH',
          line: 11,
          col: 18,
          message: "the request of batched call 'authors' never sends the batch's keys, ${ids}",
          hint: 'e.g. query: { id: "${ids}" }, which sends ?id=1&id=2',
        },
      ],
    )
  })

  test('a request that reads the item, ${ids} whole in the path, an itemKey that does not read the item', () => {
    assert.deepEqual(
      errors(
        config(`        forEach: \${posts}
        as: post
        request: "GET users /users/\${post.userId}?id=\${ids}"
        headers: { x-post: "\${post.id}" }
        batch: { itemKey: "post.userId", key: id }`),
      ),
      [
        {
          code: 'BATON_BATCH',
          line: 12,
          col: 38,
          message: "the request of batched call 'authors' reads the item 'post'",
          hint: 'one request serves a batch of items: send their keys, ${ids}; the item is read by batch.itemKey',
        },
        {
          code: 'BATON_BATCH',
          line: 12,
          col: 54,
          message: '${ids} is a list: written whole into the path it would be sent as JSON',
          hint: `send it as a query parameter, query: { id: "\${ids}" } (?id=1&id=2), or joined, \${ids.join(',')} (1,2)`,
        },
        {
          code: 'BATON_BATCH',
          line: 13,
          col: 31,
          message: "the request of batched call 'authors' reads the item 'post'",
          hint: 'one request serves a batch of items: send their keys, ${ids}; the item is read by batch.itemKey',
        },
        {
          code: 'BATON_BATCH',
          line: 14,
          col: 27,
          message: "itemKey 'post.userId' does not read the item 'post'",
          hint: "write the item's key as an expression, e.g. itemKey: ${post.userId}",
        },
      ],
    )
  })

  test("'ids' is taken in an endpoint with a batched call: not an item's name, nor a call's", () => {
    const call = `        forEach: \${posts}
        as: ids
        request: GET users /users
        query: { id: "\${ids}" }
        batch: { itemKey: "\${ids.userId}", key: id }`
    assert.deepEqual(
      errors(config(call)).map((e) => [e.code, e.line, e.col, e.message]),
      [['BATON_RESERVED_NAME', 11, 9, "a batched call reads its keys as 'ids': its item cannot take that name"]],
    )
    assert.deepEqual(
      errors(
        config(
          call.replace('as: ids', 'as: post').replace('ids.userId', 'post.userId'),
          '\n      ids: { request: GET users /ids }',
        ),
      ).map((e) => [e.code, e.line, e.col, e.message]),
      [
        [
          'BATON_RESERVED_NAME',
          15,
          9,
          "a batched call reads its keys as 'ids': another call of the endpoint cannot take that name",
        ],
      ],
    )
  })

  test('baton plan: the call in batches, and its worst case in rounds of batches', () => {
    const { plan } = compileText(
      'baton.yaml',
      config(`        forEach: \${posts}
        request: GET users /users
        query: { id: "\${ids}" }
        batch: { itemKey: "\${item.userId}", key: id, size: 10 }
        concurrency: 2
        maxItems: 100`),
      { env: {} },
    )
    const row = renderPlan(plan)
      .split('\n')
      .find((line) => line.includes('authors (users)'))
    assert.ok(row !== undefined)
    assert.match(
      row,
      /\| authors \(users\): GET \/users\?id=\$\{ids\} for each \$\{posts\} \(batches of 10 by id, ≤2 at once\) +\|/,
    )
    // 100 items → 10 batches → 5 rounds of 2.
    assert.match(row, /\| 100ms × ⌈⌈n ÷ 10⌉ ÷ 2⌉ \(n ≤ 100: 500ms\) +\|/)
  })
})

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { compileText } from '../plan/compile.ts'
import type { RequestView } from '../plan/scope.ts'
import type { EndpointPlan } from '../plan/types.ts'
import type { Entry, EntryStore } from './entries.ts'
import { ResponseCache, type StartRun } from './response.ts'

const { plan } = compileText(
  'test.yaml',
  `version: 1
gateway: { name: T }
services:
  s: { url: "http://127.0.0.1:9" }
endpoints:
  GET /x:
    cache: { ttl: 60s, scope: public }
    calls:
      s: { request: GET s /x }
`,
)

const request: RequestView = {
  method: 'GET',
  path: '/x',
  params: {},
  query: {},
  headers: {},
  body: null,
  auth: null,
  url: '/x',
  client: { ip: '127.0.0.1', protocol: 'http' },
}

/** A store that, like Redis, hands out a new object on every read. */
function copyingStore(): EntryStore & { reads: number } {
  const kept = new Map<string, string>()
  return {
    reads: 0,
    get(key) {
      this.reads++
      const text = kept.get(key)
      return text === undefined ? undefined : (JSON.parse(text) as Entry)
    },
    set(key, entry) {
      kept.set(key, JSON.stringify(entry))
    },
    drop: () => 0,
  }
}

describe('ResponseCache', () => {
  test('hits read anew from the store share one Buffer of the body (and so its compressed forms)', async () => {
    const store = copyingStore()
    const cache = new ResponseCache(plan.endpoints[0] as EndpointPlan, {
      store,
      tagHeader: null,
      serverTiming: false,
    })
    const body = { items: Array.from({ length: 20 }, (_, i) => ({ id: i, name: `item ${i}` })) }
    let runs = 0
    const start: StartRun = () => {
      runs++
      return { answer: Promise.resolve({ status: 200, body, headers: null }), abandon: () => {} }
    }
    const client = { onGone: () => {} }
    const miss = await cache.serve(request, 'r1', start, client)
    const hits = [await cache.serve(request, 'r2', start, client), await cache.serve(request, 'r3', start, client)]
    assert.equal(runs, 1)
    assert.equal(store.reads, 3)
    assert.deepEqual(JSON.parse((miss.bytes as Buffer).toString('utf8')), body)
    for (const hit of hits) {
      assert.match(hit.headers['cache-status'] ?? '', /^baton; hit/)
      assert.deepEqual(hit.bytes, miss.bytes)
    }
    assert.equal(hits[0]?.bytes, hits[1]?.bytes)
  })
})

/** The `baton` command as a user runs it: exit codes and what it prints. */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { describe, it } from 'node:test'
import { renderPlan } from '../src/cli/plan.ts'
import { compileText } from '../src/plan/compile.ts'

function baton(args: string[], node = process.execPath): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(node, ['bin/baton.js', ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('baton check', () => {
  it('reports every error of a broken file with file:line:col and exits 1', () => {
    const r = baton(['check', 'test/fixtures/broken.yaml'])
    assert.equal(r.code, 1)
    const heads = r.stderr
      .split('\n')
      .filter((l) => / error BATON_/.test(l))
      .map((l) => l.replace(/: error (\w+).*/, ' $1'))
    assert.deepEqual(heads, [
      'test/fixtures/broken.yaml:5:3 BATON_UNKNOWN_KEY',
      'test/fixtures/broken.yaml:7:47 BATON_INVALID_VALUE',
      'test/fixtures/broken.yaml:13:22 BATON_UNKNOWN_SERVICE',
      'test/fixtures/broken.yaml:13:27 BATON_UNKNOWN_PARAM',
      'test/fixtures/broken.yaml:14:7 BATON_CYCLE',
      'test/fixtures/broken.yaml:20:9 BATON_UNKNOWN_KEY',
      'test/fixtures/broken.yaml:22:35 BATON_EXPRESSION',
    ])
    assert.match(r.stderr, /hint: did you mean 'port'\?/)
    assert.match(r.stderr, /pricing → tax → pricing/)
    // The last line counts the warnings too (a service left unused by the errors above).
    assert.match(r.stderr, /test\/fixtures\/broken.yaml: 7 errors, 1 warning\n$/)
  })

  it('exits 0 with a one-line summary for a valid file', () => {
    const r = baton(['check', 'examples/dashboard/baton.yaml'])
    assert.equal(r.code, 0)
    assert.equal(r.stdout, 'examples/dashboard/baton.yaml: ok — 3 services, 1 endpoint, 3 calls\n')
  })

  it('counts warnings in the summary and prints them', () => {
    const r = baton(['check', 'examples/checkout/baton.yaml'])
    assert.equal(r.code, 0)
    assert.equal(r.stdout, 'examples/checkout/baton.yaml: ok — 6 services, 1 endpoint, 5 calls, 2 warnings\n')
    assert.match(r.stderr, /baton.yaml:61:3: warning BATON_UNUSED_SERVICE: service 'payment'/)
    // The JWT secret comes from the environment: unset where the config is checked, it is a warning, not an error.
    assert.match(
      r.stderr,
      /baton.yaml:15:15: warning BATON_ENV_UNSET: environment variable CHECKOUT_JWT_SECRET is not set/,
    )
  })

  it('says so when the file does not exist', () => {
    const r = baton(['check', 'nope.yaml'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /cannot read nope.yaml/)
  })
})

/** The rows of the call-sequence tables (those under an `| Order |` header). */
function callRows(stdout: string): string[][] {
  const rows: string[][] = []
  let inTable = false
  for (const line of stdout.split('\n')) {
    if (line.startsWith('| Order')) inTable = true
    else if (!line.startsWith('|')) inTable = false
    else if (inTable && !line.startsWith('|-'))
      rows.push(
        line
          .split('|')
          .slice(1, -1)
          .map((c) => c.trim()),
      )
  }
  return rows
}

describe('baton plan', () => {
  it('prints the checkout call sequence as the template table', () => {
    const r = baton(['plan', 'examples/checkout/baton.yaml'])
    assert.equal(r.code, 0)
    const rows = callRows(r.stdout)
    assert.deepEqual(rows, [
      ['1', 'cart: GET /carts/${request.body.cartId}', 'Yes', '200ms', '—', '200ms', 'Fail request', '—'],
      ['2 (parallel)', 'inventory: POST /check-availability', 'Yes', '400ms', '—', '400ms', 'Fail request', 'cart'],
      ['2 (parallel)', 'pricing: POST /calculate', 'Yes', '200ms', '—', '200ms', 'Fail request', 'cart'],
      ['2 (parallel)', 'shipping: POST /estimate', 'No', '500ms', '—', '500ms', 'null', 'cart'],
      ['3', 'tax: POST /calculate', 'Yes', '300ms', '—', '300ms', 'Fail request', 'pricing'],
    ])
    assert.match(
      r.stdout,
      /## POST \/v1\/checkout\/summary\nCheckout summary screen\n\nCredentials: JWT\.\n\nCall sequence \(total timeout: 2s\)\./,
    )
  })

  it("shows the edge as the template's tables: authentication, the service registry with auth methods, rate limits", () => {
    const r = baton(['plan', 'examples/checkout/baton.yaml'])
    assert.equal(r.code, 0)
    assert.match(
      r.stdout,
      /^Authentication: JWT \(HS256\/HS384\/HS512; shared secret; issuer https:\/\/auth\.acmestore\.com; audience checkout\)$/m,
    )
    assert.match(r.stdout, /^\| cart +\| http:\/\/cart\.internal:8080 +\| — +\| 45ms +\| 99\.95% +\| — +\|$/m)
    const limits = r.stdout
      .split('\n')
      .filter((l) => /^\| (Per-|Global)/.test(l))
      .map((l) =>
        l
          .split('|')
          .slice(1, -1)
          .map((c) => c.trim()),
      )
    assert.deepEqual(limits, [
      ['Per-user', '100/min', 'User ID from JWT (or API key name)', '429 + Retry-After'],
      ['Per-IP', '500/min', 'Client IP', '429 + Retry-After'],
      ['Per-endpoint', '50/min', 'Path + User', '429 + Retry-After'],
      ['Global', '10000/min', 'Entire gateway', '503'],
    ])
    assert.match(r.stdout, /## POST \/v1\/checkout\/summary\nCheckout summary screen\n\nCredentials: JWT\.\n/)
  })

  it("names each service's auth method, and each endpoint's demands", () => {
    const { plan } = compileText(
      'baton.yaml',
      `version: 1
gateway:
  name: Plan
  auth:
    jwt: { secret: "\${env.S}" }
    apiKey: { header: x-api-key, keys: { app: "\${env.K}" } }
  rateLimit: { perIp: 5/s }
services:
  a: { url: "http://a.internal", auth: { bearer: "\${env.T}" } }
  b: { url: "http://b.internal", auth: { apiKey: { header: x-b-key, value: "\${env.T}" } }, forwardHeaders: [authorization] }
  c: { url: "https://c.internal", auth: { oauth2: { tokenUrl: "https://auth.internal/token", clientId: bff, clientSecret: "\${env.T}" } } }
  d: { url: "http://d.internal" }
endpoints:
  GET /open: { auth: public, rateLimit: false, calls: { a: { request: GET a /x } } }
  GET /admin: { auth: { methods: [jwt], scopes: [admin], roles: [ops, sre] }, rateLimit: { perEndpoint: 2/10s }, calls: { b: { request: GET b /x } } }
  GET /any: { calls: { c: { request: GET c /x }, d: { request: GET d /x } } }
`,
      { env: { S: 'x'.repeat(32), K: 'k', T: 't' } },
    )
    const out = renderPlan(plan)
    const registry = out
      .split('\n')
      .filter((l) => /^\| [a-d] /.test(l))
      .map((l) => l.split('|')[3]?.trim())
    assert.deepEqual(registry, ['Bearer token', "API key (x-b-key) + client's token", 'OAuth2 client credentials', '—'])
    assert.match(
      out,
      /^Authentication: JWT \(HS256\/HS384\/HS512; shared secret\) or API key \(header x-api-key; 1 key\)$/m,
    )
    assert.match(out, /## GET \/open\n\nCredentials: none \(public\)\.\n\nNo rate limits\.\n/)
    assert.match(
      out,
      /## GET \/admin\n\nCredentials: JWT, with scopes admin and one of the roles ops, sre\.\n\nRate limit: 2\/10s per caller\.\n/,
    )
    assert.match(out, /## GET \/any\n\nCredentials: JWT or API key\.\n/)
  })

  it("shows retries and each call's worst case", () => {
    const r = baton(['plan', 'examples/dashboard/baton.yaml'])
    assert.equal(r.code, 0)
    const rows = callRows(r.stdout)
    assert.deepEqual(
      rows.map((row) => [row[1]?.split(':')[0], row[4], row[5]]),
      [
        ['user (users)', '2 (exponential 100ms)', '1800ms'],
        ['preferences', '1 (fixed 100ms)', '700ms'],
        ['recommendations', '—', '1s'],
      ],
    )
  })

  it('refuses a broken file with its diagnostics', () => {
    const r = baton(['plan', 'test/fixtures/broken.yaml'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /BATON_CYCLE/)
  })
})

describe('baton dev', () => {
  const CHECKOUT = 'examples/checkout/baton.yaml'
  const SERVICES = 'services: cart, inventory, pricing, payment, shipping, tax'

  it('refuses an unknown service in --down or --slow: one line, exit 2', () => {
    const down = baton(['dev', CHECKOUT, '--down', 'shiping', '--port', '0'])
    assert.deepEqual(
      [down.code, down.stderr],
      [2, `baton dev: --down: unknown service 'shiping' (did you mean 'shipping'?); ${SERVICES}\n`],
    )
    const slow = baton(['dev', CHECKOUT, '--slow', 'nope=100', '--port', '0'])
    assert.deepEqual([slow.code, slow.stderr], [2, `baton dev: --slow: unknown service 'nope'; ${SERVICES}\n`])
    assert.equal(slow.stdout, '')
  })

  it('refuses --slow on a service without mock: routes (it is called at its real URL): one line, exit 2', () => {
    const r = baton(['dev', CHECKOUT, '--slow', 'payment=100', '--port', '0'])
    assert.deepEqual(
      [r.code, r.stderr],
      [
        2,
        "baton dev: --slow: 'payment' has no mock: routes, its calls go to http://payments.internal:8080, which baton dev cannot slow down; services with mocks: cart, inventory, pricing, shipping, tax\n",
      ],
    )
  })

  it('names every mistake at once', () => {
    const r = baton(['dev', CHECKOUT, '--down', 'x', '--slow', 'payment=1,y=2', '--port', '0'])
    assert.equal(r.code, 2)
    assert.equal(r.stderr.split('\n').length, 2, 'one line')
    assert.match(
      r.stderr,
      /^baton dev: --down: unknown service 'x'; .*; --slow: 'payment' has no mock: .*; --slow: unknown service 'y'; /,
    )
  })

  it('rejects a malformed --slow, and an unknown option, as usage errors (exit 2)', () => {
    const r = baton(['dev', CHECKOUT, '--slow', 'cart:3000'])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /'cart:3000' is not service=ms/)
    const unknown = baton(['serve', CHECKOUT, '--nope'])
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /unknown option '--nope'/)
  })
})

describe('Node.js version guard', () => {
  const old = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => {
    if (!existsSync(p)) return false
    const v = spawnSync(p, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim().split('.').map(Number)
    return (v[0] ?? 0) < 22 || (v[0] === 22 && (v[1] ?? 0) < 19)
  })
  it(
    'prints the version it needs in one line on an older Node',
    { skip: old === undefined ? 'no Node.js older than 22.19 on this machine' : false },
    () => {
      const r = baton(['check', 'examples/checkout/baton.yaml'], old)
      assert.equal(r.code, 1)
      assert.match(r.stderr, /^baton: Node\.js >= 22\.19 is required \(this is v\d+\.\d+\.\d+\)[^\n]*\n$/)
    },
  )
})

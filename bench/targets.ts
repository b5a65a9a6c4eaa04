import { SignJWT } from 'jose'
// What the load benchmark runs: the scenarios (one endpoint each, the same on every
// gateway) and the gateways under test. To measure a variant, e.g. Baton with metrics
// on, add a target here; every target after the first is compared with the first.

export interface Scenario {
  /** Short name, used by BENCH_SCENARIOS. */
  name: string
  title: string
  /** What the endpoint does, one sentence for RESULTS.md. */
  description: string
  method: 'GET' | 'POST'
  path: string
  /** JSON request body, sent as application/json. */
  body?: unknown
  /** Extra request headers (the edge scenario's bearer token). */
  headers?: Record<string, string>
  /** Baton's config for this scenario. */
  batonConfig: string
}

export interface Target {
  name: string
  /** The command that starts this gateway for a scenario; it must listen on a free port
   * and print a JSON line with a numeric `port` on stdout. */
  command: (scenario: Scenario) => string[]
  /** Added to the environment; UPSTREAM_URL is always set. */
  env: Record<string, string>
  /** Run only when named in BENCH_TARGETS. */
  optional?: boolean
}

// The edge scenario's JWT: HS256, signed once with a secret every gateway reads from the
// environment (children inherit process.env), valid for a day.
export const EDGE_SECRET = 'bench-only-secret-0123456789abcdef0123456789'
process.env.BENCH_JWT_SECRET = EDGE_SECRET
const edgeToken = await new SignJWT({ scope: 'checkout' })
  .setProtectedHeader({ alg: 'HS256' })
  .setSubject('bench-user')
  .setIssuer('https://auth.bench')
  .setAudience('checkout')
  .setIssuedAt()
  .setExpirationTime('24h')
  .sign(Buffer.from(EDGE_SECRET))

export const scenarios: Scenario[] = [
  {
    name: 'checkout',
    title: 'Checkout summary',
    description:
      'cart, then inventory, pricing and shipping in parallel, then tax as soon as ' +
      'pricing is done: 5 upstream calls in 3 stages, a 2-second deadline and per-call timeouts.',
    method: 'POST',
    path: '/v1/checkout/summary',
    body: { cartId: 'cart-123' },
    batonConfig: 'bench/checkout.yaml',
  },
  {
    name: 'checkout-edge',
    title: 'Checkout summary behind the edge',
    description:
      'the checkout summary, with a bearer JWT (HS256, issuer, audience, scope) and per-IP and ' +
      'per-user rate limits counted in memory (limits high enough never to refuse). wrk sends one token: the ' +
      'baseline verifies it on every request (jose, 45–75 µs each); Baton verifies it once and then takes it from its ' +
      'cache of verified tokens (jwt.cacheSize, on by default; exp still enforced). With cacheSize: 0 Baton ' +
      'verified every request too and measured 1.00× throughput (run of 2026-11-22T02:21Z, commit 3229a59).',
    method: 'POST',
    path: '/v1/checkout-edge/summary',
    body: { cartId: 'cart-123' },
    headers: { authorization: `Bearer ${edgeToken}` },
    batonConfig: 'bench/checkout-edge.yaml',
  },
  {
    name: 'posts',
    title: 'Posts with authors',
    description:
      'GET /posts (100 posts, 24 KB), then the author of each post (10 distinct ' +
      'users, at most 10 calls in flight); the response is 66 KB of JSON.',
    method: 'GET',
    path: '/posts-with-authors',
    batonConfig: 'bench/posts.yaml',
  },
]

// process.execPath is the Node that runs this driver (Node 24 under npm scripts and npx),
// started directly rather than through npx so that no wrapper process sits between the
// driver and the gateway it must stop. serve listens on 0.0.0.0 by default; the benchmark
// stays on the loopback interface.
function batonServe(bin: string, ...flags: string[]): Target['command'] {
  return (scenario) => [
    process.execPath,
    bin,
    'serve',
    scenario.batonConfig,
    '--port',
    '0',
    '--host',
    '127.0.0.1',
    ...flags,
  ]
}

export const targets: Target[] = [
  {
    name: 'baseline',
    command: () => [process.execPath, 'bench/baseline.ts'],
    env: { PORT: '0' },
  },
  {
    // Metrics on (the default), request logs off: the closest to the baseline, which logs nothing.
    name: 'baton',
    command: batonServe('bin/baton.js', '--no-access-log'),
    env: {},
  },
  {
    // Baton's defaults: metrics on and a JSON log line per request.
    name: 'baton-logs',
    command: batonServe('bin/baton.js'),
    env: {},
    optional: true,
  },
  // Baton with OpenTelemetry tracing on: every request sampled (a server span and a client
  // span per call), exported over OTLP/HTTP to the fake upstream, which accepts and drops them.
  {
    name: 'baton-tracing',
    command: batonServe('bin/baton.js'),
    env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '{UPSTREAM_URL}/v1/traces' },
    optional: true,
  },
  // `baton` with two worker processes on one port (serve --workers 2): BENCH_TARGETS=baton,baton-2w
  {
    name: 'baton-2w',
    command: batonServe('bin/baton.js', '--no-access-log', '--workers', '2'),
    env: {},
    optional: true,
  },
  // The Baton of another checkout (BENCH_BATON_AT=/path/to/checkout, e.g. a `git worktree` of the
  // commit before a change), run like `baton`: BENCH_TARGETS=baton-at,baton measures a change.
  {
    name: 'baton-at',
    command: batonServe(`${process.env.BENCH_BATON_AT ?? '.'}/bin/baton.js`, '--no-access-log'),
    env: {},
    optional: true,
  },
  // A second copy of the baseline, to see how far apart two identical servers land on
  // this machine: BENCH_TARGETS=baseline,baseline-again npm run bench
  {
    name: 'baseline-again',
    command: () => [process.execPath, 'bench/baseline.ts'],
    env: { PORT: '0' },
    optional: true,
  },
]

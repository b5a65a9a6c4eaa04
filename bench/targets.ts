// What the load benchmark runs: the scenarios (one endpoint each, the same on every
// gateway) and the gateways under test. To measure a variant, e.g. Baton with metrics
// on, add a target here; every target after the first is compared with the first.
//
// Two regimes: with the Node fake upstream (bench/upstream.ts) the upstream costs about as
// much CPU as the gateway; with nginx (bench/nginx.ts) the gateway is the bottleneck. A
// scenario runs in one regime; checkout and posts have a variant in each.
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { SignJWT } from 'jose'
import { anchors, tailcallDir, tailcallMissing, tailcallRequest } from './peers.ts'
import type { TargetRequest } from './peers.ts'

export type { TargetRequest }

export type Upstream = 'node' | 'nginx'

export interface Scenario {
  /** Short name, used by BENCH_SCENARIOS; a name may have a variant in each regime. */
  name: string
  /** Which fake upstream it runs against (BENCH_UPSTREAM). */
  upstream: Upstream
  title: string
  /** What the endpoint does, one sentence for RESULTS.md. */
  description: string
  method: 'GET' | 'POST'
  path: string
  /** JSON request body, sent as application/json. */
  body?: unknown
  /** Extra request headers (the edge scenario's bearer token). */
  headers?: Record<string, string>
  /**
   * Every request carries a header of its own (`x-n`, a counter), so that no two are identical
   * and no gateway may answer one with another's run (Baton's endpoint coalescing, Tailcall's
   * shared execution of identical queries): each is assembled afresh; upstream calls still coalesce.
   */
  distinct?: boolean
  /** Baton's config for this scenario. */
  batonConfig: string
  /** Variants of that config: with a response cache (baton-cached), with coalescing off (baton-solo), with endpoint coalescing off (baton-fresh). */
  batonVariants?: { cached?: string; solo?: string; fresh?: string; bare?: string }
}

export interface Context {
  upstreamUrl: string
  /** The port a `givenPort` target must listen on. */
  port: number
}

export interface Target {
  name: string
  /** The command that starts this gateway for a scenario; it must listen on a free port
   * and print a JSON line with a numeric `port` on stdout (or listen on ctx.port if
   * `givenPort`). */
  command: (scenario: Scenario, ctx: Context) => string[]
  /** Added to the environment; UPSTREAM_URL is always set. */
  env: Record<string, string>
  /** Run only when named in BENCH_TARGETS. */
  optional?: boolean
  /** The scenarios it can serve; all when absent. */
  appliesTo?: (scenario: Scenario) => boolean
  /** Why it cannot run this scenario on this machine (not installed, config refused). */
  unavailable?: (scenario: Scenario, ctx: Context) => string | undefined
  /** Told its port (ctx.port) instead of printing one. */
  givenPort?: boolean
  /** Asked differently from the scenario (Tailcall: a GraphQL POST). */
  request?: TargetRequest
  /** Its answer as the scenario's JSON, for the same-JSON check (Tailcall: data.posts). */
  answer?: (body: unknown) => unknown
  /** The others are compared with it too, not only with the first target. */
  reference?: boolean
}

const root = fileURLToPath(new URL('..', import.meta.url))

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
    upstream: 'node',
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
    upstream: 'node',
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
    upstream: 'node',
    title: 'Posts with authors',
    description:
      'GET /posts (100 posts, 24 KB), then the author of each post (10 distinct ' +
      'users, at most 10 calls in flight); the response is 66 KB of JSON.',
    method: 'GET',
    path: '/posts-with-authors',
    batonConfig: 'bench/posts.yaml',
  },
  {
    name: 'checkout',
    upstream: 'nginx',
    title: 'Checkout summary, fast upstream (nginx)',
    description:
      'the checkout summary against nginx: the same 5 calls, methods and bodies, but tax on a path of its own ' +
      '(POST /calculate-tax: nginx cannot tell tax from pricing by the body), so the gateway is the bottleneck.',
    method: 'POST',
    path: '/v1/checkout-fast/summary',
    body: { cartId: 'cart-123' },
    batonConfig: 'bench/checkout-fast.yaml',
    batonVariants: { solo: 'bench/checkout-fast-solo.yaml', bare: 'bench/checkout-fast-bare.yaml' },
  },
  {
    name: 'posts',
    upstream: 'nginx',
    title: "Posts with authors, Tailcall's fields, fast upstream (nginx)",
    description:
      'GET /posts (100 posts), then the author of each (10 distinct users, at most 10 calls in flight), ' +
      "answering only the fields of Tailcall's query {posts{id,userId,title,user{id,name,email}}}: 100 posts, " +
      '14 KB of JSON. Tailcall is asked that query (POST /graphql) and its data.posts compared.',
    method: 'GET',
    path: '/posts-with-users',
    batonConfig: 'bench/posts-users.yaml',
    batonVariants: { cached: 'bench/posts-users-cached.yaml', fresh: 'bench/posts-users-fresh.yaml' },
  },
  {
    name: 'posts-distinct',
    upstream: 'nginx',
    title: "Posts with authors, Tailcall's fields, every request distinct, fast upstream (nginx)",
    description:
      'The posts scenario with a header of its own on every request (x-n: a counter): no two requests are ' +
      'identical, so every gateway assembles each one (Tailcall executes each query; Baton runs each request), ' +
      'while their upstream calls still coalesce.',
    method: 'GET',
    path: '/posts-with-users',
    batonConfig: 'bench/posts-users.yaml',
    // The response cache's key is the path and query (x-n is no header it was told to vary on): one entry serves them all.
    batonVariants: { cached: 'bench/posts-users-cached.yaml' },
    distinct: true,
  },
]

// Baton refuses a config it does not understand (a key from a branch not merged yet).
function refusedBy(config: string, ctx: Context): string | undefined {
  try {
    execFileSync(process.execPath, ['bin/baton.js', 'check', config], {
      cwd: root,
      env: { ...process.env, UPSTREAM_URL: ctx.upstreamUrl },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    return undefined
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string }
    const first = `${stderr ?? ''}${stdout ?? ''}`.trim().split('\n')[0] ?? ''
    return `baton check refuses ${config}: ${first}`
  }
}

// process.execPath is the Node that runs this driver (Node 24 under npm scripts and npx),
// started directly rather than through npx so that no wrapper process sits between the
// driver and the gateway it must stop. serve listens on 0.0.0.0 by default; the benchmark
// stays on the loopback interface.
const listen = ['--port', '0', '--host', '127.0.0.1']
// BENCH_NODE_FLAGS: extra flags for every Node gateway, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
// (NODE_OPTIONS refuses --cpu-prof).
const node = [process.execPath, ...(process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter((flag) => flag !== '')]
function batonServe(bin: string, ...flags: string[]): Target['command'] {
  return (scenario) => [...node, bin, 'serve', scenario.batonConfig, ...listen, ...flags]
}

// `baton` (metrics on, no access log) with one of the scenario's variant configs.
function batonVariant(variant: keyof NonNullable<Scenario['batonVariants']>, bin = 'bin/baton.js'): Target['command'] {
  return (scenario) => [
    ...node,
    bin,
    'serve',
    scenario.batonVariants?.[variant] ?? scenario.batonConfig,
    ...listen,
    '--no-access-log',
  ]
}

const tailcall = tailcallRequest()

export const targets: Target[] = [
  {
    name: 'baseline',
    command: () => [...node, 'bench/baseline.ts'],
    env: { PORT: '0' },
  },
  {
    // Metrics on (the default), request logs off: the closest to the baseline, which logs nothing.
    name: 'baton',
    command: batonServe('bin/baton.js', '--no-access-log'),
    env: {},
  },
  {
    // The floor: the baseline's posts route sending its first answer, kept as bytes, to every request
    // (no calls, no headers, no work): what fastify on Node costs per request on this machine.
    name: 'floor',
    command: () => [...node, 'bench/baseline.ts'],
    env: { PORT: '0', BASELINE_FLOOR: '1' },
    optional: true,
    reference: true,
    appliesTo: (scenario) => scenario.name.startsWith('posts'),
  },
  {
    // The baseline written in a hurry: no per-call timeouts, no deadline, no x-request-id.
    // The bar for the fast regime: Baton's CPU per request at most this one's.
    name: 'baseline-naive',
    command: () => [...node, 'bench/baseline.ts'],
    env: { PORT: '0', BASELINE_NAIVE: '1' },
    appliesTo: (scenario) => scenario.name === 'checkout',
    reference: true,
  },
  {
    // `baton` with a one-second response cache on the endpoint (`cache: { ttl: 1s, scope: public }`).
    name: 'baton-cached',
    command: batonVariant('cached'),
    env: {},
    appliesTo: (scenario) => scenario.batonVariants?.cached !== undefined,
    unavailable: (scenario, ctx) => refusedBy(scenario.batonVariants?.cached ?? scenario.batonConfig, ctx),
  },
  {
    // `baton` with endpoint coalescing off: every client request is assembled afresh (its calls still coalesce).
    name: 'baton-fresh',
    command: batonVariant('fresh'),
    env: {},
    appliesTo: (scenario) => scenario.batonVariants?.fresh !== undefined,
  },
  {
    // `baton-solo` with metrics off: the resilience machinery alone, against the naive BFF (which has no metrics).
    name: 'baton-bare',
    command: batonVariant('bare'),
    env: {},
    optional: true,
    appliesTo: (scenario) => scenario.batonVariants?.bare !== undefined,
  },
  {
    // `baton` with coalescing off: every request makes all its calls, as the baselines do.
    name: 'baton-solo',
    command: batonVariant('solo'),
    env: {},
    optional: true,
    appliesTo: (scenario) => scenario.batonVariants?.solo !== undefined,
  },
  {
    // `baton` keeping V8's parallel GC threads however many cores it has (BATON_GC=parallel): on one
    // core (BENCH_PIN) `baton` restarts itself with --single-threaded-gc (bin/baton.js); this measures that choice.
    name: 'baton-parallel-gc',
    command: batonServe('bin/baton.js', '--no-access-log'),
    env: { BATON_GC: 'parallel' },
    optional: true,
  },
  {
    // Tailcall 1.6 (Rust), the posts screen as a GraphQL query, dedupe on: it coalesces
    // identical upstream requests in flight, as Baton does by default; and since every field
    // of the query dedupes, identical queries in flight share one execution and its serialised
    // answer (its src/core/jit/graphql_executor.rs, dedupe_and_exec), as Baton's endpoint
    // coalescing does.
    name: 'tailcall',
    command: (_scenario, ctx) => [
      join(anchors ?? '.', 'tailcall.sh'),
      'start',
      tailcallDir,
      ctx.upstreamUrl,
      String(ctx.port),
      'dedupe',
    ],
    env: {},
    givenPort: true,
    appliesTo: (scenario) => scenario.name.startsWith('posts') && scenario.upstream === 'nginx',
    unavailable: () => tailcallMissing() ?? (tailcall === undefined ? `no posts.lua in ${anchors}` : undefined),
    ...(tailcall === undefined ? {} : { request: tailcall }),
    answer: (body) => (body as { data?: { posts?: unknown } } | null)?.data?.posts,
  },
  {
    // Baton's defaults: metrics on and a JSON log line per request.
    name: 'baton-logs',
    command: batonServe('bin/baton.js'),
    env: {},
    optional: true,
  },
  // Baton with OpenTelemetry tracing on: every request sampled (a server span and a client
  // span per call), exported over OTLP/HTTP to the fake upstream, which accepts and drops them
  // (nginx answers `{}` from a file).
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
  // baton-at with coalescing off (the scenario's solo variant): BENCH_TARGETS=baton-at-solo,baton-solo.
  {
    name: 'baton-at-solo',
    command: batonVariant('solo', `${process.env.BENCH_BATON_AT ?? '.'}/bin/baton.js`),
    env: {},
    optional: true,
    appliesTo: (scenario) => scenario.batonVariants?.solo !== undefined,
  },
  // A second copy of the baseline, to see how far apart two identical servers land on
  // this machine: BENCH_TARGETS=baseline,baseline-again npm run bench
  {
    name: 'baseline-again',
    command: () => [...node, 'bench/baseline.ts'],
    env: { PORT: '0' },
    optional: true,
  },
]

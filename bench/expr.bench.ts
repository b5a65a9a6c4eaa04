/**
 * Micro-benchmark of compiled expressions against the closures one would write by hand.
 * Run: npx node bench/expr.bench.ts
 */
import { compileExpression, compileTemplate, encodePathValue } from '../src/expr/index.ts'
import type { EvalContext, Evaluator } from '../src/expr/index.ts'

const ITERATIONS = 1_000_000
const WARMUP = 200_000
const ROUNDS = 10

type Data = {
  pricing: { subtotal: number }
  tax: { amount: number }
  cart: { items: { sku: string; qty: number }[] }
  items: { sku: string; qty: number }[]
  request: { body: { cartId: string } }
}

const ctx = JSON.parse(
  JSON.stringify({
    pricing: { subtotal: 99.5 },
    tax: { amount: 8.25 },
    cart: {
      items: [
        { sku: 'A-1', qty: 2 },
        { sku: 'B-2', qty: 1 },
        { sku: 'C-3', qty: 5 },
      ],
    },
    items: [
      { sku: 'A-1', qty: 2 },
      { sku: 'B-2', qty: 1 },
      { sku: 'C-3', qty: 5 },
    ],
    request: { body: { cartId: 'c-12345' } },
  }),
) as Data

const roots = Object.keys(ctx)
const options = {
  // What the plan compiler is expected to do: one property read per root.
  resolveRoot: (name: string) =>
    roots.includes(name) ? (c: EvalContext) => (c as Record<string, unknown>)[name] : undefined,
  knownRoots: roots,
}

const cases: { name: string; compiled: Evaluator; hand: (c: Data) => unknown }[] = [
  {
    name: 'pricing.subtotal + tax.amount',
    compiled: compileExpression('pricing.subtotal + tax.amount', options).evaluate,
    hand: (c) => c.pricing.subtotal + c.tax.amount,
  },
  {
    name: 'cart.items',
    compiled: compileExpression('cart.items', options).evaluate,
    hand: (c) => c.cart.items,
  },
  {
    name: 'items.map(i, i.sku)',
    compiled: compileExpression('items.map(i, i.sku)', options).evaluate,
    hand: (c) => c.items.map((i) => i.sku),
  },
  {
    name: 'template /carts/${request.body.cartId}',
    compiled: compileTemplate('/carts/${request.body.cartId}', { ...options, encode: encodePathValue }).evaluate,
    hand: (c) => '/carts/' + encodePathValue(c.request.body.cartId),
  },
]

let sink: unknown
function run(fn: (c: Data) => unknown, iterations: number): number {
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) sink = fn(ctx)
  return Number(process.hrtime.bigint() - start) / iterations
}

// Warm every function through the same call site first, so that each is measured as the
// runtime will call it: from one site that sees many evaluators.
const fns = cases.flatMap((c) => [c.compiled as (c: Data) => unknown, c.hand])
for (const fn of fns) run(fn, WARMUP)
// Rounds interleave the cases and keep each one's best, to damp noise from other processes.
const best = fns.map(() => Infinity)
for (let round = 0; round < ROUNDS; round++) {
  fns.forEach((fn, i) => {
    best[i] = Math.min(best[i] as number, run(fn, ITERATIONS))
  })
}

console.log(`${ITERATIONS} evaluations per round, best of ${ROUNDS} rounds, Node ${process.version}`)
console.log(`${'expression'.padEnd(42)} ${'compiled'.padStart(10)} ${'by hand'.padStart(10)} ${'ratio'.padStart(7)}`)
cases.forEach(({ name }, i) => {
  const a = best[2 * i] as number
  const b = best[2 * i + 1] as number
  console.log(
    `${name.padEnd(42)} ${(a.toFixed(1) + ' ns').padStart(10)} ${(b.toFixed(1) + ' ns').padStart(10)} ${(a / b).toFixed(2).padStart(6)}x`,
  )
})
if (sink === Symbol.for('never')) console.log(sink)

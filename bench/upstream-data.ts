// What the fake upstreams answer: the JSON bodies of the posts, users and checkout
// services, serialised once. Both upstreams serve these bytes — bench/upstream.ts (Node,
// the slow regime) and bench/nginx.ts (static files, the fast regime) — so that every
// gateway gets the same answers in both regimes.
import { readFileSync } from 'node:fs'

const fixtures = new URL('../test/fixtures/jsonplaceholder/', import.meta.url)

interface User {
  id: number
}

export const postsBody = Buffer.from(JSON.stringify(JSON.parse(readFileSync(new URL('posts.json', fixtures), 'utf8'))))

/** Each user's body, by id as it appears in a path. */
export const userBodies = new Map<string, Buffer>()
for (const user of JSON.parse(readFileSync(new URL('users.json', fixtures), 'utf8')) as User[]) {
  userBodies.set(String(user.id), Buffer.from(JSON.stringify(user)))
}

export const availabilityBody = Buffer.from(JSON.stringify({ available: true }))
export const taxBody = Buffer.from(JSON.stringify({ amount: 1237, rate: 0.0825 }))
export const pricingBody = Buffer.from(JSON.stringify({ subtotal: 14997, currency: 'USD' }))
export const shippingBody = Buffer.from(JSON.stringify({ options: [], estimated: true }))

// The cart's body after its id, so that echoing an id costs one string concatenation.
const cartTail = JSON.stringify({
  items: [
    { sku: 'A1', qty: 1, price: 4999 },
    { sku: 'B2', qty: 1, price: 4999 },
    { sku: 'C3', qty: 1, price: 4999 },
  ],
  itemCount: 3,
}).slice(1)

/** A cart echoes its id: `{"id":…,"items":[…],"itemCount":3}`. */
export function cartBody(id: string): string {
  return `{"id":${JSON.stringify(id)},${cartTail}`
}

/** The cart id every scenario asks for (the static upstream has only this one). */
export const benchCartId = 'cart-123'

// The upstream paths of the checkout scenario in each regime, shared by the hand-written
// baseline (bench/baseline.ts) and the static upstream (bench/nginx.ts); Baton's configs
// (bench/checkout.yaml, bench/checkout-fast.yaml) write the same paths.
//
// The slow regime's Node upstream tells pricing from tax by the body of POST /calculate.
// nginx serves files and cannot look at a body, so in the fast regime tax has a path of
// its own; every call keeps its method and its JSON body, so the gateways do the same work.

export interface CheckoutPaths {
  /** Followed by the cart id. */
  cart: string
  inventory: string
  pricing: string
  shipping: string
  tax: string
}

export const checkoutPaths = {
  node: {
    cart: '/carts/',
    inventory: '/check-availability',
    pricing: '/calculate',
    shipping: '/estimate',
    tax: '/calculate',
  },
  nginx: {
    cart: '/carts/',
    inventory: '/check-availability',
    pricing: '/calculate',
    shipping: '/estimate',
    tax: '/calculate-tax',
  },
} as const satisfies Record<string, CheckoutPaths>

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { compileExpression } from './index.ts'
import type { CompileOptions, EvalContext, Reference } from './index.ts'

const ROOTS = ['pricing', 'tax', 'calls', 'request', 'items', 'orders']
const options: CompileOptions = {
  resolveRoot: (name) =>
    ROOTS.includes(name) ? (ctx: EvalContext) => (ctx as Record<string, unknown>)[name] : undefined,
  knownRoots: ROOTS,
}
const refs = (source: string): Reference[] => compileExpression(source, options).references

describe('references', () => {
  it('lists each root with its static member chain', () => {
    assert.deepEqual(refs('pricing.subtotal + tax.amount'), [
      { root: 'pricing', path: ['subtotal'], offset: 0 },
      { root: 'tax', path: ['amount'], offset: 19 },
    ])
    assert.deepEqual(refs('calls.cart.status'), [{ root: 'calls', path: ['cart', 'status'], offset: 0 }])
    assert.deepEqual(refs('request'), [{ root: 'request', path: [], offset: 0 }])
  })

  it('stops at the first dynamic or numeric index and at calls', () => {
    assert.deepEqual(refs('calls.cart.body.items[0].qty'), [
      { root: 'calls', path: ['cart', 'body', 'items'], offset: 0 },
    ])
    assert.deepEqual(refs('calls.cart[request.query.k].x'), [
      { root: 'calls', path: ['cart'], offset: 0 },
      { root: 'request', path: ['query', 'k'], offset: 11 },
    ])
    assert.deepEqual(refs('calls.user.name.trim().x'), [{ root: 'calls', path: ['user', 'name'], offset: 0 }])
    assert.deepEqual(refs('size(calls.cart.items)'), [{ root: 'calls', path: ['cart', 'items'], offset: 5 }])
  })

  it('follows constant string keys, as in headers["x-user-id"]', () => {
    assert.deepEqual(refs('request.headers["x-user-id"]'), [
      { root: 'request', path: ['headers', 'x-user-id'], offset: 0 },
    ])
    assert.deepEqual(refs('request["body"].id.x'), [{ root: 'request', path: ['body', 'id', 'x'], offset: 0 }])
  })

  it('includes the field tested by has()', () => {
    assert.deepEqual(refs('has(request.body.coupon)'), [{ root: 'request', path: ['body', 'coupon'], offset: 4 }])
  })

  it('does not report macro variables', () => {
    assert.deepEqual(refs('items.map(i, i.sku)'), [{ root: 'items', path: [], offset: 0 }])
    assert.deepEqual(refs('orders.map(o, o.lines.filter(l, l.qty > pricing.min))'), [
      { root: 'orders', path: [], offset: 0 },
      { root: 'pricing', path: ['min'], offset: 40 },
    ])
  })

  it('reports a root as written even where a macro variable of the same name exists elsewhere', () => {
    assert.deepEqual(
      refs('items.map(tax, tax.x).size() + tax.amount').map((r) => `${r.root}.${r.path.join('.')}`),
      ['items.', 'tax.amount'],
    )
  })

  it('is constant exactly when nothing is referenced', () => {
    assert.equal(compileExpression('1 + 2', options).isConstant, true)
    assert.equal(compileExpression('[1, 2].map(x, x * 2)', options).isConstant, true)
    assert.equal(compileExpression('tax.amount', options).isConstant, false)
    assert.equal(compileExpression('source', { resolveRoot: () => () => 1 }).source, 'source')
  })

  it('resolves each root once per compilation', () => {
    const seen: string[] = []
    const counting: CompileOptions = { resolveRoot: (name) => (seen.push(name), () => ({ a: 1 })) }
    compileExpression('x.a + x.a + y.a + items.map(x, x).size()', counting)
    assert.deepEqual(seen, ['x', 'y', 'items'])
  })
})

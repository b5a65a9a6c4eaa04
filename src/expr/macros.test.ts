import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ExpressionEvalError, ExpressionSyntaxError, compileExpression } from './index.ts'
import { evaluate, rootsOf } from './testing.ts'

const data = JSON.parse(`{
  "items": [
    { "sku": "A", "qty": 2, "price": 5, "tags": ["x"] },
    { "sku": "B", "qty": 0, "price": 3, "tags": [] },
    { "sku": "C", "qty": 1, "price": 5, "tags": ["x", "y"] }
  ],
  "orders": [ { "id": 1, "lines": [ { "sku": "A" }, { "sku": "B" } ] }, { "id": 2, "lines": [ { "sku": "C" } ] } ],
  "i": "root i",
  "minQty": 1,
  "none": null,
  "text": "abc"
}`) as Record<string, unknown>

describe('list macros', () => {
  it('map projects each element', () => {
    assert.deepEqual(evaluate('items.map(i, i.sku)', data), ['A', 'B', 'C'])
    assert.deepEqual(evaluate('items.map(i, i.qty * i.price)', data), [10, 0, 5])
    assert.deepEqual(evaluate('items.map(i, {"id": i.sku, "n": size(i.tags)})', data), [
      { id: 'A', n: 1 },
      { id: 'B', n: 0 },
      { id: 'C', n: 2 },
    ])
  })

  it('map with three arguments filters, then projects', () => {
    assert.deepEqual(evaluate('items.map(i, i.qty > 0, i.sku)', data), ['A', 'C'])
  })

  it('filter, exists, all and find', () => {
    assert.deepEqual(evaluate('items.filter(i, i.qty >= minQty).map(i, i.sku)', data), ['A', 'C'])
    assert.equal(evaluate('items.exists(i, i.qty == 0)', data), true)
    assert.equal(evaluate('items.exists(i, i.qty > 5)', data), false)
    assert.equal(evaluate('items.all(i, i.price > 0)', data), true)
    assert.equal(evaluate('items.all(i, i.qty > 0)', data), false)
    assert.deepEqual(evaluate('items.find(i, i.price == 5)', data), (data.items as unknown[])[0])
    assert.equal(evaluate('items.find(i, i.price == 99)', data), null)
  })

  it('exists and all stop at the first decisive element', () => {
    // The second element would throw (null + 1), but is never reached.
    assert.equal(evaluate('[1, null].exists(x, x + 1 == 2)'), true)
    assert.equal(evaluate('[1, null].all(x, x + 1 == 3)'), false)
  })

  it('sortBy is stable and takes numbers or strings', () => {
    assert.deepEqual(evaluate('items.sortBy(i, i.price).map(i, i.sku)', data), ['B', 'A', 'C'])
    assert.deepEqual(evaluate('items.sortBy(i, -i.qty).map(i, i.sku)', data), ['A', 'C', 'B'])
    assert.deepEqual(evaluate('["b", "c", "a"].sortBy(s, s)'), ['a', 'b', 'c'])
    assert.deepEqual(evaluate('[].sortBy(s, s)'), [])
    assert.deepEqual(
      data.items && (data.items as { sku: string }[]).map((i) => i.sku),
      ['A', 'B', 'C'],
      'the input is not sorted in place',
    )
    assert.throws(
      () => evaluate('items.sortBy(i, i.tags)', data),
      /sortBy\(\) keys must be numbers or strings, got list/,
    )
    assert.throws(() => evaluate('[1, "a"].sortBy(x, x)'), /all numbers or all strings/)
  })

  it('unique() is a plain method', () => {
    assert.deepEqual(evaluate('items.map(i, i.price).unique()', data), [5, 3])
  })

  it('nests, with inner bodies reading outer variables', () => {
    assert.deepEqual(evaluate('orders.map(o, o.lines.map(l, string(o.id) + l.sku))', data), [['1A', '1B'], ['2C']])
    assert.deepEqual(evaluate('orders.filter(o, o.lines.exists(l, l.sku == "C")).map(o, o.id)', data), [2])
    assert.deepEqual(
      evaluate('orders.map(x, x.lines.map(x, x.sku))', data),
      [['A', 'B'], ['C']],
      'an inner variable shadows an outer one',
    )
  })

  it('the variable shadows a root inside the body only', () => {
    assert.deepEqual(evaluate('items.map(i, i.sku)', data), ['A', 'B', 'C'])
    assert.deepEqual(evaluate('[items.map(i, i.sku)[0], i]', data), ['A', 'root i'])
  })

  it('is forgiving on null and undefined, strict on other non-lists', () => {
    assert.equal(evaluate('none.map(x, x)', data), undefined)
    assert.equal(evaluate('missing.filter(x, x)', { missing: undefined }), undefined)
    assert.equal(evaluate('items[0].nope.exists(x, x)', data), undefined)
    assert.throws(
      () => evaluate('text.map(x, x)', data),
      (error: unknown) => {
        assert.ok(error instanceof ExpressionEvalError)
        assert.equal(error.message, 'map() needs a list, got string')
        assert.equal(error.offset, 5)
        return true
      },
    )
  })

  it('folds a macro over a constant list', () => {
    const compiled = compileExpression('size([1, 2, 3].filter(x, x > 1))', rootsOf({}))
    assert.equal(compiled.isConstant, true)
    assert.equal(compiled.evaluate({}), 2)
  })

  it('can be evaluated concurrently and re-entrantly', () => {
    const compiled = compileExpression('items.map(i, i.tags.map(t, i.sku + t))', rootsOf(data))
    const other = { ...data, items: [{ sku: 'Z', tags: ['q'] }] }
    assert.deepEqual(compiled.evaluate(data), [['Ax'], [], ['Cx', 'Cy']])
    assert.deepEqual(compiled.evaluate(other), [['Zq']])
  })

  it('checks the variable and the argument count at compile time', () => {
    assert.throws(
      () => compileExpression('items.map(i.sku, 1)', rootsOf(data)),
      (error: unknown) => {
        assert.ok(error instanceof ExpressionSyntaxError)
        assert.match(error.message, /first argument of map\(\) is a variable name/)
        assert.equal(error.offset, 10)
        return true
      },
    )
    assert.throws(() => compileExpression('items.filter(i)', rootsOf(data)), /filter\(\) takes 2 arguments, got 1/)
    assert.throws(
      () => compileExpression('items.map(i, 1, 2, 3)', rootsOf(data)),
      /map\(\) takes 2 to 3 arguments, got 4/,
    )
    assert.throws(() => compileExpression('items.map(i, j)', rootsOf(data)), /unknown name 'j'/)
  })
})

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ExpressionSyntaxError, compileExpression, compileTemplate } from './index.ts'
import { evaluate, rootsOf } from './testing.ts'

const data = JSON.parse(`{
  "x": { "a": 1, "name": "n" },
  "items": [ { "sku": "A" }, { "sku": "B" } ],
  "text": "hello",
  "evil": { "__proto__": { "polluted": 1 }, "constructor": { "prototype": { "polluted": 2 } } }
}`) as Record<string, unknown>

function compileError(source: string): ExpressionSyntaxError {
  try {
    compileExpression(source, rootsOf(data))
  } catch (error) {
    assert.ok(error instanceof ExpressionSyntaxError, `expected ExpressionSyntaxError, got ${String(error)}`)
    return error
  }
  assert.fail(`expected ${JSON.stringify(source)} not to compile`)
}

const notPolluted = (): void => {
  assert.equal(({} as Record<string, unknown>).polluted, undefined)
  assert.equal(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted'), false)
}

describe('safety', () => {
  it('refuses __proto__, constructor and prototype written as members', () => {
    for (const name of ['__proto__', 'constructor', 'prototype']) {
      const error = compileError(`x.${name}`)
      assert.equal(error.message, `'${name}' cannot be used in an expression`)
      assert.equal(error.offset, 2)
    }
    assert.equal(compileError('items[0].constructor.name').offset, 9)
    assert.equal(compileError('has(x.__proto__)').offset, 6)
    assert.equal(compileError('constructor').offset, 0)
    assert.equal(compileError('items.map(__proto__, 1)').offset, 10)
  })

  it('gives undefined for those names read dynamically', () => {
    assert.equal(evaluate('x["constructor"]', data), undefined)
    assert.equal(evaluate('x["__proto__"]', data), undefined)
    assert.equal(evaluate('evil["__proto__"]', data), undefined, 'even when it is an own key')
    assert.equal(evaluate('x[k]', { ...data, k: 'prototype' }), undefined)
    assert.equal(evaluate('has(evil["__proto__"])', data), false)
  })

  it('never reaches inherited members', () => {
    assert.equal(evaluate('x.toString', data), undefined)
    assert.equal(evaluate('x.hasOwnProperty', data), undefined)
    assert.equal(evaluate('x["valueOf"]', data), undefined)
    assert.equal(evaluate('items.map', data), undefined, 'map without parentheses is a field, and lists have none')
    assert.equal(evaluate('items.push', data), undefined)
    assert.equal(evaluate('text.length', data), undefined, 'strings have no fields')
    assert.equal(evaluate('has(x.toString)', data), false)
    // Names no map or list inherits are read without the ownership check: strings and numbers still have no fields.
    assert.equal(evaluate('x.name.big', data), undefined, "String.prototype's, on a string")
    assert.equal(evaluate('x.a.toFixed', data), undefined, "Number.prototype's, on a number")
    assert.equal(evaluate('items.sku', data), undefined, 'a list has no named fields')
    assert.equal(evaluate('x.a.b', data), undefined)
    assert.deepEqual(evaluate('items.map(i, has(i.sku.at))', data), [false, false], "a macro variable's chain too")
  })

  it('hides the length of lists: lists have no named fields, use size()', () => {
    assert.equal(evaluate('items.length', data), undefined)
    assert.equal(evaluate('has(items.length)', data), false)
    assert.equal(evaluate('size(items)', data), 2)
    assert.equal(evaluate('{"length": 3}.length'), 3, 'a map may have a length field')
  })

  it('builds a map with any keys as data: quotes, backslashes, line separators are keys, never code', () => {
    const map = evaluate('{"}); throw 1; ({": 1, "a\\"b": 2, "c\\\\": 3, "d\\u2028e": 4, "1": 5, "x": x.a}', data)
    assert.deepEqual(map, { '}); throw 1; ({': 1, 'a"b': 2, 'c\\': 3, 'd\u2028e': 4, '1': 5, x: 1 })
    notPolluted()
  })

  it('has no way to call a JavaScript function', () => {
    assert.match(compileError('x.toString()').message, /unknown method 'toString'/)
    assert.match(compileError('text.charAt(0)').message, /unknown method 'charAt'/)
    assert.match(compileError('eval("1")').message, /unknown function 'eval'/)
  })

  it('index into a list needs an integer, into a map a string', () => {
    assert.deepEqual(evaluate('items[1]', data), { sku: 'B' })
    assert.equal(evaluate('items[2]', data), undefined)
    assert.equal(evaluate('items[-1]', data), undefined)
    assert.equal(evaluate('items[x.missing]', data), undefined)
    assert.throws(() => evaluate('items["0"]', data), /list index must be an integer, got string/)
    assert.throws(() => evaluate('items[x.a / 2]', data), /list index must be an integer, got 0.5/)
    assert.throws(() => evaluate('x[x.a]', data), /map key must be a string, got number/)
    assert.equal(evaluate('text[0]', data), undefined, 'strings cannot be indexed')
    assert.equal(evaluate('x[x.name]', { x: { name: 'name' } }), 'name')
  })

  it('navigates missing data forgivingly', () => {
    assert.equal(evaluate('x.b.c.d', data), undefined)
    assert.equal(evaluate('nothing.a', { nothing: null }), undefined)
    assert.equal(evaluate('x.a.b', data), undefined, 'a field of a number')
    assert.equal(evaluate('items[5].sku', data), undefined)
    assert.equal(evaluate('x.b.c.d.e.f', data), undefined, 'long chains too')
  })

  it('JSON data with __proto__ keys pollutes nothing through map literals or macros', () => {
    const made = evaluate('{"__proto__": {"polluted": x.a}, "k": 1}', data) as Record<string, unknown>
    assert.equal(Object.getPrototypeOf(made), Object.prototype)
    assert.ok(Object.hasOwn(made, '__proto__'))
    assert.equal(made.polluted, undefined)
    assert.equal(JSON.stringify(made), '{"__proto__":{"polluted":1},"k":1}')
    assert.equal(evaluate('{"__proto__": evil["constructor"]}["__proto__"]', data), undefined)

    const bare = evaluate('{__proto__: {"polluted": 3}}') as Record<string, unknown>
    assert.equal(Object.getPrototypeOf(bare), Object.prototype)
    assert.equal(bare.polluted, undefined)

    const mapped = evaluate('[evil].map(e, {"__proto__": e, "v": values(e)})', data) as Record<string, unknown>[]
    assert.equal(Object.getPrototypeOf(mapped[0]), Object.prototype)
    assert.deepEqual(evaluate('keys(evil)', data), ['__proto__', 'constructor'])
    assert.equal(evaluate('"__proto__" in evil', data), true, 'an own key, as JSON.parse made it')
    assert.equal(evaluate('"toString" in evil', data), false)
    notPolluted()
  })

  it('never evaluates code: expressions that look like JavaScript are errors', () => {
    assert.throws(() => compileExpression('x => 1', rootsOf(data)), ExpressionSyntaxError)
    assert.throws(() => compileExpression('`${1}`', rootsOf(data)), ExpressionSyntaxError)
    assert.throws(() => compileExpression('x; 1', rootsOf(data)), ExpressionSyntaxError)
    assert.throws(() => compileTemplate('${x = 1}', rootsOf(data)), ExpressionSyntaxError)
    assert.throws(() => compileExpression('new Date()', rootsOf(data)), ExpressionSyntaxError)
  })
})

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ExpressionEvalError, compileExpression } from './index.ts'
import { evaluate, rootsOf } from './testing.ts'

const data = JSON.parse(`{
  "user": { "name": "  Ada Lovelace ", "email": "ADA@Example.com", "tags": ["a", "b", "a"], "age": "36", "score": -2.5 },
  "order": { "lines": [ { "sku": "A", "qty": 2 }, { "sku": "B", "qty": 3 } ], "note": null },
  "emoji": "h😀i",
  "nums": [3, 1, 2],
  "words": ["pear", "apple"],
  "empty": []
}`) as Record<string, unknown>

function evalError(source: string): ExpressionEvalError {
  try {
    compileExpression(source, rootsOf(data)).evaluate(data)
  } catch (error) {
    assert.ok(error instanceof ExpressionEvalError, `expected ExpressionEvalError, got ${String(error)}`)
    return error
  }
  assert.fail(`expected ${JSON.stringify(source)} to throw`)
}

describe('functions', () => {
  it('size() counts characters, items and keys', () => {
    assert.equal(evaluate('size(user.tags)', data), 3)
    assert.equal(evaluate('size(order)', data), 2)
    assert.equal(evaluate('size("abc")'), 3)
    assert.equal(evaluate('size(emoji)', data), 3, 'an emoji is one character')
    assert.match(evalError('size(order.note)').message, /size\(\) needs a string, list or map, got null/)
  })

  it('has() tells whether a field is there, without throwing', () => {
    assert.equal(evaluate('has(user.name)', data), true)
    assert.equal(evaluate('has(order.note)', data), true, 'null is a value')
    assert.equal(evaluate('has(user.phone)', data), false)
    assert.equal(evaluate('has(nope.a.b)', { nope: null }), false)
    assert.equal(evaluate('has(user.name.first)', data), false)
    assert.equal(evaluate('has(order.lines[1])', data), true)
    assert.equal(evaluate('has(order.lines[5])', data), false)
    assert.equal(evaluate('has(user["name"])', data), true)
    assert.equal(evaluate('has(order.lines["x"])', data), false)
    assert.equal(evaluate('has({"a": user.phone}.a)', data), false)
  })

  it('string() converts scalars and writes JSON for lists and maps', () => {
    assert.equal(evaluate('string(1.5)'), '1.5')
    assert.equal(evaluate('string(true)'), 'true')
    assert.equal(evaluate('string("x")'), 'x')
    assert.equal(evaluate('string(order.lines[0])', data), '{"sku":"A","qty":2}')
    assert.match(evalError('string(order.note)').message, /string\(\) needs a value, got null/)
  })

  it('number() and int() parse decimal strings', () => {
    assert.equal(evaluate('number(user.age) + 1', data), 37)
    assert.equal(evaluate('number(" -1.5e1 ")'), -15)
    assert.equal(evaluate('number(".5")'), 0.5)
    assert.equal(evaluate('int(user.score)', data), -2)
    assert.equal(evaluate('int("7.9")'), 7)
    assert.ok(Object.is(evaluate('int(-0.5)'), 0))
    for (const bad of ['abc', '', '0x10', 'Infinity', '1e999', '1 2', '1_000']) {
      assert.throws(() => evaluate('number(x)', { x: bad }), /cannot parse/, bad)
    }
    assert.match(evalError('number(order.note)').message, /needs a number or a numeric string/)
    assert.match(evalError('int(user.tags)').message, /needs a number or a numeric string, got list/)
  })

  it('number() stays linear on long hostile input', () => {
    const start = performance.now()
    assert.throws(() => evaluate('number(x)', { x: '1'.repeat(200_000) + 'x' }), ExpressionEvalError)
    assert.ok(performance.now() - start < 500)
  })

  it('bool() is truthiness', () => {
    assert.equal(evaluate('bool(0)'), false)
    assert.equal(evaluate('bool("")'), false)
    assert.equal(evaluate('bool(order.note)', data), false)
    assert.equal(evaluate('bool(empty)', data), true)
    assert.equal(evaluate('bool("false")'), true, 'a non-empty string is truthy')
  })

  it('abs, floor, ceil and round', () => {
    assert.equal(evaluate('abs(user.score)', data), 2.5)
    assert.equal(evaluate('floor(user.score)', data), -3)
    assert.equal(evaluate('ceil(user.score)', data), -2)
    assert.equal(evaluate('round(user.score)', data), -3, 'half away from zero')
    assert.equal(evaluate('round(2.5)'), 3)
    assert.equal(evaluate('round(1.005, 2)'), 1.01)
    assert.equal(evaluate('round(3.14159, 3)'), 3.142)
    assert.ok(Object.is(evaluate('ceil(-0.5)'), 0))
    assert.match(evalError('round(user.score, 1.5)').message, /digits must be an integer/)
    assert.match(evalError('abs(user.name)').message, /abs\(\) needs a number, got string/)
  })

  it('min, max and sum', () => {
    assert.equal(evaluate('min(nums)', data), 1)
    assert.equal(evaluate('max(nums)', data), 3)
    assert.equal(evaluate('min(4, nums[0], 9)', data), 3)
    assert.equal(evaluate('max(words)', data), 'pear')
    assert.equal(evaluate('sum(nums)', data), 6)
    assert.equal(evaluate('sum(empty)', data), 0)
    assert.match(evalError('min(empty)').message, /empty list/)
    assert.match(evalError('max(nums[0], "a")').message, /cannot compare number and string/)
    assert.match(evalError('sum(words)').message, /sum\(\) needs a number, got string/)
    assert.match(evalError('min(nums[0])').message, /min\(\) needs a list, got number/)
  })

  it('keys, values and type', () => {
    assert.deepEqual(evaluate('keys(order)', data), ['lines', 'note'])
    assert.deepEqual(evaluate('values({"a": 1, "b": [2]})'), [1, [2]])
    assert.match(evalError('keys(nums)').message, /keys\(\) needs a map, got list/)
    const types = evaluate(
      '[type(order.note), type(order.missing), type(true), type(1), type("s"), type(nums), type(order)]',
      data,
    )
    assert.deepEqual(types, ['null', 'null', 'bool', 'number', 'string', 'list', 'map'])
  })
})

describe('methods', () => {
  it('string methods', () => {
    assert.equal(evaluate('user.email.contains("@")', data), true)
    assert.equal(evaluate('user.email.startsWith("ADA")', data), true)
    assert.equal(evaluate('user.email.endsWith(".org")', data), false)
    assert.equal(evaluate('user.email.lowerAscii()', data), 'ada@example.com')
    assert.equal(evaluate('"straße".upperAscii()'), 'STRAßE', 'ASCII letters only')
    assert.equal(evaluate('"ÀB".lowerAscii()'), 'Àb')
    assert.equal(evaluate('user.name.trim()', data), 'Ada Lovelace')
    assert.deepEqual(evaluate('"a,b,,c".split(",")'), ['a', 'b', '', 'c'])
    assert.deepEqual(evaluate('emoji.split("")', data), ['h', '😀', 'i'])
    assert.equal(evaluate('"a-b-c".replace("-", "+")'), 'a+b+c')
    assert.equal(evaluate('"price: X".replace("X", "$&$1")'), 'price: $&$1', 'replacement taken literally')
    assert.equal(evaluate('user.name.size()', data), 15)
  })

  it('list methods', () => {
    assert.equal(evaluate('words.join(", ")', data), 'pear, apple')
    assert.equal(evaluate('[1, "a", true, null].join("|")'), '1|a|true|')
    assert.equal(evaluate('words.join()', data), 'pearapple')
    assert.equal(evaluate('user.tags.contains("b")', data), true)
    assert.equal(evaluate('order.lines.contains({"sku": "B", "qty": 3})', data), true)
    assert.equal(evaluate('nums.size()', data), 3)
    assert.deepEqual(evaluate('user.tags.unique()', data), ['a', 'b'])
    assert.deepEqual(evaluate('[{"a": 1}, {"a": 1}, {"a": 2}, 1, 1.0, null].unique()'), [{ a: 1 }, { a: 2 }, 1, null])
    assert.equal(evaluate('order.size()', data), 2, 'size() works on maps too')
  })

  it('a method on null or undefined gives undefined, like a field would', () => {
    assert.equal(evaluate('order.note.trim()', data), undefined)
    assert.equal(evaluate('user.phone.startsWith("+44")', data), undefined)
    assert.equal(evaluate('order.missing.size()', data), undefined)
  })

  it('a method on the wrong kind of value throws', () => {
    assert.match(evalError('nums.trim()').message, /trim\(\) is a method of strings, not of list/)
    assert.match(evalError('user.name.join(",")').message, /join\(\) is a method of lists, not of string/)
    assert.match(evalError('order.contains("x")').message, /key in map/)
    assert.match(evalError('user.name.startsWith(1 + nums[0])').message, /needs a string argument, got number/)
    assert.match(evalError('user.name.replace(user.phone ?? "", "x")').message, /non-empty/)
  })
})

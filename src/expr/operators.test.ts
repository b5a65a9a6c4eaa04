import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ExpressionEvalError, ExpressionSyntaxError, compileExpression } from './index.ts'
import { evaluate, rootsOf } from './testing.ts'

/** Request-like data, as it arrives: through JSON.parse. */
const data = JSON.parse(`{
  "cart": { "items": [ { "sku": "A", "qty": 2, "price": 9.99 }, { "sku": "B", "qty": 1, "price": 20 } ], "currency": "EUR" },
  "n": { "zero": 0, "one": 1, "half": 0.5, "big": 1e308 },
  "s": { "empty": "", "a": "a", "b": "b" },
  "nothing": null,
  "flags": { "yes": true, "no": false },
  "list": [1, 2, 3],
  "map": { "k": "v" }
}`) as Record<string, unknown>

function evalError(source: string): ExpressionEvalError {
  const compiled = compileExpression(source, rootsOf(data))
  try {
    compiled.evaluate(data)
  } catch (error) {
    assert.ok(error instanceof ExpressionEvalError, `expected ExpressionEvalError, got ${String(error)}`)
    return error
  }
  assert.fail(`expected ${JSON.stringify(source)} to throw`)
}

describe('JSON numbers', () => {
  it('does arithmetic on numbers that came from JSON.parse', () => {
    assert.equal(evaluate('cart.items[0].qty + 1', data), 3)
    assert.equal(evaluate('1 + 2.5', data), 3.5)
    assert.equal(evaluate('cart.items[0].price * cart.items[0].qty', data), 19.98)
    assert.equal(evaluate('7 / 2', data), 3.5)
  })

  it('treats 1 and 1.0 as the same number', () => {
    assert.equal(evaluate('1 == 1.0'), true)
    assert.equal(evaluate('n.one == 1.0', data), true)
    assert.equal(evaluate('[1.0, 2] == [1, 2.0]'), true)
  })

  it('returns plain numbers that JSON.stringify handles', () => {
    const total = evaluate('size(cart.items) + sum(cart.items.map(i, i.qty))', data)
    assert.equal(typeof total, 'number')
    assert.equal(JSON.stringify({ total }), '{"total":5}')
  })

  it('throws on results that are not finite', () => {
    assert.match(evalError('n.big * 10').message, /not a finite number/)
  })
})

describe('arithmetic', () => {
  it('adds numbers, strings and lists', () => {
    assert.equal(evaluate('s.a + s.b', data), 'ab')
    assert.deepEqual(evaluate('list + [4]', data), [1, 2, 3, 4])
    assert.deepEqual(data.list, [1, 2, 3], 'concatenation leaves its operands alone')
  })

  it('subtracts, multiplies, divides and takes remainders', () => {
    assert.equal(evaluate('10 - n.one', data), 9)
    assert.equal(evaluate('n.half * 4', data), 2)
    assert.equal(evaluate('1 / 4', data), 0.25)
    assert.equal(evaluate('7 % 3', data), 1)
    assert.equal(evaluate('-7 % 3', data), -1)
    assert.equal(evaluate('-n.one', data), -1)
  })

  it('refuses to mix types', () => {
    const nullPlus = evalError('nothing + 1')
    assert.equal(nullPlus.message, 'cannot add null and number')
    assert.equal(nullPlus.offset, 8)
    assert.equal(evalError('cart.missing + 1').message, 'cannot add undefined and number')
    assert.equal(evalError('s.a + 1').message, 'cannot add string and number')
    assert.equal(evalError('list + map').message, 'cannot add list and map')
    assert.match(evalError('s.a - 1').message, /cannot apply '-' to string and number/)
    assert.match(evalError('flags.yes * 2').message, /cannot apply '\*' to bool and number/)
    assert.match(evalError('-s.a').message, /cannot negate string/)
  })

  it('throws on division and modulo by zero', () => {
    const division = evalError('10 / n.zero')
    assert.equal(division.message, 'division by zero')
    assert.equal(division.offset, 3)
    assert.equal(evalError('10 % n.zero').message, 'modulo by zero')
  })
})

describe('logic', () => {
  it('uses truthiness: false, null, undefined, 0 and "" are falsy', () => {
    for (const falsy of ['false', 'null', 'cart.missing', 'n.zero', 's.empty']) {
      assert.equal(evaluate(`!${falsy}`, data), true, falsy)
      assert.equal(evaluate(`${falsy} || false`, data), false, falsy)
    }
    for (const truthy of ['true', 'n.half', 's.a', '[]', '{}', 'list']) {
      assert.equal(evaluate(`!${truthy}`, data), false, truthy)
    }
  })

  it('returns booleans from && and ||', () => {
    assert.equal(evaluate('s.a && n.one', data), true)
    assert.equal(evaluate('s.empty || n.zero', data), false)
    assert.equal(evaluate('n.zero && s.a', data), false)
  })

  it('short-circuits', () => {
    // The right side would throw if it ran.
    assert.equal(evaluate('false && nothing + 1 > 0', data), false)
    assert.equal(evaluate('flags.no && nothing + 1 > 0', data), false)
    assert.equal(evaluate('flags.yes || nothing + 1 > 0', data), true)
    assert.equal(evaluate('n.one ?? nothing + 1', data), 1)
    assert.equal(evaluate('flags.yes ? 1 : nothing + 1', data), 1)
  })

  it('coalesces only null and undefined', () => {
    assert.equal(evaluate('nothing ?? "d"', data), 'd')
    assert.equal(evaluate('cart.missing ?? "d"', data), 'd')
    assert.equal(evaluate('n.zero ?? 5', data), 0)
    assert.equal(evaluate('s.empty ?? "d"', data), '')
    assert.equal(evaluate('flags.no ?? true', data), false)
  })

  it('chooses with ?: on truthiness', () => {
    assert.equal(evaluate('s.a ? "yes" : "no"', data), 'yes')
    assert.equal(evaluate('cart.missing ? "yes" : "no"', data), 'no')
  })
})

describe('comparison', () => {
  it('compares values deeply with == and !=', () => {
    assert.equal(evaluate('cart.items[0] == {"sku": "A", "qty": 2, "price": 9.99}', data), true)
    assert.equal(evaluate('cart.items[0] == {"sku": "A", "qty": 2}', data), false)
    assert.equal(evaluate('list == [1, 2, 3]', data), true)
    assert.equal(evaluate('list != [1, 2]', data), true)
    assert.equal(evaluate('[[1], {"a": [2]}] == [[1], {"a": [2]}]'), true)
    assert.equal(evaluate('{"a": 1, "b": 2} == {"b": 2, "a": 1}'), true)
    assert.equal(evaluate('[] == {}'), false)
  })

  it('never converts types for ==', () => {
    assert.equal(evaluate('1 == "1"'), false)
    assert.equal(evaluate('0 == false'), false)
    assert.equal(evaluate('"" == null'), false)
    assert.equal(evaluate('1 != "1"'), true)
  })

  it('treats a missing value as null', () => {
    assert.equal(evaluate('cart.missing == null', data), true)
    assert.equal(evaluate('nothing == cart.missing', data), true)
    assert.equal(evaluate('{"a": cart.missing} == {}', data), true)
  })

  it('orders numbers with numbers and strings with strings', () => {
    assert.equal(evaluate('1 < 2'), true)
    assert.equal(evaluate('2 <= 2'), true)
    assert.equal(evaluate('3 > 2.5'), true)
    assert.equal(evaluate('2 >= 3'), false)
    assert.equal(evaluate('"apple" < "banana"'), true)
    assert.equal(evaluate('"b" >= "a"'), true)
  })

  it('refuses to order mixed types', () => {
    const mixed = evalError('n.one < "2"')
    assert.equal(mixed.message, 'cannot compare number and string')
    assert.equal(mixed.offset, 6)
    assert.equal(evalError('nothing > 0').message, 'cannot compare null and number')
    assert.equal(evalError('list < list').message, 'cannot compare list and list')
  })

  it('tests membership with in', () => {
    assert.equal(evaluate('2 in list', data), true)
    assert.equal(evaluate('5 in list', data), false)
    assert.equal(evaluate('{"sku": "B", "qty": 1, "price": 20} in cart.items', data), true)
    assert.equal(evaluate('"k" in map', data), true)
    assert.equal(evaluate('"v" in map', data), false)
    assert.equal(evaluate('"toString" in map', data), false)
    assert.equal(evaluate('"k" in cart.missing', data), false)
    assert.match(evalError('"a" in s.a').message, /contains/)
    assert.match(evalError('1 in map').message, /string key/)
  })
})

describe('constant folding', () => {
  it('folds constant parts at compile time', () => {
    const compiled = compileExpression('2 * 3 + 1', rootsOf({}))
    assert.equal(compiled.isConstant, true)
    assert.equal(compiled.evaluate({}), 7)
  })

  it('turns a constant part that always fails into a compile error', () => {
    assert.throws(
      () => compileExpression('x + 1 / 0', rootsOf({ x: 1 })),
      (error: unknown) => {
        assert.ok(error instanceof ExpressionSyntaxError)
        assert.equal(error.message, 'division by zero')
        assert.equal(error.offset, 6)
        return true
      },
    )
  })
})

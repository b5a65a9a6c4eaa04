import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ExpressionEvalError, ExpressionSyntaxError, compileExpression } from './index.ts'
import type { CompileOptions, EvalContext } from './index.ts'

const ROOTS = ['request', 'calls', 'cart']
const options: CompileOptions = {
  resolveRoot: (name) =>
    ROOTS.includes(name) ? (ctx: EvalContext) => (ctx as Record<string, unknown>)[name] : undefined,
  knownRoots: ROOTS,
}

function compileError(source: string, with_: CompileOptions = options): ExpressionSyntaxError {
  try {
    compileExpression(source, with_)
  } catch (error) {
    assert.ok(error instanceof ExpressionSyntaxError, `expected ExpressionSyntaxError, got ${String(error)}`)
    return error
  }
  assert.fail(`expected ${JSON.stringify(source)} not to compile`)
}

describe('compile errors', () => {
  it('unknown name, with did-you-mean over the known roots', () => {
    const error = compileError('1 + reqest.body.id')
    assert.equal(error.message, "unknown name 'reqest'")
    assert.equal(error.offset, 4)
    assert.equal(error.hint, "did you mean 'request'? known names: calls, cart, request")
    assert.equal(compileError('CART').hint, "did you mean 'cart'? known names: calls, cart, request")
    assert.equal(compileError('zzz').hint, 'known names: calls, cart, request')
    assert.equal(compileError('zzz', { resolveRoot: () => undefined }).hint, undefined)
  })

  it('a function name used without a call', () => {
    assert.match(compileError('size + 1').hint ?? '', /size is a function: write size\(…\)/)
  })

  it('unknown function, listing the known ones', () => {
    const error = compileError('cart.total + sizee(cart.items)')
    assert.equal(error.message, "unknown function 'sizee'")
    assert.equal(error.offset, 13)
    assert.match(
      error.hint ?? '',
      /^did you mean 'size'\? known functions: abs, bool, ceil, floor, has, int, keys, max, min, number, round, size, string, sum, type, values$/,
    )
    assert.match(compileError('lenght(cart.items)').hint ?? '', /did you mean 'size'/)
    assert.match(compileError('contains(cart.items, 1)').hint ?? '', /contains is a method: write x.contains\(…\)/)
  })

  it('unknown method, listing the known ones, macros included', () => {
    const error = compileError('cart.items.lenght()')
    assert.equal(error.message, "unknown method 'lenght'")
    assert.equal(error.offset, 11)
    assert.match(error.hint ?? '', /^did you mean 'size'\? known methods: .*contains.*sortBy.*unique/)
    assert.match(compileError('request.q.toLowerCase()').hint ?? '', /did you mean 'lowerAscii'/)
    assert.match(compileError('cart.items.includes(1)').hint ?? '', /did you mean 'contains'/)
    assert.match(compileError('request.q.startswith("a")').hint ?? '', /did you mean 'startsWith'/)
    assert.match(compileError('cart.total.round()').hint ?? '', /round is a function: write round\(x\)/)
    assert.match(compileError('request.q.matches("a+")').message, /unknown method 'matches'/)
  })

  it('wrong argument counts', () => {
    const error = compileError('round(cart.total, 2, 3)')
    assert.equal(error.message, 'round() takes 1 to 2 arguments, got 3')
    assert.equal(error.offset, 0)
    assert.equal(compileError('size()').message, 'size() takes 1 argument, got 0')
    assert.equal(compileError('min()').message, 'min() takes at least 1 argument, got 0')
    assert.equal(compileError('request.q.trim(1)').message, 'trim() takes 0 arguments, got 1')
    assert.equal(compileError('request.q.replace("a")').message, 'replace() takes 2 arguments, got 1')
  })

  it('has() needs a field', () => {
    const error = compileError('has(cart)')
    assert.match(error.message, /has\(\) needs a field/)
    assert.equal(error.offset, 4)
    assert.equal(compileError('1 + has(cart.a + 1)').offset, 8)
  })

  it('a constant part that always fails', () => {
    const error = compileError('cart.total + (1 + "a")')
    assert.equal(error.message, 'cannot add number and string')
    assert.equal(error.offset, 16)
    assert.match(error.hint ?? '', /does not depend on the request/)
    assert.equal(compileError('number("x")').message, 'number() cannot parse "x" as a number')
  })

  it('errors are Error instances with a name', () => {
    const error = compileError('(')
    assert.ok(error instanceof Error)
    assert.equal(error.name, 'ExpressionSyntaxError')
  })
})

describe('runtime errors', () => {
  const run = (source: string, data: Record<string, unknown>): ExpressionEvalError => {
    const compiled = compileExpression(source, options)
    try {
      compiled.evaluate(data)
    } catch (error) {
      assert.ok(error instanceof ExpressionEvalError, `expected ExpressionEvalError, got ${String(error)}`)
      return error
    }
    assert.fail(`expected ${JSON.stringify(source)} to throw`)
  }

  it('carries the offset of the failing operator, function or method', () => {
    const add = run('cart.a + 1', { cart: { a: null } })
    assert.equal(add.message, 'cannot add null and number')
    assert.equal(add.offset, 7)
    assert.equal(add.name, 'ExpressionEvalError')
    assert.equal(run('1 + cart.a / cart.b', { cart: { a: 1, b: 0 } }).offset, 11)
    assert.equal(run('request.x + number(request.q)', { request: { x: 1, q: 'abc' } }).offset, 12)
    assert.equal(run('request.q.split(1 + request.n)', { request: { q: 'a', n: 1 } }).offset, 10)
  })

  it('does not throw for compile-time-valid expressions on well-typed data', () => {
    const compiled = compileExpression('cart.a + 1', options)
    assert.equal(compiled.evaluate({ cart: { a: 1 } }), 2)
  })
})

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ExpressionSyntaxError, compileTemplate, encodePathValue } from './index.ts'
import { rootsOf } from './testing.ts'

const data = JSON.parse(`{
  "request": { "body": { "cartId": "c-42", "qty": 3, "tags": ["a", "b"], "gift": false, "note": null } },
  "pricing": { "subtotal": 10.5 },
  "tax": { "amount": 2 }
}`) as Record<string, unknown>

const render = (source: string, encode?: (value: string) => string): unknown =>
  compileTemplate(source, encode === undefined ? rootsOf(data) : { ...rootsOf(data), encode }).evaluate(data)

function syntaxError(source: string): ExpressionSyntaxError {
  try {
    compileTemplate(source, rootsOf(data))
  } catch (error) {
    assert.ok(error instanceof ExpressionSyntaxError, `expected ExpressionSyntaxError, got ${String(error)}`)
    return error
  }
  assert.fail(`expected ${JSON.stringify(source)} not to compile`)
}

describe('templates', () => {
  it('without ${ is a constant string', () => {
    const compiled = compileTemplate('/health', rootsOf(data))
    assert.equal(compiled.isConstant, true)
    assert.deepEqual(compiled.references, [])
    assert.equal(compiled.evaluate({}), '/health')
    assert.equal(render(''), '')
    assert.equal(render('costs $5 {not} an expression'), 'costs $5 {not} an expression')
  })

  it('keeps the type of a lone ${…}', () => {
    assert.equal(render('${pricing.subtotal + tax.amount}'), 12.5)
    assert.deepEqual(render('${request.body.tags}'), ['a', 'b'])
    assert.equal(render('${request.body.gift}'), false)
    assert.equal(render('${request.body.note}'), null)
    assert.equal(render('${request.body.missing}'), undefined)
  })

  it('concatenates text and values', () => {
    assert.equal(render('/carts/${request.body.cartId}'), '/carts/c-42')
    assert.equal(render('${request.body.cartId}/items'), 'c-42/items')
    assert.equal(render('qty=${request.body.qty}, gift=${request.body.gift}'), 'qty=3, gift=false')
    assert.equal(render('[${request.body.note}${request.body.missing}]'), '[]', 'null and undefined become ""')
    assert.equal(render('tags: ${request.body.tags}'), 'tags: ["a","b"]', 'lists and maps become JSON')
    assert.equal(render('${pricing.subtotal}${tax.amount}'), '10.52')
    assert.equal(render('${ "a" } ${ 1 + 1 } ${ true } ${tax.amount}'), 'a 2 true 2')
  })

  it('reads $${ as a literal ${', () => {
    assert.equal(render('$${request.body.cartId}'), '${request.body.cartId}')
    assert.equal(render('cost: $${x} and ${tax.amount}'), 'cost: ${x} and 2')
    const constant = compileTemplate('only $${literal}', rootsOf(data))
    assert.equal(constant.isConstant, true)
    assert.equal(constant.evaluate({}), 'only ${literal}')
  })

  it('finds the end of ${ past strings and map literals', () => {
    assert.equal(render('${"}"}!'), '}!')
    assert.equal(render("${'{'}!"), '{!')
    assert.equal(render('${ {"a": {"b": 1}}.a.b }x'), '1x')
    assert.deepEqual(render('${{"id": request.body.cartId}}'), { id: 'c-42' })
    assert.equal(render('a${"x"}b${"}{"}c'), 'axb}{c')
  })

  it('folds constant parts', () => {
    const compiled = compileTemplate('/v${1 + 1}/items', rootsOf(data))
    assert.equal(compiled.isConstant, true)
    assert.equal(compiled.evaluate({}), '/v2/items')
  })

  it('reports syntax errors at offsets in the whole template', () => {
    const unterminated = syntaxError('/carts/${request.body.cartId')
    assert.match(unterminated.message, /unterminated '\$\{'/)
    assert.equal(unterminated.offset, 7)
    assert.equal(syntaxError('/a/${"x}').offset, 5, 'an unterminated string inside')
    const bad = syntaxError('/carts/${request.body.}')
    assert.equal(bad.offset, 22)
    const unknown = syntaxError('/x/${ reqest.body }')
    assert.equal(unknown.offset, 6)
    assert.match(unknown.hint ?? '', /did you mean 'request'/)
    assert.equal(syntaxError('a ${} b').offset, 2)
    assert.equal(syntaxError('${1 + }').offset, 6)
  })

  it('reports references with offsets in the whole template', () => {
    const compiled = compileTemplate('/carts/${request.body.cartId}/t/${tax.amount}', rootsOf(data))
    assert.deepEqual(compiled.references, [
      { root: 'request', path: ['body', 'cartId'], offset: 9 },
      { root: 'tax', path: ['amount'], offset: 34 },
    ])
    assert.equal(compiled.isConstant, false)
    assert.equal(compiled.source, '/carts/${request.body.cartId}/t/${tax.amount}')
  })
})

describe('path encoding', () => {
  const path = (value: unknown): unknown =>
    compileTemplate('/files/${name}', { ...rootsOf({ name: value }), encode: encodePathValue }).evaluate({
      name: value,
    })

  it('encodes each value as one path segment', () => {
    assert.equal(path('../admin'), '/files/..%2Fadmin')
    assert.equal(path('a/b'), '/files/a%2Fb')
    assert.equal(path('x?y#z'), '/files/x%3Fy%23z')
    assert.equal(path('%2F'), '/files/%252F')
    assert.equal(path('a b&c=d'), '/files/a%20b%26c%3Dd')
    assert.equal(path('é'), '/files/%C3%A9')
  })

  it('encodes dot segments so no traversal is possible', () => {
    assert.equal(path('..'), '/files/%2E%2E')
    assert.equal(path('.'), '/files/%2E')
    assert.equal(path('...'), '/files/%2E%2E%2E')
    assert.equal(path('.hidden'), '/files/.hidden')
    assert.equal(encodePathValue('..'), '%2E%2E')
  })

  it('never throws on a lone surrogate', () => {
    assert.equal(path('a\uD800b'), '/files/a%EF%BF%BDb')
  })

  it('encodes converted numbers and booleans, never the literal text', () => {
    assert.equal(path(12), '/files/12')
    // An empty segment would reach another resource (/files/ is the collection): never produced.
    assert.throws(() => path(null), { name: 'EmptyPathValueError', message: 'name is missing or empty' })
    assert.throws(() => path(''), { name: 'EmptyPathValueError' })
    assert.equal(
      compileTemplate('/a b/${x}?', { ...rootsOf({ x: 'c d' }), encode: encodePathValue }).evaluate({ x: 'c d' }),
      '/a b/c%20d?',
    )
  })

  it('encodes a lone ${…} too, so the result is always an encoded string', () => {
    const compiled = compileTemplate('${name}', { ...rootsOf({ name: '..' }), encode: encodePathValue })
    assert.equal(compiled.evaluate({ name: '..' }), '%2E%2E')
    assert.equal(compiled.evaluate({ name: 7 }), '7')
  })

  it('encodes constant parts at compile time', () => {
    const compiled = compileTemplate('/x/${"a/b"}', { ...rootsOf({}), encode: encodePathValue })
    assert.equal(compiled.isConstant, true)
    assert.equal(compiled.evaluate({}), '/x/a%2Fb')
  })
})

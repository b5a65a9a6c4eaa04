import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ExpressionSyntaxError, compileExpression } from './index.ts'
import { evaluate, rootsOf } from './testing.ts'

function syntaxError(source: string, data: Record<string, unknown> = {}): ExpressionSyntaxError {
  try {
    compileExpression(source, rootsOf(data))
  } catch (error) {
    assert.ok(error instanceof ExpressionSyntaxError, `expected ExpressionSyntaxError, got ${String(error)}`)
    return error
  }
  assert.fail(`expected ${JSON.stringify(source)} not to compile`)
}

describe('literals', () => {
  it('reads JSON numbers, exponents included', () => {
    assert.equal(evaluate('0'), 0)
    assert.equal(evaluate('42'), 42)
    assert.equal(evaluate('2.5'), 2.5)
    assert.equal(evaluate('1e3'), 1000)
    assert.equal(evaluate('1.5E-2'), 0.015)
    assert.equal(evaluate('2e+2'), 200)
    assert.equal(evaluate('-7'), -7)
  })

  it('reads strings in either quote with escapes', () => {
    assert.equal(evaluate(`'it\\'s'`), "it's")
    assert.equal(evaluate(`"say \\"hi\\""`), 'say "hi"')
    assert.equal(evaluate(`"a\\nb\\tc\\\\d\\/e"`), 'a\nb\tc\\d/e')
    assert.equal(evaluate(`'\\u00e9\\u20AC'`), 'é€')
    assert.equal(evaluate(`'a}b{'`), 'a}b{')
    assert.equal(evaluate(`""`), '')
  })

  it('reads true, false, null, lists and maps', () => {
    assert.equal(evaluate('true'), true)
    assert.equal(evaluate('false'), false)
    assert.equal(evaluate('null'), null)
    assert.deepEqual(evaluate('[1, "two", [3], {}]'), [1, 'two', [3], {}])
    assert.deepEqual(evaluate('[]'), [])
    assert.deepEqual(evaluate('[1, 2,]'), [1, 2])
    assert.deepEqual(evaluate(`{"k": 1, k2: 'v', "with space": [true], in: null,}`), {
      k: 1,
      k2: 'v',
      'with space': [true],
      in: null,
    })
  })

  it('gives each evaluation its own list and map, even when constant', () => {
    const compiled = compileExpression('{"a": [1]}', rootsOf({}))
    const first = compiled.evaluate({}) as { a: number[] }
    first.a.push(2)
    assert.deepEqual(compiled.evaluate({}), { a: [1] })
  })

  it('allows whitespace and newlines anywhere between tokens', () => {
    assert.equal(evaluate(' \n\t1 +\r\n 2 '), 3)
  })
})

describe('precedence', () => {
  const cases: [string, unknown][] = [
    ['1 + 2 * 3', 7],
    ['(1 + 2) * 3', 9],
    ['10 - 4 - 3', 3],
    ['100 / 10 / 5', 2],
    ['7 % 4 * 2', 6],
    ['2 * 3 % 4', 2],
    ['-2 * 3', -6],
    ['- -2', 2],
    ['!true || true', true],
    ['!(true || true)', false],
    ['!!1', true],
    ['1 + 2 == 3', true],
    ['1 < 2 == true', true],
    ['2 in [1, 2] == true', true],
    ['true || false && false', true],
    ['(true || false) && false', false],
    ['false && true || true', true],
    ['null ?? 1 + 1', 2],
    ['null ?? false || true', true],
    ['true ? 1 : 2 + 10', 1],
    ['false ? 1 : true ? 2 : 3', 2],
    ['true ? false ? 1 : 2 : 3', 2],
    ['null ?? null ?? 3', 3],
    ['1 == 1 ? "y" : "n"', 'y'],
    ['[1, 2, 3][1] * 2', 4],
    ['-[5][0]', -5],
    ['{"a": {"b": 2}}.a.b + 1', 3],
  ]
  for (const [source, expected] of cases) {
    it(`${source} → ${JSON.stringify(expected)}`, () => assert.deepEqual(evaluate(source), expected))
  }
})

describe('syntax errors', () => {
  it('points at an unterminated string', () => {
    const error = syntaxError(`a + 'abc`, { a: 1 })
    assert.equal(error.message, 'unterminated string')
    assert.equal(error.offset, 4)
  })

  it('points at an unexpected token', () => {
    const error = syntaxError('1 + * 2')
    assert.match(error.message, /unexpected '\*'/)
    assert.equal(error.offset, 4)
  })

  it('points at the token after a complete expression', () => {
    const error = syntaxError('a b', { a: 1, b: 2 })
    assert.match(error.message, /unexpected 'b'/)
    assert.equal(error.offset, 2)
  })

  it('reports the end of input', () => {
    const error = syntaxError('(1 + 2')
    assert.match(error.message, /expected '\)'.*end of expression/)
    assert.equal(error.offset, 6)
  })

  it('rejects an empty expression', () => {
    assert.equal(syntaxError('   ').message, 'empty expression')
  })

  it('rejects non-JSON numbers', () => {
    assert.equal(syntaxError('x + 012', { x: 1 }).offset, 4)
    assert.match(syntaxError('1e').message, /exponent/)
    assert.match(syntaxError('12abc').message, /invalid number/)
    assert.match(syntaxError('1e999').message, /out of range/)
  })

  it('rejects bad escapes', () => {
    const error = syntaxError(`'ab\\q'`)
    assert.match(error.message, /invalid escape/)
    assert.equal(error.offset, 3)
    assert.equal(syntaxError(`'\\u12'`).offset, 1)
  })

  it('hints at the operator meant', () => {
    const error = syntaxError('a = 1', { a: 1 })
    assert.equal(error.offset, 2)
    assert.match(error.hint ?? '', /==/)
    assert.match(syntaxError('true | false').hint ?? '', /\|\|/)
  })

  it('rejects ${ inside a bare expression', () => {
    const error = syntaxError('${a}', { a: 1 })
    assert.equal(error.offset, 0)
    assert.match(error.hint ?? '', /template/)
  })

  it('rejects bad map keys and duplicates', () => {
    assert.match(syntaxError('{1: 2}').hint ?? '', /name or a string/)
    const duplicate = syntaxError('{a: 1, "a": 2}')
    assert.match(duplicate.message, /duplicate map key "a"/)
    assert.equal(duplicate.offset, 7)
  })

  it('requires a name after a dot', () => {
    assert.equal(syntaxError('a.1', { a: 1 }).offset, 2)
  })

  it('limits nesting instead of overflowing the stack', () => {
    assert.match(syntaxError('('.repeat(5000) + '1' + ')'.repeat(5000)).message, /nests more than/)
    assert.match(syntaxError(Array.from({ length: 5000 }, () => '1').join(' + ')).message, /nests more than/)
    assert.match(syntaxError('!'.repeat(5000) + 'true').message, /nests more than/)
    assert.equal(evaluate(Array.from({ length: 100 }, () => '1').join(' + ')), 100)
  })
})

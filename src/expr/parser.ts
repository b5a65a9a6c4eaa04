import type { BinaryOperator, MapEntry, Node } from './ast.ts'
import { ExpressionSyntaxError } from './errors.ts'
import type { Token } from './lexer.ts'

/** Deeper nesting than this is a config mistake, and would risk the stack at compile and run time. */
const MAX_DEPTH = 200

/** Binary operators by precedence, lowest first; all left-associative. */
const LEVELS: readonly ReadonlySet<string>[] = [
  new Set(['??']),
  new Set(['||']),
  new Set(['&&']),
  new Set(['==', '!=', '<', '<=', '>', '>=', 'in']),
  new Set(['+', '-']),
  new Set(['*', '/', '%']),
]
const LITERAL_NAMES: ReadonlyMap<string, null | boolean> = new Map([
  ['true', true],
  ['false', false],
  ['null', null],
])

/**
 * Parses tokens (ending with an 'end' token) into a tree. Precedence, low to high:
 * `?:`, `??`, `||`, `&&`, relations (`== != < <= > >= in`), `+ -`, `* / %`, unary `- !`,
 * postfix `.name`, `[index]`, `.name(args)`.
 */
export function parse(tokens: readonly Token[]): Node {
  const parser = new Parser(tokens)
  const first = parser.peek()
  if (first.type === 'end') throw new ExpressionSyntaxError('empty expression', first.start)
  const node = parser.parseExpression()
  const rest = parser.peek()
  if (rest.type !== 'end')
    parser.fail(rest, `unexpected ${describe(rest)}`, 'expected an operator or the end of the expression')
  return node
}

class Parser {
  private readonly tokens: readonly Token[]
  private position = 0
  private depth = 0

  constructor(tokens: readonly Token[]) {
    this.tokens = tokens
  }

  peek(): Token {
    return this.tokens[this.position] as Token
  }

  fail(token: Token, message: string, hint?: string): never {
    throw new ExpressionSyntaxError(message, token.start, hint)
  }

  parseExpression(): Node {
    const saved = this.enter()
    const test = this.parseBinary(0)
    const question = this.accept('?')
    let node = test
    if (question !== undefined) {
      const consequent = this.parseExpression()
      this.expect(':', "to complete 'condition ? a : b'")
      const alternate = this.parseExpression()
      node = { kind: 'conditional', test, consequent, alternate, at: question.start }
    }
    this.depth = saved
    return node
  }

  /** Left-associative binary levels, from `??` (level 0) down to `* / %` (the last level). */
  private parseBinary(level: number): Node {
    const operators = LEVELS[level] as ReadonlySet<string>
    const operand =
      level === LEVELS.length - 1 ? (): Node => this.parseUnary() : (): Node => this.parseBinary(level + 1)
    let left = operand()
    const saved = this.depth
    for (;;) {
      const token = this.peek()
      if ((token.type !== 'punct' && token.type !== 'name') || !operators.has(token.text)) break
      this.position++
      this.enter()
      const right = operand()
      left = { kind: 'binary', op: token.text as BinaryOperator, left, right, at: token.start }
    }
    this.depth = saved
    return left
  }

  private parseUnary(): Node {
    const token = this.peek()
    if (token.type === 'punct' && (token.text === '-' || token.text === '!')) {
      this.position++
      const saved = this.enter()
      const operand = this.parseUnary()
      this.depth = saved
      return { kind: 'unary', op: token.text, operand, at: token.start }
    }
    return this.parsePostfix()
  }

  private parsePostfix(): Node {
    let node = this.parsePrimary()
    const saved = this.depth
    for (;;) {
      if (this.accept('.') !== undefined) {
        const name = this.peek()
        if (name.type !== 'name') this.fail(name, `expected a field or method name after '.', found ${describe(name)}`)
        this.position++
        if (this.accept('(') !== undefined) {
          node = { kind: 'method', object: node, name: name.text, args: this.parseArguments(), at: name.start }
        } else {
          node = { kind: 'member', object: node, name: name.text, at: name.start }
        }
      } else {
        const bracket = this.accept('[')
        if (bracket === undefined) break
        const index = this.parseExpression()
        this.expect(']', 'to close the index')
        node = { kind: 'index', object: node, index, at: bracket.start }
      }
      this.enter()
    }
    this.depth = saved
    return node
  }

  private parsePrimary(): Node {
    const token = this.peek()
    switch (token.type) {
      case 'number':
      case 'string':
        this.position++
        return { kind: 'literal', value: token.value as number | string, at: token.start }
      case 'name': {
        this.position++
        const literal = LITERAL_NAMES.get(token.text)
        if (literal !== undefined) return { kind: 'literal', value: literal, at: token.start }
        if (token.text === 'in')
          this.fail(token, "unexpected 'in'", "'in' needs a value on its left, as in 'x in list'")
        if (this.accept('(') !== undefined)
          return { kind: 'call', name: token.text, args: this.parseArguments(), at: token.start }
        return { kind: 'name', name: token.text, at: token.start }
      }
      case 'punct':
        if (token.text === '(') {
          this.position++
          const node = this.parseExpression()
          this.expect(')', "to close '('")
          return node
        }
        if (token.text === '[') return this.parseList(token)
        if (token.text === '{') return this.parseMap(token)
        break
      case 'end':
        break
    }
    return this.fail(
      token,
      `unexpected ${describe(token)}`,
      'expected a value: a number, string, name, list, map or (expression)',
    )
  }

  private parseArguments(): Node[] {
    const args: Node[] = []
    if (this.accept(')') !== undefined) return args
    for (;;) {
      args.push(this.parseExpression())
      if (this.accept(')') !== undefined) return args
      this.expect(',', "between arguments, or ')' to end them")
    }
  }

  private parseList(open: Token): Node {
    this.position++
    const items: Node[] = []
    while (this.accept(']') === undefined) {
      items.push(this.parseExpression())
      if (this.accept(']') !== undefined) break
      this.expect(',', "between list items, or ']' to end the list")
    }
    return { kind: 'list', items, at: open.start }
  }

  private parseMap(open: Token): Node {
    this.position++
    const entries: MapEntry[] = []
    const seen = new Set<string>()
    while (this.accept('}') === undefined) {
      const key = this.peek()
      if (key.type !== 'name' && key.type !== 'string') {
        this.fail(key, `unexpected ${describe(key)}`, 'a map key is a name or a string literal')
      }
      this.position++
      const name = key.type === 'string' ? (key.value as string) : key.text
      if (seen.has(name)) this.fail(key, `duplicate map key ${JSON.stringify(name)}`)
      seen.add(name)
      this.expect(':', 'after the map key')
      entries.push({ key: name, keyAt: key.start, value: this.parseExpression() })
      if (this.accept('}') !== undefined) break
      this.expect(',', "between map entries, or '}' to end the map")
    }
    return { kind: 'map', entries, at: open.start }
  }

  private accept(punct: string): Token | undefined {
    const token = this.peek()
    if (token.type !== 'punct' || token.text !== punct) return undefined
    this.position++
    return token
  }

  private expect(punct: string, why: string): Token {
    const token = this.accept(punct)
    if (token !== undefined) return token
    const found = this.peek()
    return this.fail(found, `expected '${punct}' ${why}, found ${describe(found)}`)
  }

  /** Counts one level of nesting; returns the depth to restore when the level is done. */
  private enter(): number {
    const saved = this.depth
    if (++this.depth > MAX_DEPTH) this.fail(this.peek(), `expression nests more than ${MAX_DEPTH} levels deep`)
    return saved
  }
}

function describe(token: Token): string {
  switch (token.type) {
    case 'end':
      return 'end of expression'
    case 'number':
      return `number ${token.text}`
    case 'string':
      return `string ${token.text}`
    case 'name':
      return `'${token.text}'`
    case 'punct':
      return `'${token.text}'`
  }
}

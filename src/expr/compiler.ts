/**
 * Turns a syntax tree into nested closures, once, when the config is loaded. Names are
 * resolved, functions and methods looked up and their argument counts checked here, and
 * every part that does not depend on the request is folded, so that evaluation does only
 * what the request data requires.
 */
import type { Node } from './ast.ts'
import { startOf } from './ast.ts'
import type { Chain, Code, Fn } from './code.ts'
import { constantCode, isPure } from './code.ts'
import { ExpressionEvalError, ExpressionSyntaxError } from './errors.ts'
import { FUNCTIONS } from './functions.ts'
import { tokenize } from './lexer.ts'
import type { MacroName } from './macros.ts'
import { MACROS, macroFn } from './macros.ts'
import { METHODS } from './methods.ts'
import {
  add,
  divide,
  greater,
  greaterOrEqual,
  isIn,
  less,
  lessOrEqual,
  multiply,
  negate,
  remainder,
  subtract,
} from './operators.ts'
import { parse } from './parser.ts'
import { pathFn, slotPathFn } from './paths.ts'
import { suggestion } from './suggest.ts'
import type { CompileOptions, CompiledExpression, EvalContext, Evaluator, Reference } from './types.ts'
import { FORBIDDEN_NAMES, deepEqual, hasEntry, index, isPrimitive, setEntry } from './values.ts'

const FUNCTION_NAMES = [...FUNCTIONS.keys()]
const METHOD_NAMES = [...METHODS.keys(), ...MACROS.keys()]
/** Folding runs pure code, which never looks at the context. */
const FOLD_CONTEXT: EvalContext = Object.freeze({})

export function compileExpression(source: string, options: CompileOptions): CompiledExpression {
  const compiler = new Compiler(options)
  const code = compiler.compile(parse(tokenize(source, 0, false).tokens))
  const references = compiler.references
  return { evaluate: compiler.finish(code), references, source, isConstant: references.length === 0 }
}

export class Compiler {
  readonly references: Reference[] = []
  private readonly options: CompileOptions
  private readonly roots = new Map<string, Fn>()
  /** Macro variables in scope, innermost last. */
  private readonly scope: { name: string; slot: number }[] = []
  private slotCount = 0

  constructor(options: CompileOptions) {
    this.options = options
  }

  /** The evaluator for a compiled node; call after every part sharing this compiler is compiled. */
  finish(code: Code): Evaluator {
    if (code.constant !== undefined) {
      const value = code.constant.value
      return () => value
    }
    const fn = code.fn
    // Safe: without macros no closure reads the slots.
    if (this.slotCount === 0) return fn as Evaluator
    const slotCount = this.slotCount
    return (ctx) => fn(ctx, new Array<unknown>(slotCount))
  }

  /** Runs pure code now. A pure part that throws would throw on every request: a config error. */
  evaluateNow(code: Code): unknown {
    if (code.constant !== undefined) return code.constant.value
    try {
      return code.fn(FOLD_CONTEXT, [])
    } catch (error) {
      if (error instanceof ExpressionEvalError) {
        throw new ExpressionSyntaxError(
          error.message,
          error.offset,
          'this part does not depend on the request, so it would fail every time',
        )
      }
      throw error
    }
  }

  compile(node: Node): Code {
    switch (node.kind) {
      case 'literal':
        return constantCode(node.value)
      case 'name':
        return this.compileName(node.name, node.at)
      case 'member':
        return this.compileMember(node.object, node.name, node.at)
      case 'index':
        return this.compileIndex(node.object, node.index, node.at)
      case 'call':
        return this.compileCall(node.name, node.args, node.at)
      case 'method':
        return this.compileMethod(node.object, node.name, node.args, node.at)
      case 'unary':
        return this.compileUnary(node.op, this.compile(node.operand), node.at)
      case 'binary':
        return this.compileBinary(node.op, this.compile(node.left), this.compile(node.right), node.at)
      case 'conditional':
        return this.compileConditional(node)
      case 'list':
        return this.compileList(node.items)
      case 'map':
        return this.compileMap(node.entries)
    }
  }

  /** A node built from `children`: folded now when none of them depends on the request. */
  private derive(fn: Fn, ...children: Code[]): Code {
    let usesRoot = false
    let freeSlot = Infinity
    for (const child of children) {
      usesRoot ||= child.usesRoot
      if (child.freeSlot < freeSlot) freeSlot = child.freeSlot
    }
    const code: Code = { fn, usesRoot, freeSlot }
    return isPure(code) ? this.fold(code) : code
  }

  /** Primitives become constants; a pure list or map stays a builder so each evaluation gets its own copy. */
  private fold(code: Code): Code {
    const value = this.evaluateNow(code)
    return isPrimitive(value) ? constantCode(value) : code
  }

  private compileName(name: string, at: number): Code {
    for (let i = this.scope.length - 1; i >= 0; i--) {
      const local = this.scope[i] as { name: string; slot: number }
      if (local.name === name) {
        const slot = local.slot
        const fn = slotPathFn(slot, [])
        return { fn, usesRoot: false, freeSlot: slot, chain: { base: fn, slot, names: [] } }
      }
    }
    if (FORBIDDEN_NAMES.has(name)) throw new ExpressionSyntaxError(`'${name}' cannot be used in an expression`, at)
    let root = this.roots.get(name)
    if (root === undefined) {
      const accessor = this.options.resolveRoot(name)
      if (accessor === undefined) throw this.unknownName(name, at)
      root = accessor
      this.roots.set(name, root)
    }
    const reference: Reference = { root: name, path: [], offset: at }
    this.references.push(reference)
    return { fn: root, usesRoot: true, freeSlot: Infinity, chain: { base: root, slot: -1, names: [] }, reference }
  }

  private unknownName(name: string, at: number): ExpressionSyntaxError {
    if (FUNCTIONS.has(name))
      return new ExpressionSyntaxError(`unknown name '${name}'`, at, `${name} is a function: write ${name}(…)`)
    return new ExpressionSyntaxError(
      `unknown name '${name}'`,
      at,
      suggestion(name, this.options.knownRoots ?? [], 'names'),
    )
  }

  private compileMember(objectNode: Node, name: string, at: number): Code {
    if (FORBIDDEN_NAMES.has(name)) throw new ExpressionSyntaxError(`'${name}' cannot be used in an expression`, at)
    const object = this.compile(objectNode)
    return this.extendChain(object, name)
  }

  /** `object.name`: a longer static chain when object is one, so the read stays a single closure. */
  private extendChain(object: Code, name: string): Code {
    const chain = object.chain
    let code: Code
    if (chain === undefined) {
      // A chain may also start on a computed value, e.g. items[0].price.amount.
      code = this.derive(pathFn(object.fn, [name]), object)
      if (isPure(code)) return code
      code = { ...code, chain: { base: object.fn, slot: -1, names: [name] } }
    } else {
      const longer: Chain = { base: chain.base, slot: chain.slot, names: [...chain.names, name] }
      const fn = longer.slot >= 0 ? slotPathFn(longer.slot, longer.names) : pathFn(longer.base, longer.names)
      code = { fn, usesRoot: object.usesRoot, freeSlot: object.freeSlot, chain: longer }
    }
    if (object.reference === undefined) return code
    object.reference.path.push(name)
    return { ...code, reference: object.reference }
  }

  private compileIndex(objectNode: Node, indexNode: Node, at: number): Code {
    const object = this.compile(objectNode)
    const key = this.compile(indexNode)
    const get = object.fn
    if (key.constant !== undefined) {
      const value = key.constant.value
      const code = this.derive((ctx, slots) => index(get(ctx, slots), value, at), object)
      // A constant string key names a field as surely as `.name` does, e.g. headers["x-user-id"].
      if (typeof value !== 'string' || FORBIDDEN_NAMES.has(value) || object.reference === undefined) return code
      object.reference.path.push(value)
      return { ...code, reference: object.reference }
    }
    const getKey = key.fn
    return this.derive((ctx, slots) => index(get(ctx, slots), getKey(ctx, slots), at), object, key)
  }

  private compileCall(name: string, args: readonly Node[], at: number): Code {
    const builtin = FUNCTIONS.get(name)
    if (builtin === undefined) {
      const hint =
        METHODS.has(name) || MACROS.has(name)
          ? `${name} is a method: write x.${name}(…)`
          : suggestion(name, FUNCTION_NAMES, 'functions')
      throw new ExpressionSyntaxError(`unknown function '${name}'`, at, hint)
    }
    checkArity(`${name}()`, builtin, args.length, at)
    if (name === 'has') return this.compileHas(args[0] as Node)
    const codes = args.map((arg) => this.compile(arg))
    const call = builtin.call
    const fns = codes.map((code) => code.fn)
    const [a, b] = fns as [Fn, Fn]
    let fn: Fn
    switch (fns.length) {
      case 1:
        fn = (ctx, slots) => call(at, a(ctx, slots))
        break
      case 2:
        fn = (ctx, slots) => call(at, a(ctx, slots), b(ctx, slots))
        break
      default:
        fn = (ctx, slots) => call(at, ...fns.map((f) => f(ctx, slots)))
    }
    return this.derive(fn, ...codes)
  }

  /** has(a.b.c): whether the last field exists and is not undefined; never throws on missing data. */
  private compileHas(arg: Node): Code {
    if (arg.kind === 'member') {
      if (FORBIDDEN_NAMES.has(arg.name))
        throw new ExpressionSyntaxError(`'${arg.name}' cannot be used in an expression`, arg.at)
      const object = this.compile(arg.object)
      object.reference?.path.push(arg.name)
      const get = object.fn
      const name = arg.name
      return this.derive((ctx, slots) => hasEntry(get(ctx, slots), name), object)
    }
    if (arg.kind === 'index') {
      const object = this.compile(arg.object)
      const key = this.compile(arg.index)
      const value = key.constant?.value
      if (typeof value === 'string' && !FORBIDDEN_NAMES.has(value)) object.reference?.path.push(value)
      const get = object.fn
      const getKey = key.fn
      return this.derive((ctx, slots) => hasEntry(get(ctx, slots), getKey(ctx, slots)), object, key)
    }
    throw new ExpressionSyntaxError('has() needs a field, as in has(request.body.coupon)', startOf(arg))
  }

  private compileMethod(objectNode: Node, name: string, args: readonly Node[], at: number): Code {
    const macro = MACROS.get(name)
    if (macro !== undefined) {
      checkArity(`${name}()`, macro, args.length, at)
      return this.compileMacro(name as MacroName, objectNode, args, at)
    }
    const method = METHODS.get(name)
    if (method === undefined) {
      const hint = FUNCTIONS.has(name)
        ? `${name} is a function: write ${name}(x)`
        : suggestion(name, METHOD_NAMES, 'methods')
      throw new ExpressionSyntaxError(`unknown method '${name}'`, at, hint)
    }
    checkArity(`${name}()`, method, args.length, at)
    const receiver = this.compile(objectNode)
    const codes = args.map((arg) => this.compile(arg))
    const get = receiver.fn
    const call = method.call
    const [a, b] = codes.map((code) => code.fn) as [Fn, Fn]
    // A method on null or undefined gives undefined, like a field of it would.
    let fn: Fn
    switch (codes.length) {
      case 0:
        fn = (ctx, slots) => {
          const value = get(ctx, slots)
          return value === null || value === undefined ? undefined : call(at, value)
        }
        break
      case 1:
        fn = (ctx, slots) => {
          const value = get(ctx, slots)
          return value === null || value === undefined ? undefined : call(at, value, a(ctx, slots))
        }
        break
      default:
        fn = (ctx, slots) => {
          const value = get(ctx, slots)
          return value === null || value === undefined ? undefined : call(at, value, a(ctx, slots), b(ctx, slots))
        }
    }
    return this.derive(fn, receiver, ...codes)
  }

  private compileMacro(name: MacroName, listNode: Node, args: readonly Node[], at: number): Code {
    const variable = args[0] as Node
    if (variable.kind !== 'name') {
      throw new ExpressionSyntaxError(
        `the first argument of ${name}() is a variable name, as in items.${name}(x, …)`,
        startOf(variable),
      )
    }
    if (FORBIDDEN_NAMES.has(variable.name))
      throw new ExpressionSyntaxError(`'${variable.name}' cannot be used in an expression`, variable.at)
    const list = this.compile(listNode)
    const slot = this.slotCount++
    this.scope.push({ name: variable.name, slot })
    const bodies = args.slice(1).map((arg) => this.compile(arg))
    this.scope.pop()
    // The bodies' reads of this macro's own variable are bound here; only outer variables stay free.
    let freeSlot = list.freeSlot
    let usesRoot = list.usesRoot
    for (const body of bodies) {
      usesRoot ||= body.usesRoot
      if (body.freeSlot < slot && body.freeSlot < freeSlot) freeSlot = body.freeSlot
    }
    const code: Code = {
      fn: macroFn(
        name,
        list.fn,
        slot,
        bodies.map((body) => body.fn),
        at,
      ),
      usesRoot,
      freeSlot,
    }
    return isPure(code) ? this.fold(code) : code
  }

  private compileUnary(op: '-' | '!', operand: Code, at: number): Code {
    const get = operand.fn
    if (op === '!') return this.derive((ctx, slots) => !get(ctx, slots), operand)
    return this.derive((ctx, slots) => negate(get(ctx, slots), at), operand)
  }

  private toBoolean(operand: Code): Code {
    const get = operand.fn
    return this.derive((ctx, slots) => !!get(ctx, slots), operand)
  }

  private compileBinary(op: Extract<Node, { kind: 'binary' }>['op'], left: Code, right: Code, at: number): Code {
    const l = left.fn
    const r = right.fn
    switch (op) {
      // Short-circuit operators: a constant left side decides at compile time.
      case '&&':
        if (left.constant !== undefined) return left.constant.value ? this.toBoolean(right) : constantCode(false)
        return this.derive((ctx, slots) => (l(ctx, slots) ? !!r(ctx, slots) : false), left, right)
      case '||':
        if (left.constant !== undefined) return left.constant.value ? constantCode(true) : this.toBoolean(right)
        return this.derive((ctx, slots) => (l(ctx, slots) ? true : !!r(ctx, slots)), left, right)
      case '??':
        if (left.constant !== undefined)
          return left.constant.value === null || left.constant.value === undefined ? right : left
        return this.derive((ctx, slots) => l(ctx, slots) ?? r(ctx, slots), left, right)
      case '==':
        return this.derive((ctx, slots) => deepEqual(l(ctx, slots), r(ctx, slots)), left, right)
      case '!=':
        return this.derive((ctx, slots) => !deepEqual(l(ctx, slots), r(ctx, slots)), left, right)
      case '<':
        return this.derive((ctx, slots) => less(l(ctx, slots), r(ctx, slots), at), left, right)
      case '<=':
        return this.derive((ctx, slots) => lessOrEqual(l(ctx, slots), r(ctx, slots), at), left, right)
      case '>':
        return this.derive((ctx, slots) => greater(l(ctx, slots), r(ctx, slots), at), left, right)
      case '>=':
        return this.derive((ctx, slots) => greaterOrEqual(l(ctx, slots), r(ctx, slots), at), left, right)
      case 'in':
        return this.derive((ctx, slots) => isIn(l(ctx, slots), r(ctx, slots), at), left, right)
      case '+':
        return this.derive((ctx, slots) => add(l(ctx, slots), r(ctx, slots), at), left, right)
      case '-':
        return this.derive((ctx, slots) => subtract(l(ctx, slots), r(ctx, slots), at), left, right)
      case '*':
        return this.derive((ctx, slots) => multiply(l(ctx, slots), r(ctx, slots), at), left, right)
      case '/':
        return this.derive((ctx, slots) => divide(l(ctx, slots), r(ctx, slots), at), left, right)
      case '%':
        return this.derive((ctx, slots) => remainder(l(ctx, slots), r(ctx, slots), at), left, right)
    }
  }

  private compileConditional(node: Extract<Node, { kind: 'conditional' }>): Code {
    const test = this.compile(node.test)
    const consequent = this.compile(node.consequent)
    const alternate = this.compile(node.alternate)
    if (test.constant !== undefined) return test.constant.value ? consequent : alternate
    const t = test.fn
    const a = consequent.fn
    const b = alternate.fn
    return this.derive((ctx, slots) => (t(ctx, slots) ? a(ctx, slots) : b(ctx, slots)), test, consequent, alternate)
  }

  private compileList(items: readonly Node[]): Code {
    const codes = items.map((item) => this.compile(item))
    const fns = codes.map((code) => code.fn)
    const [a, b, c] = fns as [Fn, Fn, Fn]
    let fn: Fn
    switch (fns.length) {
      case 0:
        fn = () => []
        break
      case 1:
        fn = (ctx, slots) => [a(ctx, slots)]
        break
      case 2:
        fn = (ctx, slots) => [a(ctx, slots), b(ctx, slots)]
        break
      case 3:
        fn = (ctx, slots) => [a(ctx, slots), b(ctx, slots), c(ctx, slots)]
        break
      default:
        fn = (ctx, slots) => fns.map((f) => f(ctx, slots))
    }
    return this.derive(fn, ...codes)
  }

  private compileMap(entries: Extract<Node, { kind: 'map' }>['entries']): Code {
    const keys = entries.map((entry) => entry.key)
    const codes = entries.map((entry) => this.compile(entry.value))
    const fns = codes.map((code) => code.fn)
    const fn: Fn = keys.includes('__proto__')
      ? (ctx, slots) => {
          const map: Record<string, unknown> = {}
          for (let i = 0; i < fns.length; i++) setEntry(map, keys[i] as string, (fns[i] as Fn)(ctx, slots))
          return map
        }
      : (literalMap(keys, fns) ??
        ((ctx, slots) => {
          const map: Record<string, unknown> = {}
          for (let i = 0; i < fns.length; i++) map[keys[i] as string] = (fns[i] as Fn)(ctx, slots)
          return map
        }))
    return this.derive(fn, ...codes)
  }
}

/** Maps with more keys than this are built key by key (an object literal's shape is worth it for the usual few). */
const LITERAL_KEYS = 64

/**
 * A map's builder written as a JavaScript object literal, keys in: every map it builds has its
 * shape from the start, which V8 makes about 4× faster than adding the keys one by one (and
 * JSON.stringify reads it faster). The keys go in as JSON string literals and the values are
 * the compiled closures, so no text of the config runs as code. null (build key by key) for a
 * long map, or where code generation is disallowed (--disallow-code-generation-from-strings).
 */
function literalMap(keys: readonly string[], fns: readonly Fn[]): Fn | null {
  if (keys.length === 0 || keys.length > LITERAL_KEYS) return null
  const entries = keys.map((key, i) => `${JSON.stringify(key)}: fns[${i}](ctx, slots)`).join(', ')
  try {
    const make = new Function('fns', `'use strict'; return (ctx, slots) => ({ ${entries} })`) as (
      fns: readonly Fn[],
    ) => Fn
    return make(fns)
  } catch {
    return null
  }
}

function checkArity(
  name: string,
  def: { readonly minArgs: number; readonly maxArgs: number },
  count: number,
  at: number,
): void {
  if (count >= def.minArgs && count <= def.maxArgs) return
  const expected =
    def.minArgs === def.maxArgs
      ? `${def.minArgs} argument${def.minArgs === 1 ? '' : 's'}`
      : def.maxArgs === Infinity
        ? `at least ${def.minArgs} argument${def.minArgs === 1 ? '' : 's'}`
        : `${def.minArgs} to ${def.maxArgs} arguments`
  throw new ExpressionSyntaxError(`${name} takes ${expected}, got ${count}`, at)
}

/**
 * Templates: strings with `${expr}` parts, e.g. "/carts/${request.body.cartId}".
 * `$${` is a literal `${`. A template that is exactly one `${…}` keeps the value's type
 * (number, list, map…) unless `encode` is given: an encoded template always gives a string,
 * otherwise encoding would be skipped for the one case that needs it most, a path made of a
 * single value.
 */
import type { Code } from './code.ts'
import { isPure } from './code.ts'
import { Compiler } from './compiler.ts'
import { ExpressionSyntaxError } from './errors.ts'
import { tokenize } from './lexer.ts'
import { parse } from './parser.ts'
import type { CompiledExpression, Evaluator, TemplateOptions, TemplatePart } from './types.ts'
import { toText } from './values.ts'

export function compileTemplate(source: string, options: TemplateOptions): CompiledExpression {
  const compiler = new Compiler(options)
  /** Literal text around the parts: always one more than parts. */
  const texts: string[] = []
  const parts: { code: Code; at: number; part: TemplatePart }[] = []
  let text = ''
  let i = 0
  for (;;) {
    const open = source.indexOf('${', i)
    if (open < 0) {
      text += source.slice(i)
      break
    }
    if (open > i && source.charCodeAt(open - 1) === 36) {
      text += source.slice(i, open - 1) + '${'
      i = open + 2
      continue
    }
    text += source.slice(i, open)
    const scan = tokenize(source, open + 2, true)
    if (scan.end < 0) throw new ExpressionSyntaxError("unterminated '${': no matching '}'", open)
    if (scan.tokens.length === 1) throw new ExpressionSyntaxError("empty '${}'", open)
    const before = compiler.references.length
    const code = compiler.compile(parse(scan.tokens))
    const roots = [...new Set(compiler.references.slice(before).map((r) => r.root))]
    parts.push({ code, at: open, part: { source: source.slice(open + 2, scan.end).trim(), roots } })
    texts.push(text)
    text = ''
    i = scan.end + 1
  }
  texts.push(text)

  const references = compiler.references
  const result = (evaluate: Evaluator): CompiledExpression => ({
    evaluate,
    references,
    source,
    isConstant: references.length === 0,
  })
  const encode = options.encode

  const single = parts[0]
  if (parts.length === 1 && single !== undefined && texts[0] === '' && texts[1] === '' && encode === undefined) {
    return result(compiler.finish(single.code))
  }

  // Fold the parts that do not depend on the request into the text around them.
  const pieces: Evaluator[] = []
  const described: TemplatePart[] = []
  const between: string[] = [texts[0] as string]
  parts.forEach((part, k) => {
    const after = texts[k + 1] as string
    if (isPure(part.code)) {
      const value = toText(compiler.evaluateNow(part.code))
      between[between.length - 1] += (encode === undefined ? value : encode(value, part.part)) + after
      return
    }
    pieces.push(compiler.finish(part.code))
    described.push(part.part)
    between.push(after)
  })
  return result(
    encode === undefined ? concatenate(between, pieces) : concatenateEncoded(between, pieces, described, encode),
  )
}

/** between[0] + text(pieces[0]) + between[1] + … ; the common shapes written out. */
function concatenate(between: readonly string[], pieces: readonly Evaluator[]): Evaluator {
  const [t0, t1, t2] = between as [string, string, string]
  const [p0, p1] = pieces as [Evaluator, Evaluator]
  switch (pieces.length) {
    case 0:
      return () => t0
    case 1:
      return (ctx) => t0 + toText(p0(ctx)) + t1
    case 2:
      return (ctx) => t0 + toText(p0(ctx)) + t1 + toText(p1(ctx)) + t2
    default:
      return (ctx) => {
        let out = t0
        for (let k = 0; k < pieces.length; k++)
          out += toText((pieces[k] as Evaluator)(ctx)) + (between[k + 1] as string)
        return out
      }
  }
}

/** The same with each value encoded: kept apart so the plain case pays no check per part. */
function concatenateEncoded(
  between: readonly string[],
  pieces: readonly Evaluator[],
  parts: readonly TemplatePart[],
  encode: (value: string, part: TemplatePart) => string,
): Evaluator {
  const [t0, t1, t2] = between as [string, string, string]
  const [p0, p1] = pieces as [Evaluator, Evaluator]
  const [d0, d1] = parts as [TemplatePart, TemplatePart]
  switch (pieces.length) {
    case 0:
      return () => t0
    case 1:
      return (ctx) => t0 + encode(toText(p0(ctx)), d0) + t1
    case 2:
      return (ctx) => t0 + encode(toText(p0(ctx)), d0) + t1 + encode(toText(p1(ctx)), d1) + t2
    default:
      return (ctx) => {
        let out = t0
        for (let k = 0; k < pieces.length; k++)
          out += encode(toText((pieces[k] as Evaluator)(ctx)), parts[k] as TemplatePart) + (between[k + 1] as string)
        return out
      }
  }
}

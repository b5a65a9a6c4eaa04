/**
 * A mistake found when the config is loaded: bad syntax, an unknown name, function or
 * method, or a constant part that can only fail. `offset` is an index into the string the
 * caller passed in (for a template, the whole template), so the caller can turn it into the
 * line and column of the user's file.
 */
export class ExpressionSyntaxError extends Error {
  readonly offset: number
  readonly hint?: string

  constructor(message: string, offset: number, hint?: string) {
    super(message)
    this.name = 'ExpressionSyntaxError'
    this.offset = offset
    if (hint !== undefined) this.hint = hint
  }
}

/**
 * A failure while evaluating against request data: a type mismatch, a division by zero,
 * a number that cannot be parsed. `offset` points at the operator, function or method that
 * failed, in the same coordinates as ExpressionSyntaxError.
 */
export class ExpressionEvalError extends Error {
  readonly offset: number

  constructor(message: string, offset: number) {
    super(message)
    this.name = 'ExpressionEvalError'
    this.offset = offset
  }
}

/**
 * A value interpolated into a URL path is null, missing or empty: the path would have an empty
 * segment (`/carts/` instead of `/carts/42`), which reaches another resource. `part` names it.
 */
export class EmptyPathValueError extends ExpressionEvalError {
  readonly part: { readonly source: string; readonly roots: readonly string[] }

  constructor(part: { readonly source: string; readonly roots: readonly string[] }) {
    super(`${part.source} is missing or empty`, 0)
    this.name = 'EmptyPathValueError'
    this.part = part
  }
}

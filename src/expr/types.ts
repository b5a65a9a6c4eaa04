/** The per-request object the caller owns; only the caller's root accessors look inside it. */
export type EvalContext = object

export type Evaluator = (ctx: EvalContext) => unknown

/**
 * A root identifier and the member chain written statically after it, e.g.
 * `calls.cart.status` → { root: 'calls', path: ['cart', 'status'] }. The chain stops at the
 * first dynamic or numeric index and at the first call. `offset` is where the root
 * identifier starts in the source the caller passed in.
 */
export interface Reference {
  root: string
  path: string[]
  offset: number
}

export interface CompileOptions {
  /**
   * Called once per compilation for every free root identifier (never for macro
   * variables). Returns an accessor, or undefined when the name is unknown.
   */
  resolveRoot(name: string): ((ctx: EvalContext) => unknown) | undefined
  /** Names offered in "did you mean" hints when a root is unknown. */
  knownRoots?: readonly string[]
}

export interface TemplateOptions extends CompileOptions {
  /** Applied to each interpolated value (never to the literal text), e.g. encodePathValue; `part` says which `${…}` it is. */
  encode?: (value: string, part: TemplatePart) => string
}

/** One `${…}` of a template. */
export interface TemplatePart {
  /** The expression as written, e.g. `request.body.cartId`. */
  readonly source: string
  /** The roots it reads (`request`, `cart`, …). */
  readonly roots: readonly string[]
}

export interface CompiledExpression {
  readonly evaluate: Evaluator
  readonly references: Reference[]
  readonly source: string
  /** True when the expression reads no root, so every evaluation gives the same value. */
  readonly isConstant: boolean
}

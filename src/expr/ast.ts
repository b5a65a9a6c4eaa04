/** Syntax tree of one expression. `at` is an offset into the caller's source string. */

export type BinaryOperator =
  '??' | '||' | '&&' | '==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | '+' | '-' | '*' | '/' | '%'

export type Node =
  | { readonly kind: 'literal'; readonly value: null | boolean | number | string; readonly at: number }
  /** A root identifier or a macro variable. */
  | { readonly kind: 'name'; readonly name: string; readonly at: number }
  /** `object.name`; `at` is the offset of the name. */
  | { readonly kind: 'member'; readonly object: Node; readonly name: string; readonly at: number }
  /** `object[index]`; `at` is the offset of '['. */
  | { readonly kind: 'index'; readonly object: Node; readonly index: Node; readonly at: number }
  /** `name(args)`; `at` is the offset of the name. */
  | { readonly kind: 'call'; readonly name: string; readonly args: readonly Node[]; readonly at: number }
  /** `object.name(args)`; `at` is the offset of the name. */
  | {
      readonly kind: 'method'
      readonly object: Node
      readonly name: string
      readonly args: readonly Node[]
      readonly at: number
    }
  | { readonly kind: 'unary'; readonly op: '-' | '!'; readonly operand: Node; readonly at: number }
  | {
      readonly kind: 'binary'
      readonly op: BinaryOperator
      readonly left: Node
      readonly right: Node
      readonly at: number
    }
  /** `test ? consequent : alternate`; `at` is the offset of '?'. */
  | {
      readonly kind: 'conditional'
      readonly test: Node
      readonly consequent: Node
      readonly alternate: Node
      readonly at: number
    }
  | { readonly kind: 'list'; readonly items: readonly Node[]; readonly at: number }
  | { readonly kind: 'map'; readonly entries: readonly MapEntry[]; readonly at: number }

export interface MapEntry {
  readonly key: string
  readonly keyAt: number
  readonly value: Node
}

/** Where the source text of a node begins (its `at` may point at an operator or a name inside it). */
export function startOf(node: Node): number {
  switch (node.kind) {
    case 'member':
    case 'index':
    case 'method':
      return Math.min(node.at, startOf(node.object))
    case 'binary':
      return startOf(node.left)
    case 'conditional':
      return startOf(node.test)
    default:
      return node.at
  }
}

/**
 * A config file's text and parse tree, kept so that every diagnostic, from the schema check
 * or from the compiler, can point at file:line:col.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml'
import type { Document, Node } from 'yaml'
import type { Diagnostic } from '../errors.ts'

export type ConfigPath = readonly (string | number)[]

export interface Position {
  line: number
  col: number
}

export class ConfigSource {
  readonly file: string
  readonly text: string
  readonly document: Document.Parsed
  readonly #lines: LineCounter

  constructor(file: string, text: string) {
    this.file = file
    this.text = text
    this.#lines = new LineCounter()
    // uniqueKeys: a duplicate route or call name is an error, not a silent overwrite.
    this.document = parseDocument(text, {
      lineCounter: this.#lines,
      uniqueKeys: true,
      prettyErrors: false,
      strict: true,
    })
  }

  /** Parse errors of the YAML/JSON text itself, as diagnostics. */
  syntaxDiagnostics(): Diagnostic[] {
    return this.document.errors.map((e) => {
      const pos = this.#lines.linePos(e.pos[0])
      const duplicate = e.code === 'DUPLICATE_KEY'
      return {
        severity: 'error',
        code: duplicate ? 'BATON_DUPLICATE_KEY' : 'BATON_SYNTAX',
        message: e.message.split('\n')[0] ?? e.message,
        path: [],
        ...(duplicate ? { hint: 'each route, service and call name may appear only once' } : {}),
        ...(e.code === 'BAD_ALIAS' || /^Alias/.test(e.message)
          ? { hint: "a value starting with * is a YAML alias; quote it: '*'" }
          : {}),
        file: this.file,
        line: pos.line,
        col: pos.col,
      }
    })
  }

  toJS(): unknown {
    return this.document.toJS({ maxAliasCount: 100 })
  }

  /** The node at `path` and its key's node, or the nearest ancestor's when the path goes further than the document. */
  #nodeAt(path: ConfigPath): { node: unknown; keyNode: unknown; whole: boolean } {
    let node: unknown = this.document.contents
    let keyNode: unknown
    for (const segment of path) {
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) === String(segment) : false))
        if (pair === undefined) return { node, keyNode, whole: false }
        keyNode = pair.key
        node = pair.value
      } else if (isSeq(node) && typeof segment === 'number') {
        keyNode = undefined
        node = node.items[segment]
      } else {
        return { node, keyNode, whole: false }
      }
    }
    return { node, keyNode, whole: true }
  }

  /** The scalar as written at `path` (a number stays a number: `ttl: 60`, not `ttl: 60s`), or undefined. */
  written(path: ConfigPath): unknown {
    const { node, whole } = this.#nodeAt(path)
    return whole && isScalar(node) ? node.value : undefined
  }

  /** Position of the value at `path` (or of its key, when `key` is set); falls back to the nearest ancestor. */
  locate(path: ConfigPath, options: { key?: boolean; offset?: number } = {}): Position {
    const { node, keyNode } = this.#nodeAt(path)
    const target = (options.key === true && keyNode !== undefined ? keyNode : (node ?? keyNode)) as Node | undefined
    const start = target?.range?.[0] ?? 0
    let offset = 0
    if (options.offset !== undefined && isScalar(target)) {
      const quoted = target.type === 'QUOTE_DOUBLE' || target.type === 'QUOTE_SINGLE'
      offset = options.offset + (quoted ? 1 : 0)
    }
    return this.#lines.linePos(start + offset)
  }

  diagnostic(
    d: Omit<Diagnostic, 'file' | 'line' | 'col'>,
    options: { key?: boolean; offset?: number } = {},
  ): Diagnostic {
    const pos = this.locate(d.path, options)
    return { ...d, file: this.file, line: pos.line, col: pos.col }
  }
}

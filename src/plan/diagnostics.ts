import type { ConfigCode, Diagnostic } from '../errors.ts'
import type { ConfigPath, ConfigSource } from '../config/source.ts'

interface Place {
  hint?: string | undefined
  key?: boolean
  offset?: number
}

/** Collects every problem found while compiling, each placed in the source file. */
export class Diagnostics {
  readonly list: Diagnostic[] = []
  readonly #source: ConfigSource

  constructor(source: ConfigSource) {
    this.#source = source
  }

  error(code: ConfigCode, message: string, path: ConfigPath, place: Place = {}): void {
    this.#add('error', code, message, path, place)
  }

  warn(code: ConfigCode, message: string, path: ConfigPath, place: Place = {}): void {
    this.#add('warning', code, message, path, place)
  }

  /** The scalar as the file writes it at `path` (see ConfigSource.written). */
  written(path: ConfigPath): unknown {
    return this.#source.written(path)
  }

  get failed(): boolean {
    return this.list.some((d) => d.severity === 'error')
  }

  #add(severity: Diagnostic['severity'], code: ConfigCode, message: string, path: ConfigPath, place: Place): void {
    const options: { key?: boolean; offset?: number } = {}
    if (place.key === true) options.key = true
    if (place.offset !== undefined) options.offset = place.offset
    this.list.push(
      this.#source.diagnostic(
        {
          severity,
          code,
          message,
          path,
          ...(place.hint === undefined ? {} : { hint: place.hint }),
        },
        options,
      ),
    )
  }
}

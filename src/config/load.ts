import { readFile } from 'node:fs/promises'
import type { Diagnostic } from '../errors.ts'
import type { Config } from './schema.ts'
import { ConfigSource } from './source.ts'
import { validate } from './validate.ts'

export interface LoadedConfig {
  source: ConfigSource
  /** The checked config; when the file has schema errors, what remains of it once they are dropped (for further checks only). */
  config?: Config
  /** True when the file passed the schema check. */
  valid: boolean
  diagnostics: Diagnostic[]
}

/** Parse and schema-check a config text. YAML and JSON both go through the YAML parser (JSON is YAML 1.2), so positions work the same. */
export function parseConfig(file: string, text: string): LoadedConfig {
  const source = new ConfigSource(file, text)
  const syntax = source.syntaxDiagnostics()
  if (syntax.length > 0) return { source, valid: false, diagnostics: syntax }
  const { config, valid, diagnostics } = validate(source, source.toJS())
  return config === undefined ? { source, valid, diagnostics } : { source, config, valid, diagnostics }
}

export async function loadConfig(file: string): Promise<LoadedConfig> {
  return parseConfig(file, await readFile(file, 'utf8'))
}

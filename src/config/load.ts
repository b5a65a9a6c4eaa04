import { readFile } from 'node:fs/promises'
import type { Diagnostic } from '../errors.ts'
import type { Config } from './schema.ts'
import { ConfigSource } from './source.ts'
import { validate } from './validate.ts'

export interface LoadedConfig {
  source: ConfigSource
  /** Present when the file passed the schema check (semantic checks happen when compiling). */
  config?: Config
  diagnostics: Diagnostic[]
}

/** Parse and schema-check a config text. YAML and JSON both go through the YAML parser (JSON is YAML 1.2), so positions work the same. */
export function parseConfig (file: string, text: string): LoadedConfig {
  const source = new ConfigSource(file, text)
  const syntax = source.syntaxDiagnostics()
  if (syntax.length > 0) return { source, diagnostics: syntax }
  const { config, diagnostics } = validate(source, source.toJS())
  return config === undefined ? { source, diagnostics } : { source, config, diagnostics }
}

export async function loadConfig (file: string): Promise<LoadedConfig> {
  return parseConfig(file, await readFile(file, 'utf8'))
}

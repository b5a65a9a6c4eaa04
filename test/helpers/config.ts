/** A config's diagnostics, whether or not it compiles, for the tests of `baton check`'s messages. */
import { parseConfig } from '../../src/config/load.ts'
import type { Diagnostic } from '../../src/errors.ts'
import { compileConfig, type CompileOptions } from '../../src/plan/compile.ts'

/** Every diagnostic of `text` compiled as `file` (the environment is empty unless given). */
export function diagnosticsOf(text: string, options: CompileOptions = {}, file = 'baton.yaml'): Diagnostic[] {
  return compileConfig(parseConfig(file, text), { env: {}, ...options }).diagnostics
}

/** The error diagnostics only; at least one, else the config compiled and the test is wrong. */
export function errorsOf(text: string, options: CompileOptions = {}): Diagnostic[] {
  const errors = diagnosticsOf(text, options).filter((d) => d.severity === 'error')
  if (errors.length === 0) throw new Error('expected the config not to compile, but it has no errors')
  return errors
}

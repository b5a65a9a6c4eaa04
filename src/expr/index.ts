/**
 * The `${…}` expression language of Baton configs: parsed and compiled into closures once,
 * when the config is loaded; evaluated on every request.
 */
export type {
  CompileOptions,
  CompiledExpression,
  EvalContext,
  Evaluator,
  Reference,
  TemplateOptions,
  TemplatePart,
} from './types.ts'
export { EmptyPathValueError, ExpressionEvalError, ExpressionSyntaxError } from './errors.ts'
export { compileExpression } from './compiler.ts'
export { compileTemplate } from './template.ts'
export { encodePathValue } from './encode.ts'

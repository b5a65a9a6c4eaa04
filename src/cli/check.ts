/** `baton check FILE`: every schema and semantic error at once, with file:line:col and a hint. */
import { styleText } from 'node:util'
import { loadConfig } from '../config/load.ts'
import { type Diagnostic, formatDiagnostic } from '../errors.ts'
import { compileConfig } from '../plan/compile.ts'
import type { GatewayPlan } from '../plan/types.ts'

export interface CheckResult {
  plan?: GatewayPlan
  diagnostics: Diagnostic[]
}

export async function check(file: string, mode: 'serve' | 'check' | 'dev', devSecret?: string): Promise<CheckResult> {
  return compileConfig(await loadConfig(file), { mode, ...(devSecret === undefined ? {} : { devSecret }) })
}

export function renderDiagnostics(diagnostics: readonly Diagnostic[], stream: NodeJS.WriteStream): string {
  return diagnostics
    .map((d) => {
      const text = formatDiagnostic(d)
      return d.severity === 'error'
        ? styleText('red', text, { stream, validateStream: true })
        : styleText('yellow', text, { stream, validateStream: true })
    })
    .join('\n')
}

/** The last line of `baton check`: what the config holds, or what is wrong with it (the warnings counted too). */
export function summary(file: string, result: CheckResult): string {
  const { errors, warnings } = counts(result)
  const warned = warnings > 0 ? `, ${plural(warnings, 'warning')}` : ''
  const plan = result.plan
  if (plan === undefined) return `${file}: ${plural(errors, 'error')}${warned}`
  const calls = plan.endpoints.reduce((n, e) => n + e.calls.length, 0)
  return `${file}: ok — ${plural(plan.services.length, 'service')}, ${plural(plan.endpoints.length, 'endpoint')}, ${plural(calls, 'call')}${warned}`
}

function counts(result: CheckResult): { errors: number; warnings: number } {
  const errors = result.diagnostics.filter((d) => d.severity === 'error').length
  return { errors, warnings: result.diagnostics.length - errors }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

/** How `baton check` and `baton plan` print: for people, for programs, for GitHub Actions annotations. */
export type Format = 'text' | 'json' | 'github'

/** `baton check --format json`: one object on stdout. */
export function checkJson(file: string, result: CheckResult): string {
  const plan = result.plan
  return JSON.stringify(
    {
      file,
      ok: plan !== undefined,
      ...counts(result),
      diagnostics: result.diagnostics.map((d) => ({
        severity: d.severity,
        code: d.code,
        message: d.message,
        path: d.path,
        file: d.file ?? file,
        line: d.line ?? null,
        col: d.col ?? null,
        hint: d.hint ?? null,
      })),
      ...(plan === undefined
        ? {}
        : {
            summary: {
              services: plan.services.length,
              endpoints: plan.endpoints.length,
              calls: plan.endpoints.reduce((n, e) => n + e.calls.length, 0),
            },
          }),
    },
    null,
    2,
  )
}

/** `baton check --format github`: a workflow command per diagnostic, which GitHub shows on the line. */
export function checkGithub(file: string, result: CheckResult): string {
  const escape = (text: string): string => text.replaceAll('%', '%25').replaceAll('\r', '%0D').replaceAll('\n', '%0A')
  const property = (text: string): string => escape(text).replaceAll(':', '%3A').replaceAll(',', '%2C')
  return result.diagnostics
    .map((d) => {
      const where = [`file=${property(d.file ?? file)}`]
      if (d.line !== undefined) where.push(`line=${d.line}`)
      if (d.col !== undefined) where.push(`col=${d.col}`)
      where.push(`title=${property(d.code)}`)
      const message = d.hint === undefined ? d.message : `${d.message}\n${d.hint}`
      return `::${d.severity === 'error' ? 'error' : 'warning'} ${where.join(',')}::${escape(message)}`
    })
    .join('\n')
}

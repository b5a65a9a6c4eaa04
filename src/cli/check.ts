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

export function summary(file: string, plan: GatewayPlan, warnings: number): string {
  const calls = plan.endpoints.reduce((n, e) => n + e.calls.length, 0)
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`
  return `${file}: ok — ${plural(plan.services.length, 'service')}, ${plural(plan.endpoints.length, 'endpoint')}, ${plural(calls, 'call')}${warnings > 0 ? `, ${plural(warnings, 'warning')}` : ''}`
}

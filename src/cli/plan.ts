/** `baton plan FILE`: each endpoint's call sequence, in the shape of the spec template's table. */
import { formatDuration } from '../config/units.ts'
import { worstCase } from '../plan/resilience.ts'
import type { CallPlan, EndpointPlan, GatewayPlan } from '../plan/types.ts'

export function renderPlan (plan: GatewayPlan): string {
  const out: string[] = [`# ${plan.name}${plan.owner === undefined ? '' : ` (${plan.owner})`}`, '']
  for (const endpoint of plan.endpoints) out.push(...renderEndpoint(endpoint), '')
  return out.join('\n')
}

function renderEndpoint (endpoint: EndpointPlan): string[] {
  const head = `## ${endpoint.method} ${endpoint.route.replace(/:(\w+)/g, '{$1}') || '/'}`
  const lines = [head]
  if (endpoint.purpose !== undefined) lines.push(endpoint.purpose)
  lines.push('', `Call sequence (total timeout: ${formatDuration(endpoint.timeout)}).`, '')
  if (endpoint.calls.length === 0) return [...lines, 'No downstream calls.']
  const byLevel = new Map<number, number>()
  for (const c of endpoint.calls) byLevel.set(c.level, (byLevel.get(c.level) ?? 0) + 1)
  const names = endpoint.calls.map((c) => c.name)
  const rows = [...endpoint.calls].sort((a, b) => a.level - b.level || a.index - b.index).map((c) => [
    `${c.level}${(byLevel.get(c.level) ?? 0) > 1 ? ' (parallel)' : ''}`,
    serviceCall(c),
    c.required ? 'Yes' : 'No',
    formatDuration(Math.min(c.timeout, endpoint.timeout)),
    retries(c),
    formatDuration(Math.min(worstCase(c.timeout, c.retry), endpoint.timeout)) + (worstCase(c.timeout, c.retry) > endpoint.timeout ? ' (deadline)' : ''),
    fallback(c),
    c.dependsOn.length === 0 ? '—' : c.dependsOn.map((d) => names[d]).join(', '),
  ])
  return [...lines, ...table(['Order', 'Service Call', 'Required?', 'Timeout', 'Retries', 'Worst case', 'Fallback', 'Starts after'], rows)]
}

function serviceCall (call: CallPlan): string {
  const words = call.config.request.trim().split(/\s+/)
  const who = call.name === call.service.name ? call.name : `${call.name} (${call.service.name})`
  const query = Object.entries(call.config.query ?? {}).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join('&')
  let text = `${who}: ${words[0] ?? ''} ${words.slice(2).join(' ')}${query === '' ? '' : `?${query}`}`
  if (call.forEach !== null) text += ` for each ${typeof call.config.forEach === 'string' ? call.config.forEach : 'item'} (≤${call.forEach.concurrency} at once, identical calls once)`
  if (call.config.when !== undefined) text += ` when ${String(call.config.when)}`
  return text
}

function retries (call: CallPlan): string {
  const r = call.retry
  if (r === null) return '—'
  return `${r.attempts} (${r.backoff} ${formatDuration(r.delay)})`
}

function fallback (call: CallPlan): string {
  if (call.required) return 'Fail request'
  if (call.config.fallback === undefined || call.config.fallback === null) return 'null'
  const text = JSON.stringify(call.config.fallback)
  return text.length > 40 ? `${text.slice(0, 37)}…` : text
}

function table (header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)]
}

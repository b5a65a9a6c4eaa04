/** `baton plan FILE`: each endpoint's call sequence, in the shape of the spec template's table. */
import { formatDuration } from '../config/units.ts'
import { callWorstCase } from '../plan/resilience.ts'
import type {
  AuthPlan,
  CallPlan,
  EndpointAuthPlan,
  EndpointPlan,
  GatewayPlan,
  Rate,
  RateLimitPlan,
  ServicePlan,
} from '../plan/types.ts'

export function renderPlan(plan: GatewayPlan): string {
  const out: string[] = [`# ${plan.name}${plan.owner === undefined ? '' : ` (${plan.owner})`}`, '']
  out.push(`Authentication: ${authentication(plan.edge.auth)}`, '')
  const canary = plan.canary
  if (canary !== null)
    out.push(
      `Canary: ${canary.config} serves ${(canary.weight * 100).toFixed(1)}% (${canary.sticky === null ? 'by chance' : 'sticky'}; header ${canary.header}), rolled back when its error rate is ${(canary.guard.errorRate * 100).toFixed(1)} points above this release's (${plan.release}) or its p99 ${(canary.guard.p99 * 100).toFixed(0)}% slower, over ${formatDuration(canary.guard.window)}.`,
      '',
    )
  titled = 'Downstream services'
  if (plan.services.length > 0) out.push('Downstream services.', '', ...renderServices(plan), '')
  titled = 'Rate limiting'
  if (plan.edge.rateLimit !== null) out.push(...renderLimits(plan.edge.rateLimit), '')
  titled = 'Caching strategy'
  out.push(...renderCaching(plan), '')
  for (const endpoint of plan.endpoints) {
    titled = `Call sequence: ${endpoint.label}`
    out.push(...renderEndpoint(endpoint, plan.edge.auth !== null), '')
  }
  return out.join('\n')
}

function authentication(auth: AuthPlan | null): string {
  if (auth === null) return 'none (every endpoint is open)'
  const ways: string[] = []
  const jwt = auth.jwt
  if (jwt !== null) {
    const key = jwt.jwksUrl !== null ? `keys from ${jwt.jwksUrl}` : jwt.secret !== null ? 'shared secret' : 'public key'
    const claims = [
      jwt.issuer === null ? null : `issuer ${jwt.issuer.join(' or ')}`,
      jwt.audience === null ? null : `audience ${jwt.audience.join(' or ')}`,
    ].filter((c) => c !== null)
    ways.push(`JWT (${[jwt.algorithms.join('/'), key, ...claims].join('; ')})`)
  }
  if (auth.apiKey !== null)
    ways.push(
      `API key (${auth.apiKey.header === null ? `query ${auth.apiKey.query ?? ''}` : `header ${auth.apiKey.header}`}; ${auth.apiKey.keys.length} key${auth.apiKey.keys.length === 1 ? '' : 's'})`,
    )
  return ways.join(' or ')
}

/** The template's Downstream Service Registry. */
function renderServices(plan: GatewayPlan): string[] {
  const rows = plan.services.map((s) => [
    s.name,
    s.origin + s.pathPrefix,
    serviceAuth(s),
    s.latency === undefined ? '—' : formatDuration(s.latency),
    s.sla ?? '—',
    s.owner ?? '—',
  ])
  return table(['Service', 'Base URL', 'Auth Method', 'Avg Latency', 'SLA', 'Owner'], rows)
}

function serviceAuth(service: ServicePlan): string {
  const ways: string[] = []
  if (service.oauth2 !== null) ways.push('OAuth2 client credentials')
  else if (service.credentialHeader === 'authorization') ways.push('Bearer token')
  else if (service.credentialHeader !== null) ways.push(`API key (${service.credentialHeader})`)
  if (service.forwardHeaders.includes('authorization')) ways.push("client's token")
  if (service.tls?.cert != null) ways.push('mTLS')
  return ways.length === 0 ? '—' : ways.join(' + ')
}

/** The template's Rate Limiting table. */
function renderLimits(rl: RateLimitPlan): string[] {
  const rows: string[][] = []
  if (rl.perUser !== null)
    rows.push(['Per-user', formatRate(rl.perUser), 'User ID from JWT (or API key name)', '429 + Retry-After'])
  if (rl.perIp !== null) rows.push(['Per-IP', formatRate(rl.perIp), 'Client IP', '429 + Retry-After'])
  if (rl.perEndpoint !== null)
    rows.push(['Per-endpoint', formatRate(rl.perEndpoint), 'Path + User', '429 + Retry-After'])
  if (rl.global !== null) rows.push(['Global', formatRate(rl.global), 'Entire gateway', '503'])
  const store =
    rl.store === 'redis'
      ? `Redis, shared by every instance; ${rl.onStoreError === 'allow' ? 'let through' : 'refused with 503'} when it is down`
      : 'in memory, per instance'
  return [
    `Rate limiting (counted ${store}).`,
    '',
    ...(rows.length === 0
      ? ["Only the endpoints' own limits."]
      : table(['Limit Type', 'Value', 'Scope', 'Response'], rows)),
  ]
}

/** The template's Caching Strategy table: every endpoint, cached or not. */
function renderCaching(plan: GatewayPlan): string[] {
  const rows = plan.endpoints.map((e) => {
    const cache = e.cache
    // Not a cache, but what a reader of this table wants to know: identical requests in flight share one run.
    if (cache === null) return [e.label, e.coalesce ? 'No cache (in flight: coalesced)' : 'No cache', 'N/A', 'N/A']
    const layer = {
      memory: 'Memory (per instance)',
      redis: 'Redis',
      tiered: 'Memory + Redis',
    }[cache.store]
    const cdn = cache.scope === 'public' ? ' / CDN' : ' (per user)'
    const ttl = [
      formatDuration(cache.ttl),
      cache.staleWhileRevalidate > 0 ? `+${formatDuration(cache.staleWhileRevalidate)} stale-while-revalidate` : null,
      cache.staleIfError > 0 ? `+${formatDuration(cache.staleIfError)} stale-if-error` : null,
    ]
      .filter((part) => part !== null)
      .join(', ')
    const tags = cache.tagSources.length === 0 ? 'path, endpoint' : cache.tagSources.join(', ')
    const how = cache.store === 'memory' ? 'webhook' : 'webhook, Redis event, baton invalidate'
    return [e.label, layer + cdn, ttl, `TTL; tags ${tags} (${how})`]
  })
  return ['Caching strategy.', '', ...table(['Endpoint', 'Cache Layer', 'TTL', 'Invalidation'], rows)]
}

export function formatRate(rate: Rate): string {
  const unit =
    rate.window === 1000
      ? 's'
      : rate.window === 60_000
        ? 'min'
        : rate.window === 3_600_000
          ? 'h'
          : rate.window === 86_400_000
            ? 'day'
            : formatDuration(rate.window)
  return `${rate.limit}/${unit}`
}

function renderEndpoint(endpoint: EndpointPlan, gatewayAuth: boolean): string[] {
  const head = `## ${endpoint.method} ${endpoint.route.replace(/:(\w+)/g, '{$1}') || '/'}`
  const lines = [head]
  if (endpoint.purpose !== undefined) lines.push(endpoint.purpose)
  if (gatewayAuth) lines.push('', `Credentials: ${endpointAuth(endpoint.auth)}.`)
  if (endpoint.rateLimit.exempt) lines.push('', 'No rate limits.')
  else if (endpoint.rateLimit.perEndpoint !== null)
    lines.push('', `Rate limit: ${formatRate(endpoint.rateLimit.perEndpoint)} per caller.`)
  lines.push('', `Call sequence (total timeout: ${formatDuration(endpoint.timeout)}).`, '')
  if (endpoint.calls.length === 0) return [...lines, 'No downstream calls.']
  const byLevel = new Map<number, number>()
  for (const c of endpoint.calls) byLevel.set(c.level, (byLevel.get(c.level) ?? 0) + 1)
  const names = endpoint.calls.map((c) => c.name)
  const rows = [...endpoint.calls]
    .sort((a, b) => a.level - b.level || a.index - b.index)
    .map((c) => [
      `${c.level}${(byLevel.get(c.level) ?? 0) > 1 ? ' (parallel)' : ''}`,
      c.cache === null
        ? c.display.request
        : `${c.display.request}, cache ${c.cache.honor ? 'honor' : formatDuration(c.cache.ttl)}`,
      c.required ? 'Yes' : 'No',
      formatDuration(Math.min(c.timeout, endpoint.timeout)),
      retries(c),
      worstCaseCell(c, endpoint.timeout),
      fallback(c),
      c.dependsOn.length === 0 ? '—' : c.dependsOn.map((d) => names[d]).join(', '),
    ])
  return [
    ...lines,
    ...table(
      ['Order', 'Service Call', 'Required?', 'Timeout', 'Retries', 'Worst case', 'Fallback', 'Starts after'],
      rows,
    ),
  ]
}

function endpointAuth(auth: EndpointAuthPlan | null): string {
  if (auth === null) return 'none (public)'
  const demands = [
    auth.scopes.length === 0 ? null : `scopes ${auth.scopes.join(', ')}`,
    auth.roles.length === 0 ? null : `one of the roles ${auth.roles.join(', ')}`,
  ].filter((d) => d !== null)
  const methods = auth.methods.map((m) => (m === 'jwt' ? 'JWT' : 'API key')).join(' or ')
  return demands.length === 0 ? methods : `${methods}, with ${demands.join(' and ')}`
}

function retries(call: CallPlan): string {
  const r = call.retry
  if (r === null) return '—'
  return `${r.attempts} (${r.backoff} ${formatDuration(r.delay)})`
}

function fallback(call: CallPlan): string {
  return call.required ? 'Fail request' : call.display.fallback
}

/** While planJson renders: every table, as rows of objects keyed by their column's header. */
let collected: { table: string; rows: Record<string, string>[] }[] | null = null
/** The title of the tables drawn next (planJson's keys). */
let titled = ''

/**
 * `baton plan --format json`: the same tables as the text, as data: `{ name, release,
 * authentication, canary, tables: [{ table, rows: [{ <column>: <cell> }] }] }`.
 */
export function planJson(plan: GatewayPlan): string {
  collected = []
  try {
    renderPlan(plan)
    return JSON.stringify(
      {
        name: plan.name,
        owner: plan.owner ?? null,
        release: plan.release,
        authentication: authentication(plan.edge.auth),
        canary:
          plan.canary === null
            ? null
            : { config: plan.canary.config, weight: plan.canary.weight, sticky: plan.canary.sticky !== null },
        tables: collected,
      },
      null,
      2,
    )
  } finally {
    collected = null
  }
}

function table(header: string[], rows: string[][]): string[] {
  collected?.push({
    table: titled,
    rows: rows.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i] ?? '']))),
  })
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)]
}

/** The worst case, capped by the deadline (which then says so); a forEach shows its formula. */
function worstCaseCell(call: CallPlan, deadline: number): string {
  const worst = callWorstCase(call.timeout, call.retry, call.forEach)
  const over = worst.ms > deadline ? ' (deadline)' : ''
  return call.forEach === null ? formatDuration(Math.min(worst.ms, deadline)) + over : worst.text + over
}

/**
 * The config's `canary` block, compiled: the candidate's file, its share of the traffic, the
 * sticky key (an expression over the request and the caller), the header that forces a version,
 * and the guard's margins. The candidate itself is compiled by whoever serves (it is a config
 * file of its own).
 */
import { resolve } from 'node:path'
import type { Config } from '../config/schema.ts'
import type { Diagnostics } from './diagnostics.ts'
import { percent } from './resilience.ts'
import type { RequestView } from './scope.ts'
import { compileString, type TemplateScope } from './templates.ts'
import type { CanaryPlan } from './types.ts'

/** The request's parts a sticky key may read. */
const STICKY_FIELDS = ['method', 'path', 'query', 'headers']

/** What a sticky key reads. */
export interface StickyScope {
  readonly request: RequestView
}

export function compileCanary(
  canary: NonNullable<Config['canary']>,
  baseDir: string,
  env: TemplateScope,
  diagnostics: Diagnostics,
): CanaryPlan {
  const at = ['canary']
  let sticky: CanaryPlan['sticky'] = null
  if (canary.sticky !== undefined) {
    const scope: TemplateScope = {
      knownRoots: ['request', 'auth', 'env'],
      resolveRoot: (name) => {
        if (name === 'request') return (s) => (s as StickyScope).request
        if (name === 'auth') return (s) => (s as StickyScope).request.auth
        return env.resolveRoot(name)
      },
      onReference: (ref, path, source) => {
        const field = ref.path[0]
        // What a sticky key can read before any endpoint is matched: no path parameters, nothing but the request's parts.
        if (ref.root === 'request' && field !== undefined && !STICKY_FIELDS.includes(field))
          diagnostics.error('BATON_UNKNOWN_FIELD', `a sticky key cannot read request.${field}`, path, {
            offset: ref.offset,
            hint: `it can read ${STICKY_FIELDS.map((f) => `request.${f}`).join(', ')} and auth`,
          })
        env.onReference(ref, path, source)
      },
    }
    sticky = compileString(canary.sticky, [...at, 'sticky'], scope, diagnostics, undefined)?.evaluate ?? null
  }
  return {
    config: resolve(baseDir, canary.config),
    weight: percent(canary.weight),
    sticky,
    header: canary.header.toLowerCase(),
    guard: {
      window: canary.guard.window,
      minRequests: canary.guard.minRequests,
      errorRate: percent(canary.guard.errorRate),
      p99: percent(canary.guard.p99),
    },
  }
}

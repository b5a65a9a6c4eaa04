/**
 * What expressions see while a request runs. One fixed-shape object per request; the
 * compiled accessors read its fields directly (a call's value is `values[index]`).
 */
import type { AuthMethod } from './types.ts'

/** Roots whose values come from the client: a bad value read from them is the client's mistake (400). */
const CLIENT_ROOTS: ReadonlySet<string> = new Set(['request', 'auth'])

/** True when an expression reads something, and only the client's roots. */
export function readsOnlyTheClient(roots: Iterable<string>): boolean {
  let any = false
  for (const root of roots) {
    if (!CLIENT_ROOTS.has(root)) return false
    any = true
  }
  return any
}

/** Fields of the `auth` root. */
export const AUTH_FIELDS = ['method', 'sub', 'scopes', 'roles', 'claims']

/** Who made the request, once authenticated: the `auth` root of expressions. */
export interface Principal {
  readonly method: AuthMethod
  /** JWT subject, or the API key's name. */
  readonly sub: string | null
  readonly scopes: readonly string[]
  readonly roles: readonly string[]
  /** Every claim of the token ({} for an API key). */
  readonly claims: Readonly<Record<string, unknown>>
}

export interface RequestView {
  readonly method: string
  readonly path: string
  /** Strings, or the types the endpoint's `validate.params` schema coerced them to. */
  readonly params: Readonly<Record<string, unknown>>
  /** Strings (lists when repeated), or the types `validate.query` coerced them to. */
  readonly query: Readonly<Record<string, unknown>>
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly body: unknown
  /** null on public endpoints. */
  readonly auth: Principal | null
  /** The target as the client sent it, path and query (traces show the query, credentials redacted). */
  readonly url: string
  /** Who sent it: the client's address and scheme, behind trusted proxies as they forward them. Getters: read only by those who need them (tracing). */
  readonly client: { readonly ip: string; readonly protocol: string }
}

/** Status and headers of a finished call, for `calls.<name>.status` and friends. */
export interface CallMeta {
  readonly status: number | null
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly ok: boolean
  /** Failure kind (`timeout`, `server_error`, …), or null. */
  readonly error: string | null
  readonly skipped: boolean
}

export class Scope {
  readonly request: RequestView
  /** Each call's value: its JSON body, or its fallback once it failed or was skipped. */
  readonly values: unknown[]
  /** Per call, when some expression reads `calls.…`; otherwise null. */
  readonly meta: (CallMeta | undefined)[] | null
  /** The current item while a forEach call builds one of its requests. */
  item: unknown

  constructor(request: RequestView, callCount: number, keepMeta: boolean) {
    this.request = request
    this.values = new Array<unknown>(callCount).fill(null)
    this.meta = keepMeta ? new Array<CallMeta | undefined>(callCount) : null
    this.item = undefined
  }
}

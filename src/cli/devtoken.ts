/** baton dev: a token for trying protected endpoints, signed with the configured (or stand-in) HS secret. */
import { SignJWT } from 'jose'
import type { GatewayPlan } from '../plan/types.ts'

export const DEV_SUBJECT = 'dev-user'

/** A one-hour token holding every scope and role the endpoints demand; null when the gateway's JWTs are not HS-signed. */
export async function devToken(plan: GatewayPlan): Promise<string | null> {
  const jwt = plan.edge.auth?.jwt
  if (jwt === undefined || jwt === null || jwt.secret === null || jwt.secret === '') return null
  const scopes = new Set<string>()
  const roles = new Set<string>()
  for (const e of plan.endpoints) {
    for (const s of e.auth?.scopes ?? []) scopes.add(s)
    for (const r of e.auth?.roles ?? []) roles.add(r)
  }
  const claims: Record<string, unknown> = {}
  if (scopes.size > 0) claims[jwt.scopesClaim] = [...scopes].join(' ')
  if (roles.size > 0) {
    // rolesClaim may be a path such as realm_access.roles.
    let at = claims
    for (const key of jwt.rolesClaim.slice(0, -1)) at = (at[key] = {}) as Record<string, unknown>
    at[jwt.rolesClaim.at(-1) as string] = [...roles]
  }
  const token = new SignJWT(claims)
    .setProtectedHeader({ alg: jwt.algorithms[0] ?? 'HS256', typ: 'JWT' })
    .setSubject(DEV_SUBJECT)
    .setIssuedAt()
    .setExpirationTime('1h')
  if (jwt.issuer !== null) token.setIssuer(jwt.issuer[0] as string)
  if (jwt.audience !== null) token.setAudience(jwt.audience[0] as string)
  return await token.sign(Buffer.from(jwt.secret))
}

/**
 * Inbound authentication: bearer JWTs (jose) and API keys. Built once per gateway; `check`
 * runs per request, before the body is read. A rejection carries the stable error code and
 * the WWW-Authenticate challenge (RFC 6750) to send.
 */
import { createHash, createPublicKey, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto'
import {
  createRemoteJWKSet,
  errors,
  type JWTPayload,
  jwtVerify,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
} from 'jose'
import { LRUCache } from 'lru-cache'
import type { ErrorCode } from '../errors.ts'
import type { Principal } from '../plan/scope.ts'
import type { ApiKeyPlan, AuthPlan, EndpointAuthPlan, JwtPlan } from '../plan/types.ts'

export type AuthVerdict =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly code: ErrorCode; readonly message: string; readonly challenge: string | null }

export interface AuthRequest {
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly query: Readonly<Record<string, unknown>>
}

export class Authenticator {
  readonly #plan: AuthPlan
  readonly #jwt: JwtVerifier | null
  readonly #keys: ApiKeys | null

  constructor(plan: AuthPlan) {
    this.#plan = plan
    this.#jwt = plan.jwt === null ? null : new JwtVerifier(plan.jwt)
    this.#keys = plan.apiKey === null ? null : new ApiKeys(plan.apiKey)
  }

  async check(req: AuthRequest, demand: EndpointAuthPlan): Promise<AuthVerdict> {
    const realm = this.#plan.realm
    const jwt = demand.methods.includes('jwt') ? this.#jwt : null
    const keys = demand.methods.includes('apiKey') ? this.#keys : null
    const token = jwt === null ? null : bearerToken(req.headers.authorization)
    let verdict: AuthVerdict
    if (jwt !== null && token !== null) {
      verdict = await jwt.verify(token, realm)
    } else {
      const presented = keys === null ? null : keys.presented(req)
      if (keys !== null && presented !== null) {
        verdict = keys.verify(presented, realm)
      } else {
        const challenges = [
          ...(jwt === null ? [] : [`Bearer realm="${realm}"`]),
          ...(keys === null ? [] : [keys.challenge(realm)]),
        ]
        return {
          ok: false,
          code: 'UNAUTHENTICATED',
          message: 'Credentials are required',
          challenge: challenges.join(', '),
        }
      }
    }
    if (!verdict.ok) return verdict
    return authorize(verdict.principal, demand, realm)
  }
}

/** 403 unless the principal holds every demanded scope and one of the demanded roles. */
function authorize(principal: Principal, demand: EndpointAuthPlan, realm: string): AuthVerdict {
  const missing = demand.scopes.filter((s) => !principal.scopes.includes(s))
  if (missing.length > 0) {
    return {
      ok: false,
      code: 'FORBIDDEN',
      message: `Missing scope${missing.length > 1 ? 's' : ''}: ${missing.join(' ')}`,
      // RFC 6750's challenge tells a bearer-token client which token to get; an API key cannot get one.
      challenge:
        principal.method === 'jwt'
          ? `Bearer realm="${realm}", error="insufficient_scope", scope="${demand.scopes.join(' ')}"`
          : null,
    }
  }
  if (demand.roles.length > 0 && !demand.roles.some((r) => principal.roles.includes(r))) {
    return {
      ok: false,
      code: 'FORBIDDEN',
      message: `Requires one of the roles: ${demand.roles.join(', ')}`,
      challenge: null,
    }
  }
  return { ok: true, principal }
}

function bearerToken(header: string | string[] | undefined): string | null {
  if (typeof header !== 'string' || header.length < 8) return null
  if (header.slice(0, 7).toLowerCase() !== 'bearer ') return null
  const token = header.slice(7).trim()
  return token === '' ? null : token
}

const NO_CLAIMS: Readonly<Record<string, unknown>> = Object.freeze({})

/** A verified token: its principal, and until when (epoch ms) it may be taken without verifying it again. */
interface Verified {
  readonly principal: Principal
  readonly until: number
}

class JwtVerifier {
  readonly #key: KeyObject | JWTVerifyGetKey
  readonly #options: JWTVerifyOptions
  readonly #plan: JwtPlan
  /**
   * Tokens verified before, by their exact text. A hit is only taken before `until`: the
   * token's exp (and maxAge) with the clock tolerance, and for a JWKS at most jwks.cacheFor
   * after verification, so that a key removed from the set stops working as its cache would.
   */
  readonly #verified: LRUCache<string, Verified> | null

  constructor(plan: JwtPlan) {
    this.#plan = plan
    if (plan.jwksUrl !== null) {
      this.#key = createRemoteJWKSet(new URL(plan.jwksUrl), {
        cacheMaxAge: plan.jwks.cacheFor,
        cooldownDuration: plan.jwks.cooldown,
        timeoutDuration: plan.jwks.timeout,
      })
    } else if (plan.secret !== null) {
      this.#key = createSecretKey(Buffer.from(plan.secret))
    } else {
      this.#key = createPublicKey(plan.publicKey ?? '')
    }
    this.#options = {
      algorithms: [...plan.algorithms],
      clockTolerance: plan.clockTolerance / 1000,
      requiredClaims: [...plan.requiredClaims],
      ...(plan.issuer === null ? {} : { issuer: [...plan.issuer] }),
      ...(plan.audience === null ? {} : { audience: [...plan.audience] }),
      ...(plan.maxAge === null ? {} : { maxTokenAge: plan.maxAge / 1000 }),
    }
    this.#verified = plan.cacheSize === 0 ? null : new LRUCache({ max: plan.cacheSize })
  }

  async verify(token: string, realm: string): Promise<AuthVerdict> {
    const known = this.#verified?.get(token)
    if (known !== undefined) {
      if (Date.now() < known.until) return { ok: true, principal: known.principal }
      // Past its time: verified again below, which says exactly what is wrong with it now.
      this.#verified?.delete(token)
    }
    let payload: JWTPayload
    try {
      // The two overloads differ only in the key's type; the union needs a branch for the type checker.
      const key = this.#key
      payload = (
        typeof key === 'function'
          ? await jwtVerify(token, key, this.#options)
          : await jwtVerify(token, key, this.#options)
      ).payload
    } catch (err) {
      return tokenFailure(err, realm, this.#plan.jwksUrl !== null)
    }
    const claims = payload as Record<string, unknown>
    const principal: Principal = {
      method: 'jwt',
      sub: typeof payload.sub === 'string' ? payload.sub : null,
      scopes: scopesOf(claims, this.#plan.scopesClaim),
      roles: listOf(pathOf(claims, this.#plan.rolesClaim)),
      claims,
    }
    this.#remember(token, payload, principal)
    return { ok: true, principal }
  }

  #remember(token: string, payload: JWTPayload, principal: Principal): void {
    const cache = this.#verified
    const plan = this.#plan
    if (cache === null) return
    const now = Date.now()
    let until = Infinity
    if (typeof payload.exp === 'number') until = payload.exp * 1000 + plan.clockTolerance
    if (plan.maxAge !== null && typeof payload.iat === 'number')
      until = Math.min(until, payload.iat * 1000 + plan.maxAge + plan.clockTolerance)
    if (plan.jwksUrl !== null) until = Math.min(until, now + plan.jwks.cacheFor)
    // A token without exp is never cached: it would be valid for as long as it stays in the cache.
    if (until !== Infinity && until > now) cache.set(token, { principal, until })
  }
}

function tokenFailure(err: unknown, realm: string, remote: boolean): AuthVerdict {
  const invalid = (description: string): AuthVerdict => ({
    ok: false,
    code: 'INVALID_TOKEN',
    message: `The access token is not valid: ${description}`,
    challenge: `Bearer realm="${realm}", error="invalid_token", error_description="${description}"`,
  })
  if (err instanceof errors.JWTExpired)
    return invalid(err.claim === 'iat' ? 'the token was issued too long ago' : 'the token has expired')
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return invalid('the token is not valid yet')
    if (err.claim === 'iat') return invalid('the token was issued in the future')
    if (err.reason === 'missing') return invalid(`the token has no ${err.claim} claim`)
    return invalid(`unexpected ${err.claim} claim`)
  }
  if (err instanceof errors.JWKSNoMatchingKey) return invalid("no key matches the token's kid")
  if (err instanceof errors.JOSEAlgNotAllowed) return invalid("the token's algorithm is not accepted")
  if (err instanceof errors.JWSSignatureVerificationFailed) return invalid('the signature does not verify')
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported)
    return invalid('the token is malformed')
  // The JWKS could not be fetched (down, slow, not a key set): not the client's fault.
  if (
    remote &&
    (err instanceof errors.JWKSTimeout ||
      err instanceof errors.JWKSInvalid ||
      !(err instanceof errors.JOSEError) ||
      err.code === 'ERR_JOSE_GENERIC')
  ) {
    return {
      ok: false,
      code: 'AUTH_UNAVAILABLE',
      message: `The token cannot be checked right now: ${jwksProblem(err)}`,
      challenge: null,
    }
  }
  // Anything else (a key the token's algorithm cannot use, …) is the token's problem.
  return invalid('the token cannot be verified with the configured key')
}

function jwksProblem(err: unknown): string {
  if (err instanceof errors.JWKSTimeout) return 'the key set did not arrive in time'
  if (err instanceof errors.JWKSInvalid) return 'the key set is malformed'
  return 'the key set cannot be fetched'
}

function scopesOf(claims: Record<string, unknown>, claim: string): string[] {
  const value = Object.hasOwn(claims, claim) ? claims[claim] : claims.scp
  if (typeof value === 'string') return value.split(' ').filter((s) => s !== '')
  return listOf(value)
}

function pathOf(claims: Record<string, unknown>, path: readonly string[]): unknown {
  let value: unknown = claims
  for (const key of path) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined
    value = (value as Record<string, unknown>)[key]
  }
  return value
}

function listOf(value: unknown): string[] {
  if (typeof value === 'string') return [value]
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []
}

/**
 * API keys compared in constant time: the presented key and every known key are hashed to
 * equal-length digests, and every digest is compared, so neither the length nor the position
 * of a match shows in the time taken.
 */
class ApiKeys {
  readonly #plan: ApiKeyPlan
  readonly #digests: readonly { readonly name: string; readonly digest: Buffer }[]

  constructor(plan: ApiKeyPlan) {
    this.#plan = plan
    this.#digests = plan.keys.map((k) => ({ name: k.name, digest: sha256(k.key) }))
  }

  presented(req: AuthRequest): string | null {
    const { header, query } = this.#plan
    const value = header !== null ? req.headers[header] : query === null ? undefined : req.query[query]
    return typeof value === 'string' && value !== '' ? value : null
  }

  verify(key: string, realm: string): AuthVerdict {
    const digest = sha256(key)
    let match: string | null = null
    for (const known of this.#digests) {
      if (timingSafeEqual(digest, known.digest) && match === null) match = known.name
    }
    if (match === null) {
      return {
        ok: false,
        code: 'INVALID_API_KEY',
        message: 'The API key is not valid',
        challenge: this.challenge(realm),
      }
    }
    return { ok: true, principal: { method: 'apiKey', sub: match, scopes: [], roles: [], claims: NO_CLAIMS } }
  }

  challenge(realm: string): string {
    const { header, query } = this.#plan
    return `ApiKey realm="${realm}", ${header === null ? `query="${query ?? ''}"` : `header="${header}"`}`
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

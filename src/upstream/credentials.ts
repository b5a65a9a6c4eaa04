/**
 * OAuth2 client credentials for one service: the token is fetched on first use, kept until
 * `refreshBefore` ahead of its expiry, and fetched once for all callers that need it at the
 * same moment. A 401 from the service drops the token so the next call fetches a fresh one.
 *
 * The grant itself is oauth4webapi's (client_secret_basic, client_secret_post, private_key_jwt,
 * issuer discovery), a kept client rather than our own form-posting. Its requests go through
 * the dispatcher the service's client gives (its TLS settings: a private CA, a client
 * certificate), not undici's global one, so the token endpoint is reached as the service is.
 */
import { createPrivateKey, type webcrypto } from 'node:crypto'
import * as oauth from 'oauth4webapi'
import { type Dispatcher, fetch } from 'undici'
import type { OAuth2Plan, SigningAlg } from '../plan/types.ts'
import type { Clock } from '../policies/clock.ts'
import { CallError } from './failure.ts'

/** Tokens without expires_in are kept this long. */
const DEFAULT_LIFETIME = 300_000

/** The dispatcher a token (or metadata) request to `url` goes through. */
export type DispatcherFor = (url: URL) => Dispatcher

type HttpOptions = oauth.HttpRequestOptions<'GET' | 'POST', URLSearchParams | undefined>

export class OAuth2Tokens {
  readonly #plan: OAuth2Plan
  readonly #service: string
  readonly #clock: Clock
  readonly #http: HttpOptions
  /** The token endpoint as oauth4webapi wants it: given at once, or once the issuer's metadata is read. */
  #server: oauth.AuthorizationServer | null
  #token: string | null = null
  #renewAt = 0
  #pending: Promise<string> | null = null

  constructor(plan: OAuth2Plan, service: string, clock: Clock, dispatcherFor: DispatcherFor) {
    this.#plan = plan
    this.#service = service
    this.#clock = clock
    // Without discovery, the token endpoint stands in for the issuer (the aud of a private_key_jwt assertion).
    this.#server = plan.tokenUrl === null ? null : { issuer: plan.tokenUrl, token_endpoint: plan.tokenUrl }
    const customFetch = (url: string, init: oauth.CustomFetchOptions<string, unknown>): Promise<Response> =>
      fetch(url, {
        ...(init as Parameters<typeof fetch>[1]),
        dispatcher: dispatcherFor(new URL(url)),
      }) as unknown as Promise<Response>
    this.#http = {
      [oauth.customFetch]: customFetch,
      // A fresh timeout for each request (the metadata, then the token).
      signal: () => AbortSignal.timeout(plan.timeout),
      // oauth4webapi wants https; a plain http:// URL in the config (a local token server) is the user's choice.
      [oauth.allowInsecureRequests]: (plan.tokenUrl ?? plan.issuer ?? '').startsWith('http:'),
    }
  }

  /** A valid token; concurrent callers share one fetch. */
  get(): Promise<string> {
    if (this.#token !== null && this.#clock.now() < this.#renewAt) return Promise.resolve(this.#token)
    this.#pending ??= this.#fetch().finally(() => {
      this.#pending = null
    })
    return this.#pending
  }

  /** The service refused `token`: forget it (unless a newer one replaced it already). */
  reject(token: string): void {
    if (this.#token === token) {
      this.#token = null
      this.#renewAt = 0
    }
  }

  async #fetch(): Promise<string> {
    const p = this.#plan
    let step = 'the token endpoint'
    let body: oauth.TokenEndpointResponse
    try {
      if (this.#server === null) {
        step = `the metadata of ${p.issuer}`
        this.#server = await this.#discover(new URL(p.issuer ?? ''))
        step = 'the token endpoint'
      }
      const server = this.#server
      const params = new URLSearchParams()
      if (p.scope !== null) params.set('scope', p.scope)
      if (p.audience !== null) params.set('audience', p.audience)
      const client: oauth.Client = { client_id: p.clientId }
      const res = await oauth.clientCredentialsGrantRequest(server, client, clientAuth(p), params, this.#http)
      body = await settle(res, oauth.processClientCredentialsResponse(server, client, res))
    } catch (err) {
      throw new CallError('credentials', `no OAuth2 token for ${this.#service}: ${step} ${explain(err, p.timeout)}`, {
        cause: err,
      })
    }
    const token = body.access_token
    if (/[\r\n\0]/.test(token)) {
      throw new CallError(
        'credentials',
        `no OAuth2 token for ${this.#service}: the token endpoint's access_token is not a header value`,
      )
    }
    const expiresIn = body.expires_in ?? NaN
    const lifetime = Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1000 : DEFAULT_LIFETIME
    // A short-lived token is renewed at half its life rather than never being cached.
    this.#renewAt = this.#clock.now() + Math.max(lifetime - p.refreshBefore, lifetime / 2)
    this.#token = token
    return token
  }

  /** OpenID Connect discovery, then RFC 8414 (/.well-known/oauth-authorization-server) when the first is not there. */
  async #discover(issuer: URL): Promise<oauth.AuthorizationServer> {
    const oidc = await oauth.discoveryRequest(issuer, { ...this.#http, algorithm: 'oidc' })
    if (oidc.status === 404) {
      await oidc.body?.cancel()
      const rfc = await oauth.discoveryRequest(issuer, { ...this.#http, algorithm: 'oauth2' })
      return await settle(rfc, oauth.processDiscoveryResponse(issuer, rfc))
    }
    return await settle(oidc, oauth.processDiscoveryResponse(issuer, oidc))
  }
}

/** How the client proves itself, made at each fetch so that a secret or key that cannot work fails that fetch. */
function clientAuth(p: OAuth2Plan): oauth.ClientAuth {
  switch (p.authMethod) {
    case 'client_secret_basic':
      return oauth.ClientSecretBasic(p.clientSecret)
    case 'client_secret_post':
      return oauth.ClientSecretPost(p.clientSecret)
    case 'private_key_jwt': {
      if (p.signingKey === null) throw new Error('no private key to sign the client assertion with')
      const { pem, alg, keyId } = p.signingKey
      const key = createPrivateKey(pem).toCryptoKey(WEBCRYPTO[alg], false, ['sign'])
      return oauth.PrivateKeyJwt(keyId === null ? key : { key, kid: keyId })
    }
  }
}

/** Each JWS algorithm's WebCrypto parameters. */
const WEBCRYPTO: Readonly<
  Record<SigningAlg, webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | webcrypto.Algorithm>
> = {
  RS256: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
  ES256: { name: 'ECDSA', namedCurve: 'P-256' },
  ES384: { name: 'ECDSA', namedCurve: 'P-384' },
  ES512: { name: 'ECDSA', namedCurve: 'P-521' },
  Ed25519: { name: 'Ed25519' },
}

/** Awaits the processing of `res`; an answer it refused is drained, so its connection goes back to the pool. */
async function settle<T>(res: Response, processed: Promise<T>): Promise<T> {
  try {
    return await processed
  } catch (err) {
    if (!res.bodyUsed) await res.body?.cancel().catch(() => {})
    throw err
  }
}

/** A failed metadata or token request in a few words (it follows "the token endpoint"). */
function explain(err: unknown, timeout: number): string {
  if (err instanceof oauth.ResponseBodyError) {
    return `answered ${err.status} ${err.error}${err.error_description === undefined ? '' : `: ${err.error_description}`}`
  }
  if (err instanceof oauth.WWWAuthenticateChallengeError) return `answered ${err.status}`
  if (err instanceof oauth.OperationProcessingError && err.code === oauth.RESPONSE_IS_NOT_CONFORM) {
    const status = (err.cause as { status?: unknown } | undefined)?.status
    if (typeof status === 'number') return `answered ${status}`
  }
  const e = err as Error & { cause?: Error & { code?: string } }
  if (e.name === 'TimeoutError') return `did not answer within ${timeout}ms`
  if (e instanceof TypeError && e.cause instanceof Error) {
    // undici's "fetch failed": the cause says why (refused, a certificate not trusted, …).
    return `cannot be reached: ${e.cause.message}${e.cause.code === undefined ? '' : ` (${e.cause.code})`}`
  }
  return `gave no token: ${e.message}`
}

/**
 * OAuth2 client credentials for one service: the token is fetched on first use, kept until
 * `refreshBefore` ahead of its expiry, and fetched once for all callers that need it at the
 * same moment. A 401 from the service drops the token so the next call fetches a fresh one.
 */
import { request } from 'undici'
import type { OAuth2Plan } from '../plan/types.ts'
import type { Clock } from '../policies/clock.ts'
import { CallError } from './failure.ts'

/** Tokens without expires_in are kept this long. */
const DEFAULT_LIFETIME = 300_000

export class OAuth2Tokens {
  readonly #plan: OAuth2Plan
  readonly #service: string
  readonly #clock: Clock
  #token: string | null = null
  #renewAt = 0
  #pending: Promise<string> | null = null

  constructor(plan: OAuth2Plan, service: string, clock: Clock) {
    this.#plan = plan
    this.#service = service
    this.#clock = clock
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
    const form = new URLSearchParams({ grant_type: 'client_credentials' })
    if (p.scope !== null) form.set('scope', p.scope)
    if (p.audience !== null) form.set('audience', p.audience)
    const basic = Buffer.from(`${encodeURIComponent(p.clientId)}:${encodeURIComponent(p.clientSecret)}`).toString(
      'base64',
    )
    let body: unknown
    try {
      const res = await request(p.tokenUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
          authorization: `Basic ${basic}`,
        },
        body: form.toString(),
        signal: AbortSignal.timeout(p.timeout),
      })
      if (res.statusCode !== 200) {
        await res.body.dump()
        throw new Error(`the token endpoint answered ${res.statusCode}`)
      }
      body = await res.body.json()
    } catch (err) {
      throw new CallError('credentials', `no OAuth2 token for ${this.#service}: ${(err as Error).message}`, {
        cause: err,
      })
    }
    const token = (body as { access_token?: unknown } | null)?.access_token
    if (typeof token !== 'string' || token === '' || /[\r\n\0]/.test(token)) {
      throw new CallError(
        'credentials',
        `no OAuth2 token for ${this.#service}: the token endpoint's answer has no access_token`,
      )
    }
    const expiresIn = Number((body as { expires_in?: unknown }).expires_in)
    const lifetime = Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1000 : DEFAULT_LIFETIME
    // A short-lived token is renewed at half its life rather than never being cached.
    this.#renewAt = this.#clock.now() + Math.max(lifetime - p.refreshBefore, lifetime / 2)
    this.#token = token
    return token
  }
}

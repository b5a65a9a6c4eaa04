/**
 * A service's `auth.oauth2`, compiled: where the token comes from (a token URL, or an issuer
 * whose metadata names it), how the client authenticates (client_secret_basic,
 * client_secret_post, private_key_jwt), and the signing key read and checked now, so that
 * `baton check` reports a key that cannot sign at its place in the config rather than the
 * first call failing.
 */
import { createPrivateKey } from 'node:crypto'
import type { ServiceConfig } from '../config/schema.ts'
import type { ConfigPath } from '../config/source.ts'
import type { Diagnostics } from './diagnostics.ts'
import { readConfigFile, resolveEnv } from './edge.ts'
import type { TemplateScope } from './templates.ts'
import type { OAuth2Plan, SigningAlg } from './types.ts'

type OAuth2Config = Extract<NonNullable<ServiceConfig['auth']>, { oauth2: unknown }>['oauth2']

export interface OAuth2Context {
  readonly env: TemplateScope
  readonly baseDir: string
  readonly diagnostics: Diagnostics
  /** Resolves a secret, and reports it when the environment leaves it empty under `baton serve`. */
  readonly secret: (value: string, path: ConfigPath) => string
}

export function compileOAuth2(o: OAuth2Config, at: ConfigPath, ctx: OAuth2Context): OAuth2Plan {
  const { diagnostics } = ctx
  const url = (key: 'tokenUrl' | 'issuer', example: string): string | null => {
    const value = o[key]
    if (value === undefined) return null
    const text = resolveEnv(value, [...at, key], ctx) ?? ''
    if (!/^https?:\/\/[^/]/.test(text))
      diagnostics.error('BATON_INVALID_URL', `'${text}' is not an http(s) URL`, [...at, key], { hint: example })
    return text
  }
  const tokenUrl = url('tokenUrl', 'the token endpoint, e.g. https://auth.example.com/oauth/token')
  const issuer = url('issuer', 'the issuer, e.g. https://auth.example.com (its metadata names the token endpoint)')
  if ((tokenUrl === null) === (issuer === null))
    diagnostics.error(
      'BATON_AUTH_CONFIG',
      tokenUrl === null ? 'oauth2 needs tokenUrl or issuer' : 'oauth2 takes tokenUrl or issuer, not both',
      at,
      { key: true, hint: 'tokenUrl: the token endpoint itself; issuer: discover it from /.well-known metadata' },
    )

  const hasKey = o.privateKey !== undefined || o.privateKeyFile !== undefined
  const authMethod = o.authMethod ?? (hasKey ? 'private_key_jwt' : 'client_secret_basic')
  const misplaced = (key: string, hint: string): void =>
    diagnostics.error('BATON_AUTH_CONFIG', `${key} is not used with authMethod ${authMethod}`, [...at, key], {
      key: true,
      hint,
    })

  let clientSecret = ''
  let signingKey: OAuth2Plan['signingKey'] = null
  if (authMethod === 'private_key_jwt') {
    if (o.clientSecret !== undefined) misplaced('clientSecret', 'private_key_jwt signs an assertion instead; remove it')
    let pem: string | null = null
    let keyAt: ConfigPath = at
    if (o.privateKey !== undefined && o.privateKeyFile !== undefined) {
      diagnostics.error('BATON_AUTH_CONFIG', 'give privateKey or privateKeyFile, not both', [...at, 'privateKeyFile'], {
        key: true,
      })
    } else if (o.privateKey !== undefined) {
      keyAt = [...at, 'privateKey']
      pem = ctx.secret(o.privateKey, keyAt)
    } else if (o.privateKeyFile !== undefined) {
      keyAt = [...at, 'privateKeyFile']
      pem = readConfigFile(o.privateKeyFile, keyAt, ctx)
    } else {
      diagnostics.error(
        'BATON_AUTH_CONFIG',
        'private_key_jwt needs privateKey or privateKeyFile',
        [...at, 'authMethod'],
        {
          hint: 'privateKey: "${env.NAME}" (PEM text) or privateKeyFile: keys/client.pem',
        },
      )
    }
    // An empty key from the environment is reported by ctx.secret (an error only when serving).
    if (pem !== null && pem !== '') {
      const alg = signingAlg(pem, keyAt, diagnostics)
      if (alg !== null) signingKey = { pem, alg, keyId: o.keyId ?? null }
    }
  } else {
    for (const key of ['privateKey', 'privateKeyFile', 'keyId'] as const)
      if (o[key] !== undefined) misplaced(key, 'a private key is for authMethod: private_key_jwt')
    if (o.clientSecret === undefined)
      diagnostics.error('BATON_AUTH_CONFIG', `${authMethod} needs clientSecret`, at, {
        key: true,
        hint: 'clientSecret: "${env.NAME}", or a private key with authMethod: private_key_jwt',
      })
    else clientSecret = ctx.secret(o.clientSecret, [...at, 'clientSecret'])
  }

  return {
    tokenUrl,
    issuer,
    authMethod,
    clientId: resolveEnv(o.clientId, [...at, 'clientId'], ctx) ?? '',
    clientSecret,
    signingKey,
    scope: o.scope ?? null,
    audience: o.audience ?? null,
    refreshBefore: o.refreshBefore,
    timeout: o.timeout,
  }
}

const CURVES: Readonly<Record<string, SigningAlg>> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }

/** The JWS algorithm a PEM private key signs with; null, with a diagnostic, when it cannot sign one. */
function signingAlg(pem: string, path: ConfigPath, diagnostics: Diagnostics): SigningAlg | null {
  const hint = 'give an unencrypted PEM private key: RSA (RS256), EC P-256/P-384/P-521 (ES256/384/512) or Ed25519'
  let key
  try {
    key = createPrivateKey(pem)
  } catch (err) {
    diagnostics.error('BATON_INVALID_KEY', `the private key does not parse: ${(err as Error).message}`, path, { hint })
    return null
  }
  const type = key.asymmetricKeyType
  const alg =
    type === 'rsa'
      ? 'RS256'
      : type === 'ed25519'
        ? 'Ed25519'
        : type === 'ec'
          ? CURVES[key.asymmetricKeyDetails?.namedCurve ?? '']
          : undefined
  if (alg === undefined) {
    const what =
      type === 'ec'
        ? `an EC key on ${key.asymmetricKeyDetails?.namedCurve ?? 'an unknown curve'}`
        : `a ${type ?? 'secret'} key`
    diagnostics.error('BATON_INVALID_KEY', `${what} cannot sign a private_key_jwt assertion`, path, { hint })
    return null
  }
  return alg
}

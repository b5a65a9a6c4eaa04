/**
 * Keep-alive connection pools (undici, one per origin and settings), and the send function every call
 * goes through. Policies (retry, breaker, bulkhead…) wrap `send` once, when the gateway is
 * built; the runtime only ever calls the composed function.
 */
import { Pool } from 'undici'
import type { Dispatcher } from 'undici'
import type { ServicePlan, TlsPlan } from '../plan/types.ts'
import { OAuth2Tokens } from './credentials.ts'
import { type BreakerState, CircuitBreaker } from '../policies/breaker.ts'
import { Bulkhead } from '../policies/bulkhead.ts'
import { type Clock, systemClock } from '../policies/clock.ts'
import { RetryBudget, ServiceStats } from '../policies/stats.ts'

export interface UpstreamRequest {
  readonly method: string
  /** Path and query string, already encoded. */
  readonly path: string
  readonly headers: Record<string, string>
  readonly body: string | null
  readonly signal: AbortSignal
}

export interface UpstreamResponse {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  /** Parsed JSON for 2xx answers (null when empty); undefined for other statuses, whose bodies are discarded. */
  readonly body: unknown
}

/** Why a call failed; the runtime maps kinds to the client's status. */
export type FailureKind =
  | 'timeout'
  | 'deadline'
  | 'aborted'
  | 'connect'
  | 'network'
  | 'bad_body'
  | 'too_large'
  | 'circuit_open'
  | 'bulkhead_full'
  | 'expression'
  | 'bad_request'
  | 'credentials'

export class UpstreamError extends Error {
  readonly kind: FailureKind
  constructor(kind: FailureKind, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'UpstreamError'
    this.kind = kind
  }
}

export type Send = (request: UpstreamRequest) => Promise<UpstreamResponse>
export type Policy = (next: Send, service: ServicePlan) => Send

export interface ServiceClient {
  readonly service: ServicePlan
  /** scheme://host:port the pool connects to (the service's, or the origin given instead). */
  readonly origin: string
  readonly send: Send
  /** Shared by every endpoint that calls the service; null when not configured. */
  readonly breaker: CircuitBreaker | null
  readonly bulkhead: Bulkhead | null
  readonly budget: RetryBudget
  readonly stats: ServiceStats
  close(): Promise<void>
}

/**
 * Connection pools by origin: services that reach the same origin with the same pool settings
 * (size, TLS) share one pool, as a hand-written BFF would, instead of each opening its own
 * connections to the same host. Each service keeps its own policies and stats.
 */
export class PoolRegistry {
  readonly #pools = new Map<string, { pool: Pool; users: number }>()

  acquire(origin: string, service: ServicePlan): { pool: Pool; release: () => Promise<void> } {
    const key = JSON.stringify([origin, service.connections, service.tls])
    let entry = this.#pools.get(key)
    if (entry === undefined) {
      const pool = new Pool(origin, {
        connections: service.connections,
        pipelining: 1,
        // Our own per-call timers and the endpoint deadline govern time; these only stop a connection from hanging forever.
        headersTimeout: 0,
        bodyTimeout: 0,
        ...(service.tls === null ? {} : { connect: tlsOptions(service.tls) }),
      })
      entry = { pool, users: 0 }
      this.#pools.set(key, entry)
    }
    entry.users++
    const used = entry
    let released = false
    return {
      pool: used.pool,
      release: async () => {
        if (released) return
        released = true
        if (--used.users === 0) {
          this.#pools.delete(key)
          await used.pool.close()
        }
      },
    }
  }
}

export interface ClientOptions {
  /** Shared pools (a gateway passes one registry to all its clients); default: a pool of the client's own. */
  pools?: PoolRegistry
  /** Overrides the service's URL origin (baton dev points services at their mocks). */
  origin?: string
  policies?: readonly Policy[]
  clock?: Clock
  /** Told when the service's breaker changes state. */
  onBreakerChange?: (service: string, from: BreakerState, to: BreakerState) => void
}

export function createServiceClient(service: ServicePlan, options: ClientOptions = {}): ServiceClient {
  const origin = options.origin ?? service.origin
  const { pool, release } = (options.pools ?? new PoolRegistry()).acquire(origin, service)
  const limit = service.maxResponseSize
  const base: Send = async (req) => {
    let res: Dispatcher.ResponseData
    try {
      res = await pool.request({
        method: req.method as Dispatcher.HttpMethod,
        path: req.path,
        headers: req.headers,
        body: req.body,
        signal: req.signal,
      })
    } catch (err) {
      throw toUpstreamError(err, req.signal)
    }
    if (res.statusCode < 200 || res.statusCode >= 300) {
      // Only the status matters; drain a little so the connection can be reused, else close it.
      await res.body.dump({ limit: 64 * 1024 }).catch(() => {})
      return { status: res.statusCode, headers: res.headers, body: undefined }
    }
    let text: string
    try {
      const declared = res.headers['content-length']
      if (declared === undefined) {
        text = await readChunked(res, limit)
      } else if (Number(declared) > limit) {
        // Nothing reads this body, so the error destroy() emits needs a listener or it is uncaught and ends the process.
        res.body.on('error', () => {})
        res.body.destroy()
        throw new UpstreamError('too_large', `response of ${String(declared)} bytes exceeds the ${limit}-byte limit`)
      } else {
        // The common case: the length is known up front, so undici's own reader is safe and fastest.
        text = await res.body.text()
      }
    } catch (err) {
      throw toUpstreamError(err, req.signal)
    }
    let body: unknown = null
    if (text.length > 0) {
      try {
        body = JSON.parse(text)
      } catch (err) {
        throw new UpstreamError('bad_body', `${service.name} answered ${res.statusCode} with a body that is not JSON`, {
          cause: err,
        })
      }
    }
    return { status: res.statusCode, headers: res.headers, body }
  }
  const clock = options.clock ?? systemClock
  const tokens = service.oauth2 === null ? null : new OAuth2Tokens(service.oauth2, service.name, clock)
  const authorized: Send = tokens === null ? base : withToken(base, tokens)
  const send = (options.policies ?? []).reduceRight<Send>((next, policy) => policy(next, service), authorized)
  const { resilience } = service
  const onChange = options.onBreakerChange
  return {
    service,
    origin,
    send,
    breaker:
      resilience.breaker === null
        ? null
        : new CircuitBreaker(
            resilience.breaker,
            clock,
            onChange === undefined
              ? {}
              : {
                  onStateChange: (from, to) => {
                    onChange(service.name, from, to)
                  },
                },
          ),
    bulkhead:
      resilience.bulkhead === null
        ? null
        : new Bulkhead(resilience.bulkhead.maxConcurrent, resilience.bulkhead.maxQueued),
    budget: new RetryBudget(resilience.retryBudget, 10, clock),
    stats: new ServiceStats(),
    close: release,
  }
}

/** Adds the service's OAuth2 token to each request; a 401 answer discards the token. */
function withToken(next: Send, tokens: OAuth2Tokens): Send {
  return async (req) => {
    let token: string
    try {
      // The endpoint's deadline (and a client hanging up) bound the wait for a token too.
      token = await untilAborted(tokens.get(), req.signal)
    } catch (err) {
      throw toUpstreamError(err, req.signal)
    }
    const res = await next({ ...req, headers: { ...req.headers, authorization: `Bearer ${token}` } })
    if (res.status === 401) tokens.reject(token)
    return res
  }
}

function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(signal.reason as Error)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err as Error)
      },
    )
  })
}

function tlsOptions(tls: TlsPlan): Record<string, string> {
  const options: Record<string, string> = {}
  if (tls.cert !== null) options.cert = tls.cert
  if (tls.key !== null) options.key = tls.key
  if (tls.passphrase !== null) options.passphrase = tls.passphrase
  if (tls.ca !== null) options.ca = tls.ca
  if (tls.servername !== null) options.servername = tls.servername
  return options
}

/** Reads a chunked body, counting as it goes and stopping at the limit. */
async function readChunked(res: Dispatcher.ResponseData, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) {
      res.body.destroy()
      throw new UpstreamError('too_large', `response exceeds the ${limit}-byte limit`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, size).toString('utf8')
}

function toUpstreamError(err: unknown, signal: AbortSignal): UpstreamError {
  if (err instanceof UpstreamError) return err
  if (signal.aborted) {
    const reason: unknown = signal.reason
    return reason instanceof UpstreamError ? reason : new UpstreamError('aborted', 'call aborted', { cause: err })
  }
  const code = (err as { code?: string }).code
  const kind: FailureKind =
    code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'UND_ERR_CONNECT_TIMEOUT'
      ? 'connect'
      : 'network'
  return new UpstreamError(kind, (err as Error).message ?? String(err), { cause: err })
}

/** Starts a gateway from YAML text, and talks to it as a client would. */
import assert from 'node:assert/strict'
import { request as httpRequest, type OutgoingHttpHeaders } from 'node:http'
import type { TestContext } from 'node:test'
import type { Logger } from 'pino'
import { compileText } from '../../src/plan/compile.ts'
import type { GatewayPlan } from '../../src/plan/types.ts'
import type { Clock } from '../../src/policies/clock.ts'
import { createGateway, type GatewayOptions } from '../../src/server/gateway.ts'
import { startStub, type Stub } from './stub.ts'

export interface RunningGateway {
  readonly url: string
  readonly plan: GatewayPlan
  close(): Promise<void>
}

export interface GatewayStartOptions {
  env?: Record<string, string>
  /** Service name → origin, instead of the services' `url:`. */
  origins?: ReadonlyMap<string, string>
  /** Time for the breakers and retry budgets (a fake clock in the resilience tests). */
  clock?: Clock
  logger?: Logger
}

/** Compiles `yaml` and listens on a free loopback port; closed after the test. */
export async function startGateway(
  t: TestContext,
  yaml: string,
  options: GatewayStartOptions = {},
): Promise<RunningGateway> {
  const { plan } = compileText('test.yaml', yaml, { env: options.env ?? {} })
  const gatewayOptions: GatewayOptions = {
    ...(options.origins === undefined ? {} : { origins: options.origins }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  }
  const gateway = createGateway(plan, gatewayOptions)
  t.after(() => gateway.close())
  const { url } = await gateway.listen({ port: 0, host: '127.0.0.1' })
  return {
    url,
    plan,
    close: async () => {
      await gateway.close()
    },
  }
}

/** A stub upstream closed (its sockets destroyed) after the test. */
export async function stubFor(t: TestContext): Promise<Stub> {
  const stub = await startStub()
  t.after(() => stub.close())
  return stub
}

export interface ClientResponse {
  status: number
  headers: Record<string, string>
  /** Parsed JSON (the raw text when it is not JSON). */
  body: unknown
}

/** A gateway that never answers fails the test instead of hanging it. */
const CLIENT_TIMEOUT = 10_000

async function send(url: string, init: RequestInit): Promise<ClientResponse> {
  let res: Response
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(CLIENT_TIMEOUT) })
  } catch (err) {
    if ((err as Error).name === 'TimeoutError')
      throw new Error(`the gateway did not answer ${init.method ?? 'GET'} ${url} within ${CLIENT_TIMEOUT}ms`, {
        cause: err,
      })
    throw err
  }
  return await toResponse(res)
}

export async function toResponse(res: Response): Promise<ClientResponse> {
  const raw = await res.text()
  let body: unknown = raw
  try {
    body = JSON.parse(raw)
  } catch {
    /* keep the text */
  }
  return { status: res.status, headers: Object.fromEntries(res.headers), body }
}

/** Resolves once the gateway at `url` counts `n` requests in flight (baton_requests_in_flight). */
export async function inFlight(url: string, n: number): Promise<void> {
  let value = -1
  for (let i = 0; i < 500 && value !== n; i++) {
    const text = await (await fetch(`${url}/metrics`)).text()
    value = Number(/^baton_requests_in_flight (\d+)$/m.exec(text)?.[1] ?? -1)
    if (value !== n) await new Promise((resolve) => setTimeout(resolve, 10))
  }
  assert.equal(value, n, `${n} requests in flight at the gateway`)
}

export async function get(url: string, headers: Record<string, string> = {}): Promise<ClientResponse> {
  return await send(url, { headers })
}

/** POSTs `body` as JSON, or as is when it is a string (with the content-type given in headers, JSON by default). */
export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<ClientResponse> {
  return await send(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

/** An answer whose body is kept as bytes, as they came (node:http decodes nothing). */
export interface ByteResponse {
  status: number
  headers: Record<string, string>
  body: Buffer
}

/**
 * A request through node:http, which (unlike fetch) lets a test send hop-by-hop headers
 * such as Connection, Keep-Alive, TE and Upgrade, and decodes no Content-Encoding.
 */
async function exchange(
  method: string,
  url: string,
  headers: OutgoingHttpHeaders,
  body?: string,
): Promise<ByteResponse> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method, headers, agent: false, signal: AbortSignal.timeout(CLIENT_TIMEOUT) },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', reject)
        res.on('end', () => {
          const flat: Record<string, string> = {}
          for (const [k, v] of Object.entries(res.headers))
            if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v
          resolve({ status: res.statusCode ?? 0, headers: flat, body: Buffer.concat(chunks) })
        })
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

/** A GET (or HEAD) whose body is kept as bytes: a compressed answer as it was sent. */
export async function getBytes(url: string, headers: OutgoingHttpHeaders, method = 'GET'): Promise<ByteResponse> {
  return await exchange(method, url, headers)
}

/** A request through node:http (hop-by-hop headers allowed); the body parsed as JSON when it is JSON. */
export async function rawRequest(
  method: string,
  url: string,
  headers: OutgoingHttpHeaders,
  body?: string,
): Promise<ClientResponse> {
  const res = await exchange(method, url, headers, body)
  const raw = res.body.toString('utf8')
  let parsed: unknown = raw
  try {
    parsed = JSON.parse(raw)
  } catch {
    /* keep the text */
  }
  return { status: res.status, headers: res.headers, body: parsed }
}

/**
 * Asserts a failure answer: its status, JSON content type, and the whole envelope (the
 * message may be matched with a regexp). Pass `sortServices` when their order is not defined.
 */
export function assertError(
  res: ClientResponse,
  status: number,
  code: string,
  message: string | RegExp,
  failedServices: string[] = [],
  sortServices = false,
): void {
  const body = res.body as { error?: { message?: unknown; failedServices?: unknown } }
  const actual = body.error?.message
  if (message instanceof RegExp) assert.match(String(actual), message)
  if (sortServices && Array.isArray(body.error?.failedServices)) (body.error.failedServices as string[]).sort()
  assert.deepEqual(
    { status: res.status, body: res.body },
    {
      status,
      body: {
        error: {
          code,
          message: message instanceof RegExp ? actual : message,
          failedServices: sortServices ? [...failedServices].sort() : failedServices,
          partialData: false,
        },
        data: {},
      },
    },
  )
  assert.equal(res.headers['content-type'], 'application/json; charset=utf-8')
}

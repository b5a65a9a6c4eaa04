/** `baton serve` and `baton dev`: compile, (start mocks,) listen, and shut down cleanly on a signal. */
import { pino, type Logger } from 'pino'
import { createGateway } from '../server/gateway.ts'
import { DEV_SUBJECT } from './devtoken.ts'
import { startMocks } from '../server/mocks.ts'
import type { GatewayPlan } from '../plan/types.ts'

export interface ServeOptions {
  host?: string
  port?: number
  /** baton dev: start the services' mocks and point the gateway at them. */
  mocks?: { down: Set<string>; slow: Map<string, number> }
  pretty?: boolean
  /** Overrides gateway.logLevel. */
  logLevel?: string
  /** false: no line per request (--no-access-log). */
  accessLog?: boolean
  /** baton dev: a token for the protected endpoints, printed with a curl line. */
  devToken?: string
}

export function createLogger(pretty: boolean, level: string = 'info'): Logger {
  // Asynchronous writes keep a line per request off the request path; stop() flushes them.
  if (!pretty) return pino({ base: null, level }, pino.destination({ fd: 1, sync: false }))
  return pino(
    { base: null, level },
    {
      write(line: string) {
        const { msg, level } = JSON.parse(line) as { msg: string; level: number }
        process.stdout.write(`${level >= 50 ? 'error: ' : ''}${msg}\n`)
      },
    },
  )
}

/** Runs until SIGINT/SIGTERM; resolves with the exit code. */
export async function serve(plan: GatewayPlan, options: ServeOptions): Promise<number> {
  const logger = createLogger(options.pretty === true, options.logLevel ?? plan.logLevel)
  const mocks = options.mocks === undefined ? null : await startMocks(plan, options.mocks)
  const gateway = createGateway(plan, {
    logger,
    ...(options.accessLog === false ? { accessLog: false } : {}),
    ...(mocks === null ? {} : { origins: mocks.origins, serverTiming: true }),
  })
  const listenOptions: { host?: string; port?: number } = {}
  if (options.host !== undefined) listenOptions.host = options.host
  if (options.port !== undefined) listenOptions.port = options.port
  let address
  try {
    address = await gateway.listen(listenOptions)
  } catch (err) {
    logger.error({ event: 'listen_failed', err: (err as Error).message }, `cannot listen: ${(err as Error).message}`)
    await gateway.close()
    await mocks?.close()
    return 1
  }
  if (mocks !== null) {
    for (const [name, origin] of mocks.origins) {
      const state =
        options.mocks?.down.has(name) === true
          ? ' (down)'
          : options.mocks?.slow.has(name) === true
            ? ` (+${options.mocks.slow.get(name)}ms)`
            : ''
      logger.info({ event: 'mock', service: name, origin }, `mock ${name} on ${origin}${state}`)
    }
  }
  logger.info(
    { event: 'listening', port: address.port, host: address.host, url: address.url },
    `${plan.name} listening on ${address.url}${plan.basePath}`,
  )
  for (const e of plan.endpoints)
    logger.info(
      { event: 'endpoint', route: `${e.method} ${e.route}` },
      `  ${e.method} ${address.url}${e.route}${e.auth === null ? '' : ' (needs credentials)'}`,
    )
  if (options.devToken !== undefined) {
    logger.info(
      { event: 'dev_token' },
      `export TOKEN=${options.devToken}   # a dev token: sub ${DEV_SUBJECT}, valid 1h`,
    )
    const e = plan.endpoints.find((x) => x.auth !== null)
    if (e !== undefined)
      logger.info(
        { event: 'dev_token' },
        `  curl -H "authorization: Bearer $TOKEN"${e.method === 'GET' ? '' : ` -X ${e.method} -H 'content-type: application/json' -d '{…}'`} ${address.url}${e.route}`,
      )
  }

  return await new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ event: 'stopping', signal }, `stopping (${signal})`)
      Promise.all([gateway.close(), mocks?.close()]).then(
        () => {
          logger.flush()
          resolve(0)
        },
        (err: unknown) => {
          logger.error({ err }, 'error while stopping')
          resolve(1)
        },
      )
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
}

/**
 * The Redis that the gateway's shared stores use (the rate limits, the response cache), guarded
 * so that a Redis in trouble costs requests little:
 *
 * - down (not connected): commands are not sent at all, they are UNAVAILABLE at once (no
 *   offline queue: a request must not wait for Redis to come back);
 * - slow or frozen: a command that takes longer than `timeout` is a failure, and after
 *   `breaker.failures` failures in a row the store is skipped for `breaker.openFor` ms, then one
 *   probe command goes through and its success brings the store back. So a frozen Redis costs a
 *   handful of requests one timeout each, not every request.
 *
 * Callers get a result or UNAVAILABLE, never an exception, and decide what to do without the
 * store. One warning per outage, one line when it is over.
 */
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { RedisSettings } from '../plan/types.ts'
import { CircuitBreaker } from '../policies/breaker.ts'
import { type Clock, systemClock } from '../policies/clock.ts'

export type { RedisSettings }

/** Returned instead of a result when the store is skipped or the command failed. */
export const UNAVAILABLE: unique symbol = Symbol('store unavailable')

export interface RedisStoreOptions {
  readonly logger?: Logger | undefined
  /** Time for the breaker (tests use a fake one). */
  readonly clock?: Clock
  /**
   * Told about every failed or timed-out command ('command'), and every failed connection or
   * reconnection attempt ('connection'), for a metric.
   */
  readonly onFailure?: (kind: 'command' | 'connection') => void
  /** Told when the store becomes usable / unusable (breaker open, disconnected), for a gauge. */
  readonly onStateChange?: (up: boolean) => void
  /** What the gateway does while the store is unusable, for the warning (default: 'serving without it'). */
  readonly meanwhile?: string
  /** What is true again once it is back, for the line that says so (e.g. 'limits apply again'). */
  readonly whenBack?: string
}

type Handler = (message: string) => void

export class RedisStore {
  readonly name: string
  readonly settings: RedisSettings
  /** The ioredis client (enableOfflineQueue false, maxRetriesPerRequest 0, commandTimeout = settings.timeout). */
  readonly client: Redis
  readonly #options: RedisStoreOptions
  readonly #breaker: CircuitBreaker
  /** `${name}_store`: the `event` of its log lines. */
  readonly #event: string
  /** The subscriber-mode connection, made by the first subscribe(). */
  #subscriber: Redis | null = null
  readonly #handlers = new Map<string, Handler[]>()
  /** What onStateChange was last told (false until the first connection). */
  #up = false
  /** An outage was announced, and its end not yet. */
  #outage = false
  #closed = false

  constructor(name: string, settings: RedisSettings, options: RedisStoreOptions = {}) {
    this.name = name
    this.settings = settings
    this.#options = options
    this.#event = `${name.replaceAll(' ', '_')}_store`
    this.#breaker = new CircuitBreaker(
      {
        failures: settings.breaker.failures,
        window: Number.POSITIVE_INFINITY,
        consecutive: true,
        openFor: settings.breaker.openFor,
        halfOpenProbes: 1,
      },
      options.clock ?? systemClock,
    )
    this.client = this.#connect({
      // Fail at once while disconnected instead of queueing: a request must not wait for Redis to come back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: settings.timeout,
    })
    this.client.on('ready', () => {
      this.#update(null)
    })
    this.client.on('close', () => {
      this.#update('connection lost')
    })
    // Without a listener, a connection error would be an uncaught 'error' event and end the process.
    this.client.on('error', (err: Error) => {
      this.#options.onFailure?.('connection')
      this.#update(err.message)
    })
  }

  /** Connected, and the breaker closed (neither open nor waiting for its probe). */
  get up(): boolean {
    return this.client.status === 'ready' && this.#breaker.state === 'closed'
  }

  /**
   * Runs the command unless the store is skipped (breaker open, or not connected): then
   * UNAVAILABLE at once, without touching Redis. A command that throws or times out counts as a
   * failure and gives UNAVAILABLE (never throws). Half-open: one probe command at a time goes
   * through; its success closes the breaker.
   */
  async run<T>(command: (redis: Redis) => Promise<T>): Promise<T | typeof UNAVAILABLE> {
    if (this.client.status !== 'ready') return UNAVAILABLE
    const ticket = this.#breaker.tryAcquire()
    if (ticket === -1) return UNAVAILABLE
    let result: T
    try {
      result = await command(this.client)
    } catch (err) {
      this.#options.onFailure?.('command')
      this.#breaker.failure(ticket)
      const message = (err as Error).message
      this.#update(
        this.#breaker.state === 'open'
          ? `${this.settings.breaker.failures} commands failed in a row, the last: ${message}`
          : message,
      )
      return UNAVAILABLE
    }
    this.#breaker.success(ticket)
    // Only a store that was down can have come back with this success.
    if (!this.#up) this.#update(null)
    return result
  }

  /**
   * A second connection in subscriber mode (made on the first call); `onMessage` for each message
   * on the channel. It reconnects by itself and subscribes again. Resolves once subscribed, or
   * when Redis cannot be reached within the connect timeout: the subscription is then made when
   * it connects.
   */
  async subscribe(channel: string, onMessage: (message: string) => void): Promise<void> {
    const handlers = this.#handlers.get(channel)
    if (handlers !== undefined) {
      handlers.push(onMessage)
      return
    }
    this.#handlers.set(channel, [onMessage])
    const subscriber = (this.#subscriber ??= this.#subscriberConnection())
    const subscribed = subscriber.subscribe(channel).then(
      () => undefined,
      (err: unknown) => {
        if (!this.#closed)
          this.#options.logger?.warn(
            { event: this.#event, channel, err: (err as Error).message },
            `${this.name} store: cannot subscribe to ${channel} (${(err as Error).message})`,
          )
      },
    )
    // The caller waits for the subscription, not for an outage to end.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.#connectTimeout)
      void subscribed.then(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  /** Publishes through run(); false when the store is unavailable. */
  async publish(channel: string, message: string): Promise<boolean> {
    return (await this.run((redis) => redis.publish(channel, message))) !== UNAVAILABLE
  }

  /** Resolves once connected, or after `wait` ms (the store is then skipped until it connects). */
  async ready(wait = 2000): Promise<void> {
    const redis = this.client
    if (redis.status === 'ready') return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        redis.off('ready', done)
        resolve()
      }
      const timer = setTimeout(done, wait)
      redis.once('ready', done)
    })
  }

  async close(): Promise<void> {
    this.#closed = true
    await Promise.all([quit(this.client), this.#subscriber === null ? undefined : quit(this.#subscriber)])
  }

  get #connectTimeout(): number {
    return Math.max(1000, this.settings.timeout * 5)
  }

  #connect(options: {
    enableOfflineQueue: boolean
    maxRetriesPerRequest: number | null
    commandTimeout?: number
  }): Redis {
    return new Redis(this.settings.url, {
      ...options,
      connectTimeout: this.#connectTimeout,
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    })
  }

  #subscriberConnection(): Redis {
    // Its SUBSCRIBE waits in the offline queue while Redis is away (across reconnection attempts),
    // and ioredis subscribes again by itself after a reconnection.
    const subscriber = this.#connect({ enableOfflineQueue: true, maxRetriesPerRequest: null })
    subscriber.on('message', (channel: string, message: string) => {
      for (const handler of this.#handlers.get(channel) ?? []) {
        try {
          handler(message)
        } catch (err) {
          this.#options.logger?.error(
            { event: this.#event, channel, err: (err as Error).message },
            `${this.name} store: a handler of ${channel} failed`,
          )
        }
      }
    })
    // The command connection already tells about outages; this listener keeps the process alive.
    subscriber.on('error', () => {})
    return subscriber
  }

  /** Tells onStateChange, and logs the start (with `reason`: something failed) or the end of an outage. */
  #update(reason: string | null): void {
    if (this.#closed) return
    const up = this.up
    if (up !== this.#up) {
      this.#up = up
      this.#options.onStateChange?.(up)
    }
    const logger = this.#options.logger
    if (!up && reason !== null && !this.#outage) {
      this.#outage = true
      logger?.warn(
        { event: this.#event, err: reason },
        `${this.name} store unavailable (${reason}): ${this.#options.meanwhile ?? 'serving without it'} until it is back`,
      )
    } else if (up && this.#outage) {
      this.#outage = false
      const back = this.#options.whenBack
      logger?.warn({ event: this.#event }, `${this.name} store is back${back === undefined ? '' : `: ${back}`}`)
    }
  }
}

async function quit(redis: Redis): Promise<void> {
  // A QUIT would wait in the subscriber's offline queue for a Redis that is away.
  if (redis.status !== 'ready') {
    redis.disconnect()
    return
  }
  try {
    await redis.quit()
  } catch {
    redis.disconnect()
  }
}

/** TEMPORARY stand-in with the agreed API (replaced by the i11-store branch's module at merge). */
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Clock } from '../policies/clock.ts'

export const UNAVAILABLE: unique symbol = Symbol('unavailable')
export interface RedisSettings {
  readonly url: string
  readonly timeout: number
  readonly prefix: string
  readonly breaker: { readonly failures: number; readonly openFor: number }
}
export interface RedisStoreOptions {
  readonly logger?: Logger | undefined
  readonly clock?: Clock
  readonly onFailure?: () => void
  readonly onStateChange?: (up: boolean) => void
}
export class RedisStore {
  readonly settings: RedisSettings
  readonly client: Redis
  #sub: Redis | null = null
  constructor(_name: string, settings: RedisSettings, _options: RedisStoreOptions = {}) {
    this.settings = settings
    this.client = new Redis(settings.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: settings.timeout,
    })
    this.client.on('error', () => {})
  }
  get up(): boolean {
    return this.client.status === 'ready'
  }
  async run<T>(command: (redis: Redis) => Promise<T>): Promise<T | typeof UNAVAILABLE> {
    if (!this.up) return UNAVAILABLE
    try {
      return await command(this.client)
    } catch {
      return UNAVAILABLE
    }
  }
  async subscribe(channel: string, onMessage: (message: string) => void): Promise<void> {
    this.#sub ??= new Redis(this.settings.url)
    this.#sub.on('error', () => {})
    this.#sub.on('message', (c: string, m: string) => {
      if (c === channel) onMessage(m)
    })
    await this.#sub.subscribe(channel)
  }
  async publish(channel: string, message: string): Promise<boolean> {
    return (await this.run((r) => r.publish(channel, message))) !== UNAVAILABLE
  }
  async ready(wait = 2000): Promise<void> {
    if (this.up) return
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, wait)
      this.client.once('ready', () => {
        clearTimeout(t)
        resolve()
      })
    })
  }
  async close(): Promise<void> {
    this.client.disconnect()
    this.#sub?.disconnect()
  }
}

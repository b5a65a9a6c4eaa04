/**
 * Compressed forms of the answers many clients share: a cache entry's body, a coalesced run's
 * body. @fastify/compress compresses each answer it sends, so fifty clients of one shared body
 * cost fifty compressions; here a body is compressed once per encoding, the first time a client
 * asks for it (on the spot unless it is large), and the form lives as long as the body it was
 * made from (a WeakMap keyed by the body's bytes: while the cache entry, or the run's answer,
 * holds them).
 *
 * The client gets what the plugin would send it: the same negotiation (the encodings of
 * `gateway.compression` in their order, `*` and `x-gzip` read as gzip), the same threshold,
 * `x-no-compression`, the same zlib settings (brotli at quality 4). Answers written here carry
 * their Content-Encoding, so the plugin's onSend passes them through. Unlike the plugin's, such
 * an answer says `Vary: accept-encoding` even when it goes uncompressed (as nginx's gzip_vary
 * does): these are the answers a CDN stores, and one stored from a client that accepts no
 * encoding must not be served to every browser as it is.
 */
import { negotiate } from '@fastify/accept-negotiator'
import type { IncomingHttpHeaders } from 'node:http'
import { promisify } from 'node:util'
import zlib from 'node:zlib'

interface Compressor {
  readonly sync: (bytes: Buffer) => Buffer
  readonly async: (bytes: Buffer) => Promise<Buffer>
}

const BROTLI: zlib.BrotliOptions = { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4 } }
const brotli = promisify(zlib.brotliCompress)
const COMPRESSORS: Readonly<Record<string, Compressor>> = {
  br: { sync: (bytes) => zlib.brotliCompressSync(bytes, BROTLI), async: (bytes) => brotli(bytes, BROTLI) },
  gzip: { sync: zlib.gzipSync, async: promisify(zlib.gzip) },
  deflate: { sync: zlib.deflateSync, async: promisify(zlib.deflate) },
  zstd: { sync: zlib.zstdCompressSync, async: promisify(zlib.zstdCompress) },
}

/**
 * Bodies up to this size are compressed on the spot: zstd takes ~85 µs of CPU for 15 KB that way,
 * and ~350 µs handed to libuv's threadpool (measured here: the hand-off and a context per call),
 * which on a gateway given one core competes with it anyway. 256 KB costs 0.3–0.7 ms at once.
 * Larger bodies go to the threadpool, so one huge answer does not hold every other request.
 * The compression plugin is given the same limit for the answers it compresses.
 */
export const SYNC_LIMIT = 256 * 1024

const GZIP_ALIASES = /\*|x-gzip/gu

export interface CompressionSettings {
  readonly threshold: number
  readonly encodings: readonly string[]
}

export class Precompressed {
  readonly #threshold: number
  readonly #encodings: string[]
  /** Per body: its forms, as the compression in flight until it is done. */
  readonly #forms = new WeakMap<Buffer, Map<string, Buffer | Promise<Buffer>>>()

  constructor(settings: CompressionSettings) {
    this.#threshold = settings.threshold
    this.#encodings = settings.encodings.filter((encoding) => encoding in COMPRESSORS)
  }

  /** Whether `bytes` is large enough to be sent compressed to a client that accepts it. */
  compressible(bytes: Buffer): boolean {
    return bytes.length >= this.#threshold && this.#encodings.length > 0
  }

  /** The encoding a client with these request headers gets `bytes` in, or null: as they are. */
  choose(headers: IncomingHttpHeaders, bytes: Buffer): string | null {
    const accepted = headers['accept-encoding']
    if (accepted === undefined || !this.compressible(bytes) || headers['x-no-compression'] !== undefined) return null
    return negotiate(accepted.toLowerCase().replace(GZIP_ALIASES, 'gzip'), this.#encodings)
  }

  /**
   * `bytes` in `encoding`: compressed the first time (on the spot, or in libuv's threadpool when
   * large), the same Buffer after. Clients that ask while a large one is being compressed wait for
   * that one compression.
   */
  form(bytes: Buffer, encoding: string): Buffer | Promise<Buffer> {
    const forms = this.#forms.get(bytes) ?? new Map<string, Buffer | Promise<Buffer>>()
    if (forms.size === 0) this.#forms.set(bytes, forms)
    const known = forms.get(encoding)
    if (known !== undefined) return known
    const compressor = COMPRESSORS[encoding] as Compressor
    if (bytes.length <= SYNC_LIMIT) {
      try {
        const form = compressor.sync(bytes)
        forms.set(encoding, form)
        return form
      } catch (err) {
        // It should not fail; if it does, this client gets the body as it is, and the next one tries again.
        return Promise.reject(err as Error)
      }
    }
    const compressed = compressor.async(bytes).then((form) => {
      forms.set(encoding, form)
      return form
    })
    // A compression that fails is forgotten: the next client tries again.
    compressed.catch(() => forms.delete(encoding))
    forms.set(encoding, compressed)
    return compressed
  }
}

/** Adds `value` to the answer's Vary, keeping what is there (CORS's Origin, the cache's headers). */
export function varyOn(current: unknown, value: string): string {
  if (typeof current !== 'string' || current === '') return value
  const names = current.split(',').map((name) => name.trim().toLowerCase())
  if (names.includes('*')) return current
  let out = current
  for (const name of value.split(',')) {
    const trimmed = name.trim()
    if (trimmed !== '' && !names.includes(trimmed.toLowerCase())) out += `, ${trimmed}`
  }
  return out
}

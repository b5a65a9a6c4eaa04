/**
 * Headers that belong to one connection, not to the message (RFC 9110 §7.6.1): never
 * forwarded, in either direction, and not settable from the config.
 */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** Managed by the HTTP client itself. */
export const RESERVED = new Set(['host', 'content-length'])

export function isForbiddenHeader(name: string): boolean {
  const lower = name.toLowerCase()
  return HOP_BY_HOP.has(lower) || RESERVED.has(lower)
}

/**
 * Headers that differ per request without changing the answer: the request id and the trace
 * context. Coalescing and the call cache leave them out of their keys; a response cache needs no
 * entry per value of them.
 */
export const PER_REQUEST: ReadonlySet<string> = new Set(['x-request-id', 'traceparent', 'tracestate', 'baggage'])

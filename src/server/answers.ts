/**
 * Every answer Baton writes, in one place: the JSON body with its request id, the error
 * envelope with a stable code, fastify's own errors mapped onto codes, and the errors Node
 * reports before a request exists (written to the socket, in the same envelope, with a
 * request id of their own).
 */
import { randomUUID } from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { type ErrorCode, ErrorCodes, errorEnvelope } from '../errors.ts'
import type { SpanIds } from '../observability/outcome.ts'
import type { GatewayAnswer } from '../runtime/execute.ts'
import { type Precompressed, varyOn } from './precompress.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The error code of an answer written by sendError (for its log line); null otherwise. */
    answerCode: ErrorCode | null
    /** How much of this request's answer is already counted and logged: 0, LOGGED or RECORDED. */
    recorded: number
    /** The run of another request that answered this one (endpoint coalescing): its request id and server span; null otherwise. */
    sharedRun: { readonly requestId: string; readonly span: SpanIds | null } | null
  }
}

/** The answer has its log line (an edge rejection's): it is still to be counted. */
export const LOGGED = 1
/** The answer is counted and logged (by its run's observers, or once by the gateway's onSend hook). */
export const RECORDED = 2

const JSON_TYPE = 'application/json; charset=utf-8'
const REQUEST_ID = /^[\w.:-]{1,200}$/

export function send(reply: FastifyReply, answer: GatewayAnswer, requestId: string): FastifyReply {
  let text: string
  try {
    text = JSON.stringify(answer.body)
  } catch {
    // A service's answer nested too deeply to serialise (RangeError), or otherwise unserialisable.
    return sendError(reply, 'RESPONSE_ASSEMBLY_FAILED', requestId)
  }
  reply.code(answer.status)
  reply.header('content-type', JSON_TYPE)
  reply.header('x-request-id', requestId)
  // Answers are made per request unless an endpoint's cache says otherwise (it writes its own Cache-Control).
  reply.header('cache-control', 'no-store')
  if (answer.headers !== null) for (const name in answer.headers) reply.header(name, answer.headers[name])
  return reply.send(text)
}

/**
 * An answer already serialised (a cached or shared one: as bytes, encoded once for every client);
 * `text` null for a 304. Given `precompressed`, a client that accepts an encoding gets the body's
 * compressed form, made once for every client of these bytes (the compression plugin then leaves it).
 */
export function sendText(
  reply: FastifyReply,
  status: number,
  text: string | Buffer | null,
  headers: Readonly<Record<string, string>>,
  requestId: string,
  precompressed: Precompressed | null = null,
): FastifyReply | Promise<FastifyReply> {
  reply.code(status)
  if (text !== null) reply.header('content-type', JSON_TYPE)
  reply.header('x-request-id', requestId)
  for (const name in headers) {
    const value = headers[name] as string
    // CORS has already said Vary: Origin; the cache's own Vary adds to it.
    reply.header(name, name === 'vary' ? varyOn(reply.getHeader('vary'), value) : value)
  }
  if (precompressed === null || text === null || typeof text === 'string' || !precompressed.compressible(text))
    return reply.send(text ?? undefined)
  // Whatever this client gets, another may get it compressed: a cache in between must tell them apart.
  reply.header('vary', varyOn(reply.getHeader('vary'), 'accept-encoding'))
  const encoding = precompressed.choose(reply.request.headers, text)
  if (encoding === null) return reply.send(text)
  reply.header('content-encoding', encoding)
  const form = precompressed.form(text, encoding)
  if (Buffer.isBuffer(form)) return reply.send(form)
  return form.then(
    (bytes) => reply.send(bytes),
    () => {
      reply.removeHeader('content-encoding')
      return reply.send(text)
    },
  )
}

export function sendError(
  reply: FastifyReply,
  code: ErrorCode,
  requestId: string,
  message: string = ErrorCodes[code].message,
): FastifyReply {
  reply.request.answerCode = code
  return send(reply, { status: ErrorCodes[code].status, body: errorEnvelope(code, message), headers: null }, requestId)
}

/** The client's x-request-id when it is a sane token, else a fresh UUID. Cached on the request. */
export function requestIdOf(req: FastifyRequest): string {
  if (req.id !== '') return req.id
  const given = req.headers['x-request-id']
  const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
  req.id = id
  return id
}

export function errorCodeOf(err: FastifyError): ErrorCode {
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_JSON':
    case 'FST_ERR_CTP_INVALID_JSON_BODY': // fastify 5: also __proto__ / constructor keys
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'INVALID_JSON'
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'PAYLOAD_TOO_LARGE'
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return err.statusCode === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'BAD_REQUEST'
  }
  // secure-json-parse rejects __proto__ / constructor keys with a SyntaxError.
  if (err instanceof SyntaxError) return 'INVALID_JSON'
  if (err.statusCode === 400) return 'BAD_REQUEST'
  if (err.statusCode === 413) return 'PAYLOAD_TOO_LARGE'
  if (err.statusCode === 415) return 'UNSUPPORTED_MEDIA_TYPE'
  return 'INTERNAL_ERROR'
}

/** What clientError wrote: the status, the code and the request id it made up; null when it wrote nothing. */
export interface SocketAnswer {
  readonly status: number
  readonly code: ErrorCode
  readonly requestId: string
}

/**
 * Errors Node reports before a request exists (slow or oversized heads, garbage): answered in
 * the envelope, with a fresh request id (the client's cannot be read), then the socket is closed.
 */
export function clientError(err: Error & { code?: string }, socket: Socket): SocketAnswer | null {
  if (err.code === 'ECONNRESET' || socket.destroyed) return null
  const code: ErrorCode =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 'REQUEST_TIMEOUT'
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? 'HEADERS_TOO_LARGE'
        : 'BAD_REQUEST'
  const { status } = ErrorCodes[code]
  const body = JSON.stringify(errorEnvelope(code))
  const requestId = randomUUID()
  const written = socket.writable
  if (written) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: ${JSON_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy()
  return written ? { status, code, requestId } : null
}

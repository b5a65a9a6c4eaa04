import { EmptyPathValueError } from './errors.ts'
import type { TemplatePart } from './types.ts'

/**
 * Percent-encodes one interpolated value for a URL path segment. On top of
 * encodeURIComponent (which leaves '.' alone), a value made only of dots is encoded as
 * %2E…, so `/files/${name}` can never become `/files/..`. A lone surrogate, which would
 * make encodeURIComponent throw, is replaced by U+FFFD first. An empty value (null and
 * missing ones are empty too) throws EmptyPathValueError: `/carts/${id}` must never become
 * `/carts/`, the collection.
 */
export function encodePathValue(value: string, part?: TemplatePart): string {
  if (value === '') throw new EmptyPathValueError(part ?? { source: 'a path value', roots: [] })
  const encoded = encodeURIComponent(value.isWellFormed() ? value : value.toWellFormed())
  return isDots(value) ? encoded.replaceAll('.', '%2E') : encoded
}

function isDots(value: string): boolean {
  if (value.length === 0) return false
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) !== 46) return false
  return true
}

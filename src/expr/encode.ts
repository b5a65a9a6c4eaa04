/**
 * Percent-encodes one interpolated value for a URL path segment. On top of
 * encodeURIComponent (which leaves '.' alone), a value made only of dots is encoded as
 * %2E…, so `/files/${name}` can never become `/files/..`. A lone surrogate, which would
 * make encodeURIComponent throw, is replaced by U+FFFD first.
 */
export function encodePathValue(value: string): string {
  const encoded = encodeURIComponent(value.isWellFormed() ? value : value.toWellFormed())
  return isDots(value) ? encoded.replaceAll('.', '%2E') : encoded
}

function isDots(value: string): boolean {
  if (value.length === 0) return false
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) !== 46) return false
  return true
}

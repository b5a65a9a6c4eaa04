/** Durations and sizes as users write them: `200ms`, `2s`, `1.5m`, `1h`; `512kb`, `1mb`. A bare number is ms / bytes. */

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/
const DURATION_FACTOR: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

export const DURATION_PATTERN = DURATION.source
export const DURATION_HINT = 'write a duration like 200ms, 2s, 1.5m or 1h (a bare number means milliseconds)'

export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined
  const m = DURATION.exec(value.trim())
  if (m === null) return undefined
  return Number(m[1]) * (DURATION_FACTOR[m[2] as string] as number)
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)$/i
const SIZE_FACTOR: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }

export const SIZE_PATTERN = SIZE.source
export const SIZE_HINT = 'write a size like 512kb or 1mb (a bare number means bytes)'

export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined
  const m = SIZE.exec(value.trim())
  if (m === null) return undefined
  return Math.floor(Number(m[1]) * (SIZE_FACTOR[(m[2] as string).toLowerCase()] as number))
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return '—'
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

/**
 * A batched forEach (DataLoader's idea; Tailcall's batchKey): instead of one request per item,
 * the distinct keys of the items are gathered, split into batches of at most `size`, and each
 * batch is one request whose expressions read its keys as `ids`. The answer, a JSON list, is
 * matched back to the items by each result's `key` field. Keys match as text (7 and "7" are one
 * key): they travel as text in a URL, and services answer with either.
 *
 * An item with no key, with no match in its batch's answer, or whose batch failed takes
 * itemFallback; without it the call fails (the first such item's reason). Batches run
 * `concurrency` at a time, each as any call's request (retries, breaker, the pipeline).
 */
import type { BatchPlan, CallPlan } from '../plan/types.ts'
import type { ServiceClient } from '../upstream/client.ts'
import { CallError } from '../upstream/failure.ts'
import type { CallRequest, CallResponse } from '../upstream/pipeline.ts'
import { type ForEachHost, inTurn, itemFailure, listOf, withItems } from './foreach.ts'
import { buildRequest } from './request.ts'
import { send } from './retry.ts'

export async function sendBatches(
  host: ForEachHost,
  call: CallPlan,
  batch: BatchPlan,
  client: ServiceClient,
): Promise<CallResponse> {
  const each = call.forEach!
  const scope = host.scope
  const items = listOf(each, call, each.items(scope) ?? [])
  // The distinct keys, in the order first met, and per item its key's index (-1: it has none).
  const index = new Map<string, number>()
  const keys: unknown[] = []
  const texts: string[] = []
  const slot = new Int32Array(items.length)
  let keyless: CallError | null = null
  for (let i = 0; i < items.length; i++) {
    scope.item = items[i]
    const value = batch.itemKey(scope)
    const text = keyText(value)
    if (text === null) {
      slot[i] = -1
      keyless ??= new CallError(
        'expression',
        `item ${i} of ${each.source} has no key: ${batch.source} is missing or empty`,
      )
      continue
    }
    let at = index.get(text)
    if (at === undefined) {
      at = keys.length
      index.set(text, at)
      keys.push(value)
      texts.push(text)
    }
    slot[i] = at
  }
  // An item that cannot be asked for fails the call before anything is sent, unless it can fall back.
  if (keyless !== null && each.itemFallback === null) {
    scope.item = undefined
    throw keyless
  }
  const size = batch.size
  const count = Math.ceil(keys.length / size)
  const requests = new Array<CallRequest>(count)
  for (let b = 0; b < count; b++) {
    // While a batch's request is built, the scope's item slot holds its keys: what `ids` reads.
    scope.item = keys.slice(b * size, (b + 1) * size)
    requests[b] = buildRequest(call, host)
  }
  scope.item = undefined
  /** Per key, its result in the answer; undefined when the answer has none. */
  const results = new Array<unknown>(keys.length)
  /** Per batch, its failure when its items take itemFallback. */
  let failures: (CallError | undefined)[] | null = null
  await inTurn(host, each.concurrency, count, async (b, group) => {
    const first = b * size
    const end = Math.min(first + size, keys.length)
    host.batchSent(call, end - first)
    try {
      const answer = (await send(host, call, client, requests[b] as CallRequest, group)).body
      if (!Array.isArray(answer)) throw new CallError('bad_body', `the answer to a batch of ${call.name} is not a list`)
      match(answer, batch.key, index, first, end, results)
    } catch (err) {
      ;(failures ??= new Array<CallError | undefined>(count))[b] = itemFailure(each, err)
    }
  })
  const batchFailures = failures as (CallError | undefined)[] | null
  return withItems(
    host,
    call,
    items,
    (i) => results[slot[i] as number],
    (i) => {
      const at = slot[i] as number
      if (at === -1) return keyless as CallError
      const failure = batchFailures?.[Math.floor(at / size)]
      if (failure !== undefined) return failure
      if (results[at] !== undefined) return undefined
      return new CallError('no_match', `no ${batch.key} ${texts[at] as string} in the answer to its batch`)
    },
  )
}

/** Files each result of a batch's answer under its key; the first result for a key wins, keys not asked for are ignored. */
function match(
  answer: readonly unknown[],
  field: string,
  index: ReadonlyMap<string, number>,
  first: number,
  end: number,
  results: unknown[],
): void {
  for (const result of answer) {
    if (result === null || typeof result !== 'object' || !Object.hasOwn(result, field)) continue
    const text = keyText((result as Record<string, unknown>)[field])
    if (text === null) continue
    const at = index.get(text)
    if (at !== undefined && at >= first && at < end && results[at] === undefined) results[at] = result
  }
}

/** A key as text: a non-empty string, a number or a boolean; null for anything else (no key). */
function keyText(value: unknown): string | null {
  if (typeof value === 'string') return value === '' ? null : value
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return null
}

/**
 * A forEach call: one request per item of its list (at most `maxItems` items; a longer list is
 * refused, not cut); identical requests are made once; at most `concurrency` in flight. An item
 * whose request fails takes `itemFallback` when there is one (the list keeps its length and
 * order); otherwise the first failed item fails the call, and its siblings still in flight are
 * aborted. A batched forEach (one request per batch of keys) is in batch.ts; the pieces both
 * share are here.
 */
import type { CallPlan, ForEachPlan } from '../plan/types.ts'
import type { TryCancel } from '../upstream/cancel.ts'
import type { ServiceClient } from '../upstream/client.ts'
import { CallError, toCallError } from '../upstream/failure.ts'
import type { CallRequest, CallResponse, TryListener, TryOwner } from '../upstream/pipeline.ts'
import { CANCELLED } from '../upstream/stages/deadline.ts'
import { buildRequest, type RequestState, requestBody, requestPath } from './request.ts'
import { type RetryHost, send } from './retry.ts'

export interface ForEachHost extends RetryHost, RequestState {
  /** Some items took their itemFallback: the call's section is partial. `error` is the first item's failure. */
  itemsFellBack(call: CallPlan, error: CallError): void
  /** A batched call is sending a batch of `size` keys. */
  batchSent(call: CallPlan, size: number): void
}

/** The tries of one forEach call: held by the request, and by the group so that a failed item can abort its siblings. */
export class Group implements TryOwner {
  readonly #host: ForEachHost
  readonly #held = new Set<TryCancel>()
  readonly deadlineAt: number
  readonly listener: TryListener | null

  constructor(host: ForEachHost) {
    this.#host = host
    this.deadlineAt = host.deadlineAt
    this.listener = host.listener
  }

  hold(cancel: TryCancel): void {
    this.#host.hold(cancel)
    this.#held.add(cancel)
  }

  drop(cancel: TryCancel): void {
    this.#host.drop(cancel)
    this.#held.delete(cancel)
  }

  abort(): void {
    for (const cancel of this.#held) cancel.abort(CANCELLED)
  }
}

export async function sendEach(host: ForEachHost, call: CallPlan, client: ServiceClient): Promise<CallResponse> {
  const each = call.forEach!
  const scope = host.scope
  const items = listOf(each, call, each.items(scope) ?? [])
  const unique = new Map<string, number>()
  const requests: CallRequest[] = []
  const slot = new Int32Array(items.length)
  for (let i = 0; i < items.length; i++) {
    scope.item = items[i]
    // Items are told apart by path and body (the method is the call's): the rest of a request is made once per distinct one.
    const path = requestPath(call, scope)
    const body = requestBody(call, host)
    const key = body === null ? path : `${path} ${body}`
    let at = unique.get(key)
    if (at === undefined) {
      at = requests.length
      unique.set(key, at)
      requests.push(buildRequest(call, host, path, body))
    }
    slot[i] = at
  }
  scope.item = undefined
  const results = new Array<unknown>(requests.length)
  /** Per request, its failure when it took the item fallback. */
  let failures: (CallError | undefined)[] | null = null
  await inTurn(host, each.concurrency, requests.length, async (at, group) => {
    try {
      results[at] = (await send(host, call, client, requests[at] as CallRequest, group)).body
    } catch (err) {
      ;(failures ??= new Array<CallError | undefined>(requests.length))[at] = itemFailure(each, err)
    }
  })
  const itemFailures = failures as (CallError | undefined)[] | null
  return withItems(
    host,
    call,
    items,
    (i) => results[slot[i] as number],
    itemFailures === null ? null : (i) => itemFailures[slot[i] as number],
  )
}

/**
 * Runs task(0), task(1), … task(count - 1), at most `concurrency` at a time, on the tries of one
 * group. The first task that throws stops the others from starting, aborts those in flight, and
 * its error is the call's.
 */
export async function inTurn(
  host: ForEachHost,
  concurrency: number,
  count: number,
  task: (at: number, group: Group) => Promise<void>,
): Promise<void> {
  const group = new Group(host)
  let failed = false
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count && !host.done && !failed) await task(next++, group)
  }
  const workers: Promise<void>[] = []
  for (let w = 0; w < Math.min(concurrency, count); w++) workers.push(worker())
  try {
    await Promise.all(workers)
  } catch (err) {
    failed = true
    group.abort()
    throw err
  }
}

/**
 * A failed request's error, when its items take itemFallback; thrown again when the failure is
 * the call's: there is no itemFallback, or it is the deadline, the request decided, or the
 * client's own mistake.
 */
export function itemFailure(each: ForEachPlan, err: unknown): CallError {
  const error = toCallError(err)
  if (
    each.itemFallback === null ||
    error.kind === 'aborted' ||
    error.kind === 'deadline' ||
    error.kind === 'bad_request'
  )
    throw error
  return error
}

/**
 * The call's value: per item its result, or its itemFallback when it failed (a failure with no
 * itemFallback fails the call); with `into`, each item with its result under that name.
 */
export function withItems(
  host: ForEachHost,
  call: CallPlan,
  items: readonly unknown[],
  resultOf: (i: number) => unknown,
  /** null when no item failed. */
  failureOf: ((i: number) => CallError | undefined) | null,
): CallResponse {
  const each = call.forEach!
  const { into, itemFallback } = each
  const scope = host.scope
  let firstFailure: CallError | undefined
  const value = items.map((item: unknown, i) => {
    const failure = failureOf?.(i)
    let result: unknown
    if (failure === undefined) {
      result = resultOf(i)
    } else {
      if (itemFallback === null) throw failure
      firstFailure ??= failure
      scope.item = item
      result = itemFallback(scope) ?? null
    }
    if (into === null) return result
    // A scalar item becomes { <as>: item, <into>: result }; an object item gets the result under <into>.
    return item !== null && typeof item === 'object' && !Array.isArray(item)
      ? { ...item, [into]: result }
      : { [each.as]: item, [into]: result }
  })
  scope.item = undefined
  if (firstFailure !== undefined) host.itemsFellBack(call, firstFailure)
  return { status: 200, headers: {}, body: value }
}

/** The items, or the reason there are none: not a list, or longer than maxItems (the client's mistake when read from the request). */
export function listOf(each: ForEachPlan, call: CallPlan, items: unknown): unknown[] {
  if (!Array.isArray(items)) {
    throw new CallError(
      each.fromRequest ? 'bad_request' : 'expression',
      `${each.source} is not a list (forEach of ${call.name})`,
    )
  }
  if (items.length > each.maxItems) {
    throw new CallError(
      each.fromRequest ? 'bad_request' : 'too_many_items',
      `${each.source} has ${items.length} items, over the ${each.maxItems} that ${call.name} accepts (maxItems)`,
    )
  }
  return items
}

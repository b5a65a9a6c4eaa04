/**
 * A forEach call: one request per item of its list (at most `maxItems` items; a longer list is
 * refused, not cut); identical requests are made once; at most `concurrency` in flight. An item
 * whose request fails takes `itemFallback` when there is one (the list keeps its length and
 * order); otherwise the first failed item fails the call, and its siblings still in flight are
 * aborted.
 */
import type { CallPlan, ForEachPlan } from '../plan/types.ts'
import type { ServiceClient } from '../upstream/client.ts'
import { CallError, toCallError } from '../upstream/failure.ts'
import type { CallRequest, CallResponse, TryListener, TryOwner } from '../upstream/pipeline.ts'
import { CANCELLED } from '../upstream/stages/deadline.ts'
import { buildRequest, type RequestState } from './request.ts'
import { type RetryHost, send } from './retry.ts'

export interface ForEachHost extends RetryHost, RequestState {
  /** Some items took their itemFallback: the call's section is partial. `error` is the first item's failure. */
  itemsFellBack(call: CallPlan, error: CallError): void
}

/** The tries of one forEach call: held by the request, and by the group so that a failed item can abort its siblings. */
class Group implements TryOwner {
  readonly #host: ForEachHost
  readonly #held = new Set<AbortController>()
  readonly deadlineAt: number
  readonly listener: TryListener | null

  constructor(host: ForEachHost) {
    this.#host = host
    this.deadlineAt = host.deadlineAt
    this.listener = host.listener
  }

  hold(controller: AbortController): void {
    this.#host.hold(controller)
    this.#held.add(controller)
  }

  drop(controller: AbortController): void {
    this.#host.drop(controller)
    this.#held.delete(controller)
  }

  abort(): void {
    for (const controller of this.#held) controller.abort(CANCELLED)
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
    const req = buildRequest(call, host)
    const key = `${req.method} ${req.path} ${req.body ?? ''}`
    let at = unique.get(key)
    if (at === undefined) {
      at = requests.length
      unique.set(key, at)
      requests.push(req)
    }
    slot[i] = at
  }
  scope.item = undefined
  const results = new Array<unknown>(requests.length)
  /** Per request, its failure when it took the item fallback. */
  let failures: (CallError | undefined)[] | null = null
  const group = new Group(host)
  const itemFallback = each.itemFallback
  let failed = false
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < requests.length && !host.done && !failed) {
      const at = next++
      try {
        results[at] = (await send(host, call, client, requests[at] as CallRequest, group)).body
      } catch (err) {
        const error = toCallError(err)
        // The deadline, the request decided, the client's own mistake: the call's fate, not one item's.
        if (
          itemFallback === null ||
          error.kind === 'aborted' ||
          error.kind === 'deadline' ||
          error.kind === 'bad_request'
        )
          throw error
        ;(failures ??= new Array<CallError | undefined>(requests.length))[at] = error
      }
    }
  }
  const workers: Promise<void>[] = []
  for (let w = 0; w < Math.min(each.concurrency, requests.length); w++) workers.push(worker())
  try {
    await Promise.all(workers)
  } catch (err) {
    failed = true
    group.abort()
    throw err
  }
  const into = each.into
  const itemFailures = failures as (CallError | undefined)[] | null
  let firstFailure: CallError | undefined
  const value = items.map((item: unknown, i) => {
    const at = slot[i] as number
    let result = results[at]
    const failure = itemFailures?.[at]
    if (failure !== undefined && itemFallback !== null) {
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
function listOf(each: ForEachPlan, call: CallPlan, items: unknown): unknown[] {
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

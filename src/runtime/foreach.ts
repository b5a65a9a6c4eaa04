/**
 * A forEach call: one request per item of its list; identical requests are made once; at most
 * `concurrency` in flight. The first item that fails fails the call, and its siblings still in
 * flight are aborted.
 */
import type { CallPlan } from '../plan/types.ts'
import type { ServiceClient } from '../upstream/client.ts'
import { CallError } from '../upstream/failure.ts'
import type { CallRequest, CallResponse, TryListener, TryOwner } from '../upstream/pipeline.ts'
import { CANCELLED } from '../upstream/stages/deadline.ts'
import { buildRequest, type RequestState } from './request.ts'
import { type RetryHost, send } from './retry.ts'

export interface ForEachHost extends RetryHost, RequestState {}

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
  const items = each.items(scope) ?? []
  if (!Array.isArray(items)) throw new CallError('expression', `forEach of ${call.name} is not a list`)
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
  const group = new Group(host)
  let failed = false
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < requests.length && !host.done && !failed) {
      const at = next++
      const res = await send(host, call, client, requests[at] as CallRequest, group)
      results[at] = res.body
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
  const value = items.map((item: unknown, i) => {
    const result = results[slot[i] as number]
    if (into === null) return result
    return item !== null && typeof item === 'object' && !Array.isArray(item) ? { ...item, [into]: result } : result
  })
  return { status: 200, headers: {}, body: value }
}

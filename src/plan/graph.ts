/** The call graph of one endpoint: cycles (named, for the error) and sequence levels. */

/** Returns a cycle as a list of node indexes (first repeated at the end), or null. */
export function findCycle(dependsOn: readonly (readonly number[])[]): number[] | null {
  const state = new Uint8Array(dependsOn.length) // 0 new, 1 on the stack, 2 done
  const stack: number[] = []
  const visit = (node: number): number[] | null => {
    state[node] = 1
    stack.push(node)
    for (const dep of dependsOn[node] ?? []) {
      if (state[dep] === 1) return [...stack.slice(stack.indexOf(dep)), dep]
      if (state[dep] === 0) {
        const cycle = visit(dep)
        if (cycle !== null) return cycle
      }
    }
    stack.pop()
    state[node] = 2
    return null
  }
  for (let i = 0; i < dependsOn.length; i++) {
    if (state[i] === 0) {
      const cycle = visit(i)
      if (cycle !== null) return cycle
    }
  }
  return null
}

/** Level 1 for calls without dependencies, else 1 + the deepest dependency. Assumes no cycle. */
export function levels(dependsOn: readonly (readonly number[])[]): number[] {
  const out = new Array<number>(dependsOn.length).fill(0)
  const level = (node: number): number => {
    if (out[node] !== 0) return out[node] as number
    let max = 0
    for (const dep of dependsOn[node] ?? []) max = Math.max(max, level(dep))
    out[node] = max + 1
    return max + 1
  }
  for (let i = 0; i < dependsOn.length; i++) level(i)
  return out
}

/**
 * Methods on strings and lists (size() on maps too). A method called on null or undefined
 * gives undefined, like member access (the compiler handles that before calling here); on
 * a value of the wrong kind it throws. No regex method: a user-supplied pattern is a ReDoS.
 */
import { ExpressionEvalError } from './errors.ts'
import type { Builtin } from './functions.ts'
import { size } from './functions.ts'
import { deepEqual, describe, listContains, toText } from './values.ts'

/** `call(at, receiver, ...args)`; the receiver is never null or undefined. */
export type Method = Builtin

function wrongReceiver(name: string, expected: string, receiver: unknown, at: number): never {
  throw new ExpressionEvalError(`${name}() is a method of ${expected}, not of ${describe(receiver)}`, at)
}

function needString(name: string, value: unknown, at: number): string {
  if (typeof value === 'string') return value
  throw new ExpressionEvalError(`${name}() needs a string argument, got ${describe(value)}`, at)
}

function stringMethod(
  name: string,
  minArgs: number,
  maxArgs: number,
  call: (text: string, args: unknown[], at: number) => unknown,
): Method {
  return {
    minArgs,
    maxArgs,
    call: (at, receiver, ...args) =>
      typeof receiver === 'string' ? call(receiver, args, at) : wrongReceiver(name, 'strings', receiver, at),
  }
}

function listMethod(
  name: string,
  minArgs: number,
  maxArgs: number,
  call: (list: unknown[], args: unknown[], at: number) => unknown,
): Method {
  return {
    minArgs,
    maxArgs,
    call: (at, receiver, ...args) =>
      Array.isArray(receiver) ? call(receiver, args, at) : wrongReceiver(name, 'lists', receiver, at),
  }
}

const lowerAscii = (text: string): string => text.replace(/[A-Z]+/g, (run) => run.toLowerCase())
const upperAscii = (text: string): string => text.replace(/[a-z]+/g, (run) => run.toUpperCase())

function unique(list: unknown[]): unknown[] {
  const seen = new Set<unknown>()
  const out: unknown[] = []
  for (const item of list) {
    if (item !== null && typeof item === 'object') {
      if (!out.some((kept) => deepEqual(kept, item))) out.push(item)
    } else if (!seen.has(item ?? null)) {
      // null and undefined are equal, as with ==.
      seen.add(item ?? null)
      out.push(item)
    }
  }
  return out
}

export const METHODS: ReadonlyMap<string, Method> = new Map<string, Method>([
  ['size', { minArgs: 0, maxArgs: 0, call: (at, receiver) => size(at, receiver) }],
  [
    'contains',
    {
      minArgs: 1,
      maxArgs: 1,
      call: (at, receiver, value) => {
        if (typeof receiver === 'string') return receiver.includes(needString('contains', value, at))
        if (Array.isArray(receiver)) return listContains(receiver, value)
        return wrongReceiver('contains', "strings and lists (for a map key, use 'key in map')", receiver, at)
      },
    },
  ],
  [
    'startsWith',
    stringMethod('startsWith', 1, 1, (text, [prefix], at) => text.startsWith(needString('startsWith', prefix, at))),
  ],
  [
    'endsWith',
    stringMethod('endsWith', 1, 1, (text, [suffix], at) => text.endsWith(needString('endsWith', suffix, at))),
  ],
  ['lowerAscii', stringMethod('lowerAscii', 0, 0, lowerAscii)],
  ['upperAscii', stringMethod('upperAscii', 0, 0, upperAscii)],
  ['trim', stringMethod('trim', 0, 0, (text) => text.trim())],
  [
    'split',
    stringMethod('split', 1, 1, (text, [separator], at) => {
      const by = needString('split', separator, at)
      // An empty separator splits into characters (code points), never into half surrogate pairs.
      return by === '' ? Array.from(text) : text.split(by)
    }),
  ],
  [
    'replace',
    stringMethod('replace', 2, 2, (text, [search, replacement], at) => {
      const from = needString('replace', search, at)
      const to = needString('replace', replacement, at)
      if (from === '') throw new ExpressionEvalError('replace() needs a non-empty string to search for', at)
      // A function replacement, so that "$&" and "$1" in `to` are taken literally.
      return text.replaceAll(from, () => to)
    }),
  ],
  [
    'join',
    listMethod('join', 0, 1, (list, args, at) => {
      const by = args.length === 0 ? '' : needString('join', args[0], at)
      let out = ''
      for (let i = 0; i < list.length; i++) out += (i === 0 ? '' : by) + toText(list[i])
      return out
    }),
  ],
  ['unique', listMethod('unique', 0, 0, unique)],
])

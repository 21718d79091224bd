/**
 * Exact dedup: a key from normalized chosen fields (NFKC, whitespace collapsed, lower case unless
 * case-sensitive); among rows with one key, keep the one with the longest answer (Platypus) or the
 * first. Two passes over the input: the first builds the key index (a 20-byte digest per distinct key,
 * 4 bytes per row), the second writes the kept rows in their original order.
 */
import { createHash } from "node:crypto"
import * as path from "node:path"
import type { ConcreteFormat } from "./formats.ts"
import { answerText, joinFields } from "./formats.ts"
import { GrowableInt32 } from "./growable.ts"
import type { Located } from "./jsonl.ts"
import { keyText } from "./text.ts"

export interface ExactOptions {
  readonly fields: ReadonlyArray<string>
  readonly keep: "longest" | "first"
  readonly caseSensitive: boolean
}

export interface ExactIndex {
  /** cluster id per row, -1 for rows whose key text is empty (never deduplicated) */
  readonly clusterOf: GrowableInt32
  /** the kept row of each cluster */
  readonly best: GrowableInt32
  /** where each cluster's kept row is, for the report */
  readonly bestAt: Array<string>
  readonly emptyKeys: number
}

const digest = (s: string): string => createHash("sha1").update(s).digest("base64")

export const buildExactIndex = async (
  rows: AsyncIterable<Located<unknown>>,
  format: ConcreteFormat,
  o: ExactOptions,
  onRow?: (index: number) => void
): Promise<ExactIndex> => {
  const ids = new Map<string, number>()
  const clusterOf = new GrowableInt32()
  const best = new GrowableInt32()
  const bestLen: Array<number> = []
  const bestAt: Array<string> = []
  let emptyKeys = 0
  for await (const r of rows) {
    const row = r.row as Record<string, unknown>
    const text = keyText(joinFields(row, o.fields), o.caseSensitive)
    if (text.length === 0) {
      emptyKeys++
      clusterOf.push(-1)
      continue
    }
    const key = digest(text)
    const len = o.keep === "longest" ? answerText(row, format).length : 0
    const at = `${path.basename(r.file)}:${r.line}`
    let id = ids.get(key)
    if (id === undefined) {
      id = best.length
      ids.set(key, id)
      best.push(r.index)
      bestLen.push(len)
      bestAt.push(at)
    } else if (len > bestLen[id]!) {
      // strictly longer: ties keep the first seen
      best.data[id] = r.index
      bestLen[id] = len
      bestAt[id] = at
    }
    clusterOf.push(id)
    onRow?.(r.index)
  }
  return { clusterOf, best, bestAt, emptyKeys }
}

/**
 * Exact dedup: a key from normalized chosen fields (NFKC, whitespace collapsed, lower case unless
 * case-sensitive); among rows with one key, keep the one with the longest answer (Platypus) or the
 * first. Two passes over the input: the first builds the key index (a 20-byte digest per distinct key,
 * 4 bytes per row), the second writes the kept rows in their original order.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { registerShardOp, type TaskSpec } from "./fanout.ts"
import type { ConcreteFormat } from "./formats.ts"
import { answerText, joinFields, schemaOf } from "./formats.ts"
import { GrowableInt32 } from "./growable.ts"
import { RowReader, type Located, type OnInvalid } from "./jsonl.ts"
import { readPiece, type Piece } from "./shards.ts"
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

// ---------------------------------------------------------------------------------------------
// As shard tasks: keys per piece (a task each), one index over all keys (the driver), a filter per piece

export interface KeysTaskSpec extends TaskSpec {
  readonly piece: Piece
  readonly format: ConcreteFormat
  readonly onInvalid: OnInvalid
  readonly fields: ReadonlyArray<string>
  readonly keep: "longest" | "first"
  readonly caseSensitive: boolean
}

/** Writes `keys.jsonl`: per row `[digest or null (empty key), answer length, line]`. */
registerShardOp("exact-keys", async (task, progress, signal) => {
  const spec = task as KeysTaskSpec
  const reader = new RowReader<Record<string, unknown>>(spec.piece.file, schemaOf(spec.format), { onInvalid: spec.onInvalid, allowEmpty: true })
  const fd = fs.openSync(path.join(spec.dir, "keys.jsonl"), "w")
  let pending: Array<string> = []
  try {
    for await (const r of readPiece(spec.piece, reader)) {
      const text = keyText(joinFields(r.row, spec.fields), spec.caseSensitive)
      const len = spec.keep === "longest" ? answerText(r.row, spec.format).length : 0
      pending.push(JSON.stringify([text.length === 0 ? null : digest(text), len, r.line]) + "\n")
      if (pending.length >= 4096) {
        fs.writeSync(fd, pending.join(""))
        pending = []
      }
      if (r.index % 1000 === 0) {
        if (signal?.aborted === true) throw new Error("interrupted")
        if (r.index % 5000 === 0) progress(r.index)
      }
    }
    fs.writeSync(fd, pending.join(""))
  } finally {
    fs.closeSync(fd)
  }
  return { rows: reader.stats.rows }
})

const linesOf = (file: string): Array<string> => fs.readFileSync(file, "utf8").split("\n").filter((l) => l.length > 0)

/**
 * The index over every piece's keys, in input order (the same choices as buildExactIndex), and each
 * row's decision: null to keep it, else where the row it duplicates is.
 */
export const exactDecisions = (keyFiles: ReadonlyArray<string>, names: ReadonlyArray<string>) => {
  const ids = new Map<string, number>()
  const bestDoc: Array<number> = []
  const bestLen: Array<number> = []
  const bestAt: Array<string> = []
  let emptyKeys = 0
  let doc = 0
  keyFiles.forEach((file, p) => {
    for (const l of linesOf(file)) {
      const [key, len, line] = JSON.parse(l) as [string | null, number, number]
      const d = doc++
      if (key === null) {
        emptyKeys++
        continue
      }
      const id = ids.get(key)
      if (id === undefined) {
        ids.set(key, bestDoc.length)
        bestDoc.push(d)
        bestLen.push(len)
        bestAt.push(`${names[p]}:${line}`)
      } else if (len > bestLen[id]!) {
        bestDoc[id] = d
        bestLen[id] = len
        bestAt[id] = `${names[p]}:${line}`
      }
    }
  })
  const starts = [0]
  for (const f of keyFiles) starts.push(starts[starts.length - 1]! + linesOf(f).length)
  return {
    distinctKeys: bestDoc.length,
    emptyKeys,
    decisions: function* (p: number): Generator<{ readonly duplicateOf: string } | null> {
      let d = starts[p]!
      for (const l of linesOf(keyFiles[p]!)) {
        const key = (JSON.parse(l) as [string | null])[0]
        const id = key === null ? undefined : ids.get(key)
        yield id === undefined || bestDoc[id] === d ? null : { duplicateOf: bestAt[id]! }
        d++
      }
    }
  }
}

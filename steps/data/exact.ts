/**
 * Exact dedup: a key from normalized chosen fields (NFKC, whitespace collapsed, lower case unless
 * case-sensitive); among rows with one key, keep the one with the longest answer (Platypus) or the
 * first. buildExactIndex is the one-process reference; the step runs the shard tasks below, whose
 * memory is bounded by a key bucket, not by the corpus.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { registerShardOp, type TaskSpec } from "./fanout.ts"
import type { ConcreteFormat } from "./formats.ts"
import { answerText, joinFields, schemaOf } from "./formats.ts"
import { GrowableInt32 } from "./growable.ts"
import { isGzip, isParquetFile, RowReader, type Located, type OnInvalid } from "./jsonl.ts"
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
// As shard tasks, in the manner of the MinHash band stage: keys per piece, hash-partitioned into
// buckets (a task each); each bucket's keys deduplicated by their own task, so no process ever holds
// more than one bucket's distinct keys; then a filter per piece.

/** Input bytes per key bucket: a bucket task holds at most the distinct keys of this much input. */
let bucketInputBytes = 64 << 20

/** Sets the input bytes per key bucket (tests: a tiny bound forces many buckets); returns the old one. */
export const setExactBucketBytes = (bytes: number): number => {
  const before = bucketInputBytes
  bucketInputBytes = bytes
  return before
}

/**
 * Key buckets for the input files (a compressed file, gzip or Parquet, counted as 4 times its size):
 * the decisions do not depend on the count, only each bucket task's memory does.
 */
export const exactBucketCount = (files: ReadonlyArray<string>): number => {
  const bytes = files.reduce((a, f) => a + fs.statSync(f).size * (isGzip(f) || isParquetFile(f) ? 4 : 1), 0)
  return Math.max(1, Math.min(4096, Math.ceil(bytes / bucketInputBytes)))
}

export interface KeysTaskSpec extends TaskSpec {
  readonly piece: Piece
  readonly buckets: number
  readonly format: ConcreteFormat
  readonly onInvalid: OnInvalid
  readonly fields: ReadonlyArray<string>
  readonly keep: "longest" | "first"
  readonly caseSensitive: boolean
}

const bucketFile = (b: number): string => `b${String(b).padStart(5, "0")}.jsonl`

/**
 * Writes, per bucket, `bNNNNN.jsonl`: per row of the piece whose key falls in it `[digest, answer
 * length, row index in the piece, line]`; rows with an empty key go nowhere (never deduplicated).
 */
registerShardOp("exact-keys", async (task, progress, signal) => {
  const spec = task as KeysTaskSpec
  const reader = new RowReader<Record<string, unknown>>(spec.piece.file, schemaOf(spec.format), { onInvalid: spec.onInvalid, allowEmpty: true })
  // no file stays open (thousands of buckets would pass the open-files limit): each flush appends to
  // the buckets it has lines for, flushing rarely enough that a bucket gets ~16 lines a write
  const pending: Array<Array<string>> = Array.from({ length: spec.buckets }, () => [])
  for (let b = 0; b < spec.buckets; b++) fs.writeFileSync(path.join(spec.dir, bucketFile(b)), "")
  const flushAt = Math.max(4096, 16 * spec.buckets)
  let buffered = 0
  const flush = () => {
    pending.forEach((lines, b) => {
      if (lines.length > 0) fs.appendFileSync(path.join(spec.dir, bucketFile(b)), lines.join(""))
      lines.length = 0
    })
    buffered = 0
  }
  let emptyKeys = 0
  for await (const r of readPiece(spec.piece, reader)) {
    const text = keyText(joinFields(r.row, spec.fields), spec.caseSensitive)
    if (text.length === 0) emptyKeys++
    else {
      const d = createHash("sha1").update(text).digest()
      const len = spec.keep === "longest" ? answerText(r.row, spec.format).length : 0
      pending[d.readUInt32BE(0) % spec.buckets]!.push(JSON.stringify([d.toString("base64"), len, r.index, r.line]) + "\n")
      if (++buffered >= flushAt) flush()
    }
    if (r.index % 1000 === 0) {
      if (signal?.aborted === true) throw new Error("interrupted")
      if (r.index % 5000 === 0) progress(r.index)
    }
  }
  flush()
  return { rows: reader.stats.rows, emptyKeys }
})

export interface BucketTaskSpec extends TaskSpec {
  readonly bucket: number
  /** the exact-keys task directories, in input order */
  readonly keyDirs: ReadonlyArray<string>
  /** each piece's file name, for `duplicateOf` */
  readonly names: ReadonlyArray<string>
}

/**
 * Deduplicates one bucket: walks its keys piece by piece in input order (the choices of
 * buildExactIndex: the longest answer, ties to the first) and writes `pNNNNN.jsonl` per piece, one
 * line `[row index, duplicateOf]` per removed row, in row order.
 */
registerShardOp("exact-bucket", async (task) => {
  const spec = task as BucketTaskSpec
  const best = new Map<string, { piece: number; row: number; len: number; at: string }>()
  const members: Array<Array<[number, string]>> = spec.keyDirs.map(() => [])
  spec.keyDirs.forEach((dir, p) => {
    for (const l of linesOf(path.join(dir, bucketFile(spec.bucket)))) {
      const [key, len, row, line] = JSON.parse(l) as [string, number, number, number]
      members[p]!.push([row, key])
      const b = best.get(key)
      if (b === undefined || len > b.len) best.set(key, { piece: p, row, len, at: `${spec.names[p]}:${line}` })
    }
  })
  members.forEach((rows, p) => {
    const out: Array<string> = []
    for (const [row, key] of rows) {
      const b = best.get(key)!
      if (b.piece !== p || b.row !== row) out.push(JSON.stringify([row, b.at]) + "\n")
    }
    fs.writeFileSync(path.join(spec.dir, `p${String(p).padStart(5, "0")}.jsonl`), out.join(""))
  })
  return { distinctKeys: best.size, rows: members.reduce((a, m) => a + m.length, 0) }
})

const linesOf = (file: string): Array<string> => fs.readFileSync(file, "utf8").split("\n").filter((l) => l.length > 0)

/**
 * The decision of every row of piece `p` (null keeps it, else where the row it duplicates is), from
 * the bucket tasks' outputs; holds only that piece's removed rows.
 */
export function* exactPieceDecisions(bucketDirs: ReadonlyArray<string>, p: number, rows: number): Generator<{ readonly duplicateOf: string } | null> {
  const removed = new Map<number, string>()
  for (const dir of bucketDirs) {
    for (const l of linesOf(path.join(dir, `p${String(p).padStart(5, "0")}.jsonl`))) {
      const [row, at] = JSON.parse(l) as [number, string]
      removed.set(row, at)
    }
  }
  for (let i = 0; i < rows; i++) {
    const at = removed.get(i)
    yield at === undefined ? null : { duplicateOf: at }
  }
}

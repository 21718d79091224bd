/**
 * MinHash dedup over a dataset: sign every row on worker threads (pass 1), cluster with LSH and
 * verification, pick one row per cluster (longest answer or first), then write kept rows in order
 * (pass 2). Memory: numHashes x 4 bytes per row for signatures plus 8 bytes per row for bucketing.
 */
import * as path from "node:path"
import type { ConcreteFormat } from "../formats.ts"
import { answerText, joinFields } from "../formats.ts"
import { GrowableInt32 } from "../growable.ts"
import type { Located } from "../jsonl.ts"
import { clusterSignatures } from "./lsh.ts"
import { SignaturePool, type SignedBatch } from "./pool.ts"
import { estimateJaccard } from "./signature.ts"
import type { UnionFind } from "./union-find.ts"

export interface MinHashOptions {
  readonly fields: ReadonlyArray<string>
  readonly keep: "longest" | "first"
  readonly ngram: number
  readonly bands: number
  readonly rows: number
  readonly threshold: number
  readonly seed: number
  readonly threads: number
  readonly maxComparisons: number
}

export interface MinHashIndex {
  readonly n: number
  readonly clusters: UnionFind
  /** kept row of each row's cluster root (indexed by root) */
  readonly keptOf: Int32Array
  readonly sigs: Int32Array
  readonly k: number
  readonly at: (i: number) => string
  readonly compared: number
  readonly matched: number
  readonly unsigned: number
}

const batchSize = 256
/** batches signed but not yet placed: bounds the texts and signatures held in flight */
const maxInflight = 64

export const buildMinHashIndex = async (
  rows: AsyncIterable<Located<unknown>>,
  format: ConcreteFormat,
  o: MinHashOptions,
  onRow?: (index: number) => void
): Promise<MinHashIndex> => {
  const k = o.bands * o.rows
  const pool = new SignaturePool({ ngram: o.ngram, numHashes: k, seed: o.seed }, o.threads)
  let sigs = new Int32Array(1024 * k)
  let signed = new Uint8Array(1024)
  const lengths = new GrowableInt32()
  const lines = new GrowableInt32()
  const fileOf = new GrowableInt32()
  const files: Array<string> = []
  let n = 0
  // batches in flight, placed at their offset as they complete, in order
  const inflight: Array<{ readonly offset: number; readonly p: Promise<SignedBatch> }> = []
  const place = (offset: number, b: SignedBatch): void => {
    const need = offset + b.signed.length
    if (need * k > sigs.length) {
      const size = Math.max(need, (sigs.length / k) * 2)
      const s = new Int32Array(size * k)
      s.set(sigs)
      sigs = s
      const g = new Uint8Array(size)
      g.set(signed)
      signed = g
    }
    sigs.set(b.sigs, offset * k)
    signed.set(b.signed, offset)
  }
  const drain = async (keep: number): Promise<void> => {
    while (inflight.length > keep) {
      const { offset, p } = inflight.shift()!
      place(offset, await p)
    }
  }
  try {
    let batch: Array<string> = []
    let batchStart = 0
    for await (const r of rows) {
      const row = r.row as Record<string, unknown>
      batch.push(joinFields(row, o.fields))
      lengths.push(o.keep === "longest" ? answerText(row, format).length : 0)
      lines.push(r.line)
      if (files[files.length - 1] !== r.file) files.push(r.file)
      fileOf.push(files.length - 1)
      n++
      if (batch.length === batchSize) {
        inflight.push({ offset: batchStart, p: pool.sign(batch) })
        batch = []
        batchStart = n
        // let finished worker batches report back, so the pool knows which threads are free
        await new Promise((resolve) => setImmediate(resolve))
        await drain(maxInflight)
      }
      onRow?.(r.index)
    }
    if (batch.length > 0) inflight.push({ offset: batchStart, p: pool.sign(batch) })
    await drain(0)
  } finally {
    await pool.close()
  }
  const { clusters, compared, matched } = clusterSignatures(sigs, signed, n, k, {
    bands: o.bands,
    rows: o.rows,
    threshold: o.threshold,
    maxComparisons: o.maxComparisons
  })
  // the kept row per cluster: longest answer, ties (and keep: "first") to the earliest row
  const keptOf = new Int32Array(n).fill(-1)
  for (let i = 0; i < n; i++) {
    const root = clusters.find(i)
    const cur = keptOf[root]!
    if (cur === -1 || lengths.get(i) > lengths.get(cur)) keptOf[root] = i
  }
  let unsigned = 0
  for (let i = 0; i < n; i++) if (signed[i] === 0) unsigned++
  const at = (i: number): string => `${path.basename(files[fileOf.get(i)]!)}:${lines.get(i)}`
  return { n, clusters, keptOf, sigs, k, at, compared, matched, unsigned }
}

/** The estimated Jaccard similarity of two rows, for the report. */
export const similarity = (ix: MinHashIndex, i: number, j: number): number =>
  Math.round(estimateJaccard(ix.sigs, i, j, ix.k) * 1000) / 1000

/**
 * MinHash dedup as distributed stages, in the manner of datatrove and NeMo Curator:
 * 1. sign (one task per input piece): each row's signature, its band keys and (signed, answer length,
 *    line), written to the task's directory; memory: one piece's rows.
 * 2. bands (one task per band, whatever the worker count): sort (key, doc) pairs of the band, verify
 *    candidates of each bucket by estimated Jaccard (signatures read from the sign stage's files by
 *    offset), and write the matching pairs; memory: 12 bytes per document, not its signature.
 * 3. cluster (the driver): union-find over the matching pairs of every band, in band order, and the kept
 *    row per cluster (longest answer, ties to the first row); memory: 12 bytes per document.
 * 4. filter (one task per piece, map-fanout.ts): keep or remove each row by the decision of stage 3.
 * A band task skips a pair already joined by its band's earlier pairs, as the single-process
 * clustering (lsh.ts) does across all bands; both find the same clusters (the connected components of
 * verified candidate pairs) unless a bucket reaches `maxComparisons`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { registerShardOp, type TaskSpec } from "../fanout.ts"
import { answerText, joinFields, schemaOf, type ConcreteFormat } from "../formats.ts"
import { RowReader, type OnInvalid } from "../jsonl.ts"
import { readPiece, type Piece } from "../shards.ts"
import { Signer } from "./signature.ts"
import { UnionFind } from "./union-find.ts"

export interface SignTaskSpec extends TaskSpec {
  readonly piece: Piece
  readonly format: ConcreteFormat
  readonly onInvalid: OnInvalid
  readonly fields: ReadonlyArray<string>
  readonly keep: "longest" | "first"
  readonly ngram: number
  readonly bands: number
  readonly rows: number
  readonly seed: number
}

const appendAll = (fd: number, a: Int32Array | Uint32Array, n: number): void => {
  if (n > 0) fs.writeSync(fd, new Uint8Array(a.buffer, a.byteOffset, n * 4))
}

registerShardOp("minhash-sign", async (task, progress, signal) => {
  const spec = task as SignTaskSpec
  const k = spec.bands * spec.rows
  const signer = new Signer({ ngram: spec.ngram, numHashes: k, seed: spec.seed }, { banding: { bands: spec.bands, rows: spec.rows } })
  const reader = new RowReader<Record<string, unknown>>(spec.piece.file, schemaOf(spec.format), { onInvalid: spec.onInvalid, allowEmpty: true })
  const batch = 1024
  const sigs = new Int32Array(batch * k)
  const keys = new Uint32Array(batch * spec.bands)
  const meta = new Int32Array(batch * 3)
  const fds = ["sigs.bin", "bands.bin", "meta.bin"].map((f) => fs.openSync(path.join(spec.dir, f), "w"))
  let m = 0
  const flush = () => {
    appendAll(fds[0]!, sigs, m * k)
    appendAll(fds[1]!, keys, m * spec.bands)
    appendAll(fds[2]!, meta, m * 3)
    m = 0
  }
  try {
    for await (const r of readPiece(spec.piece, reader)) {
      const signed = signer.sign(joinFields(r.row, spec.fields), sigs, m * k, keys, m * spec.bands)
      if (!signed) keys.fill(0, m * spec.bands, (m + 1) * spec.bands)
      meta[m * 3] = signed ? 1 : 0
      meta[m * 3 + 1] = spec.keep === "longest" ? answerText(r.row, spec.format).length : 0
      meta[m * 3 + 2] = r.line
      if (++m === batch) flush()
      if (r.index % 1000 === 0) {
        if (signal?.aborted === true) throw new Error("interrupted")
        if (r.index % 5000 === 0) progress(r.index)
      }
    }
    flush()
  } finally {
    for (const fd of fds) fs.closeSync(fd)
  }
  return { rows: reader.stats.rows, skipped: reader.stats.skipped, invalidExamples: reader.stats.examples }
})

/** Reads signatures of documents by global index from the sign stage's files. */
export class SignatureFiles {
  private readonly fds: Array<number>
  private readonly starts: Array<number>
  private readonly buf: Int32Array

  constructor(readonly dirs: ReadonlyArray<string>, counts: ReadonlyArray<number>, readonly k: number) {
    this.fds = dirs.map((d) => fs.openSync(path.join(d, "sigs.bin"), "r"))
    this.starts = [0]
    for (const c of counts) this.starts.push(this.starts[this.starts.length - 1]! + c)
    this.buf = new Int32Array(2 * k)
  }

  private pieceOf(doc: number): number {
    let lo = 0
    let hi = this.fds.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.starts[mid]! <= doc) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  private load(doc: number, slot: number): void {
    const p = this.pieceOf(doc)
    const bytes = new Uint8Array(this.buf.buffer, slot * this.k * 4, this.k * 4)
    fs.readSync(this.fds[p]!, bytes, 0, bytes.length, (doc - this.starts[p]!) * this.k * 4)
  }

  /** The share of equal positions of two documents' signatures (lsh.ts's estimate). */
  jaccard(i: number, j: number): number {
    this.load(i, 0)
    this.load(j, 1)
    const k = this.k
    let eq = 0
    for (let t = 0; t < k; t++) if (this.buf[t] === this.buf[k + t]) eq++
    return eq / k
  }

  close(): void {
    for (const fd of this.fds) fs.closeSync(fd)
  }
}

export interface BandTaskSpec extends TaskSpec {
  readonly signDirs: ReadonlyArray<string>
  readonly counts: ReadonlyArray<number>
  readonly band: number
  readonly bands: number
  readonly rows: number
  readonly threshold: number
  readonly maxComparisons: number
}

registerShardOp("minhash-band", async (task) => {
  const spec = task as BandTaskSpec
  const n = spec.counts.reduce((a, b) => a + b, 0)
  const k = spec.bands * spec.rows
  const pairs = new BigUint64Array(n)
  const view = new Uint32Array(pairs.buffer)
  let m = 0
  let doc = 0
  for (let p = 0; p < spec.signDirs.length; p++) {
    const count = spec.counts[p]!
    const meta = new Int32Array(readAll(path.join(spec.signDirs[p]!, "meta.bin")))
    const keys = new Uint32Array(readAll(path.join(spec.signDirs[p]!, "bands.bin")))
    for (let i = 0; i < count; i++, doc++) {
      if (meta[i * 3] === 0) continue
      view[2 * m] = doc
      view[2 * m + 1] = keys[i * spec.bands + spec.band]!
      m++
    }
  }
  const sorted = pairs.subarray(0, m).sort()
  const sv = new Uint32Array(sorted.buffer, 0, 2 * m)
  const sigs = new SignatureFiles(spec.signDirs, spec.counts, k)
  const joined = new UnionFind(n)
  const edges: Array<number> = []
  let compared = 0
  let matched = 0
  try {
    let start = 0
    while (start < m) {
      let end = start + 1
      while (end < m && sv[2 * end + 1] === sv[2 * start + 1]) end++
      for (let j = start + 1; j < end; j++) {
        const dj = sv[2 * j]!
        let budget = spec.maxComparisons
        for (let t = start; t < j && budget > 0; t++) {
          const dt = sv[2 * t]!
          if (joined.find(dt) === joined.find(dj)) continue
          budget--
          compared++
          if (sigs.jaccard(dt, dj) >= spec.threshold) {
            joined.union(dt, dj)
            edges.push(dt, dj)
            matched++
          }
        }
      }
      start = end
    }
  } finally {
    sigs.close()
  }
  fs.writeFileSync(path.join(spec.dir, "edges.bin"), new Uint8Array(Int32Array.from(edges).buffer))
  return { compared, matched }
})

const readAll = (file: string): ArrayBuffer => {
  const b = fs.readFileSync(file)
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer
}

export interface Clustering {
  /** per piece, per row: -1 to keep, else the global index of the row it duplicates */
  readonly duplicateOf: ReadonlyArray<Int32Array>
  /** line of a document (global index) in its piece's file */
  readonly lineOf: (doc: number) => number
  readonly pieceOf: (doc: number) => number
  readonly unsigned: number
  readonly clustersWithDuplicates: number
}

/** Stage 3: clusters from the band stage's pairs, and the kept row of each. */
export const clusterPieces = (signDirs: ReadonlyArray<string>, counts: ReadonlyArray<number>, bandDirs: ReadonlyArray<string>): Clustering => {
  const n = counts.reduce((a, b) => a + b, 0)
  const uf = new UnionFind(n)
  for (const d of bandDirs) {
    const e = new Int32Array(readAll(path.join(d, "edges.bin")))
    for (let i = 0; i + 1 < e.length; i += 2) uf.union(e[i]!, e[i + 1]!)
  }
  const lengths = new Int32Array(n)
  const lines = new Int32Array(n)
  const piece = new Int32Array(n)
  let unsigned = 0
  let doc = 0
  for (let p = 0; p < signDirs.length; p++) {
    const meta = new Int32Array(readAll(path.join(signDirs[p]!, "meta.bin")))
    for (let i = 0; i < counts[p]!; i++, doc++) {
      if (meta[i * 3] === 0) unsigned++
      lengths[doc] = meta[i * 3 + 1]!
      lines[doc] = meta[i * 3 + 2]!
      piece[doc] = p
    }
  }
  const keptOf = new Int32Array(n).fill(-1)
  for (let i = 0; i < n; i++) {
    const root = uf.find(i)
    const cur = keptOf[root]!
    if (cur === -1 || lengths[i]! > lengths[cur]!) keptOf[root] = i
  }
  const roots = new Set<number>()
  const duplicateOf: Array<Int32Array> = []
  doc = 0
  for (let p = 0; p < signDirs.length; p++) {
    const d = new Int32Array(counts[p]!)
    for (let i = 0; i < counts[p]!; i++, doc++) {
      const root = uf.find(doc)
      const kept = keptOf[root]!
      d[i] = kept === doc ? -1 : kept
      if (kept !== doc) roots.add(root)
    }
    duplicateOf.push(d)
  }
  return { duplicateOf, lineOf: (i) => lines[i]!, pieceOf: (i) => piece[i]!, unsigned, clustersWithDuplicates: roots.size }
}

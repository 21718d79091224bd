/**
 * MinHash dedup as distributed stages, in the manner of datatrove and NeMo Curator:
 * 1. sign (one task per input piece): each row's signature, its band keys and (signed, answer length,
 *    line), written to the task's directory; memory: one piece's rows.
 * 2. bands (one task per band, whatever the worker count): sort (key, doc) pairs of the band, verify
 *    candidates of each bucket by estimated Jaccard, and write the matching pairs. The candidates'
 *    signatures are read once each: buckets are taken in key order in windows of as many candidate rows
 *    as the signature buffer holds, and a window's signatures are read in file order (near rows in one
 *    read) before its buckets are verified from memory (`verifyBand`). Memory: 16 bytes per document
 *    (the sorted pairs and the union-find), plus the buffer (BAND_BUFFER_BYTES, 4 * k + 14 bytes per
 *    candidate row it holds), whatever the corpus.
 * 3. cluster (the driver): union-find over the matching pairs of every band, in band order, and the kept
 *    row per cluster (longest answer, ties to the first row); memory: 12 bytes per document. Then the
 *    estimated Jaccard of each removed row with its kept row, for removed.jsonl (`duplicateShares`):
 *    each of those signatures is read once, through a bounded buffer.
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
  private scratch: Uint8Array | undefined
  /** read calls made, and bytes they read (a band task reports the calls in its result) */
  reads = 0
  bytesRead = 0

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

  private readAt(piece: number, into: Uint8Array, position: number): void {
    let done = 0
    while (done < into.length) {
      const n = fs.readSync(this.fds[piece]!, into, done, into.length - done, position + done)
      if (n === 0) throw new Error(`${path.join(this.dirs[piece]!, "sigs.bin")}: ends at byte ${position + done}, before the signatures the sign stage counted`)
      done += n
    }
    this.reads++
    this.bytesRead += into.length
  }

  private load(doc: number, slot: number): void {
    const p = this.pieceOf(doc)
    this.readAt(p, new Uint8Array(this.buf.buffer, slot * this.k * 4, this.k * 4), (doc - this.starts[p]!) * this.k * 4)
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

  /**
   * Reads the signatures of `docs[0..count)` (ascending) into `out`, the i-th at slot `first + i`, in
   * file order: rows of one piece at most GAP_BYTES apart are read together (what lies between is
   * read and dropped), in reads of at most RUN_BYTES.
   */
  readSorted(docs: Uint32Array, count: number, out: Int32Array, first: number): void {
    const k = this.k
    const row = k * 4
    const runBytes = Math.max(RUN_BYTES, row)
    this.scratch ??= new Uint8Array(runBytes)
    const scratch = this.scratch
    const rows = new Int32Array(scratch.buffer, 0, Math.floor(runBytes / 4))
    let i = 0
    while (i < count) {
      const d0 = docs[i]!
      const p = this.pieceOf(d0)
      const pieceEnd = this.starts[p + 1]!
      let e = i + 1
      while (e < count && docs[e]! < pieceEnd && (docs[e]! - docs[e - 1]! - 1) * row <= GAP_BYTES && (docs[e]! - d0 + 1) * row <= runBytes) e++
      const span = (docs[e - 1]! - d0 + 1) * row
      this.readAt(p, scratch.subarray(0, span), (d0 - this.starts[p]!) * row)
      for (let t = i; t < e; t++) out.set(rows.subarray((docs[t]! - d0) * k, (docs[t]! - d0 + 1) * k), (first + t) * k)
      i = e
    }
  }

  close(): void {
    for (const fd of this.fds) fs.closeSync(fd)
  }
}

/** Rows of a piece this close are read in one call rather than two (the bytes between are dropped). */
const GAP_BYTES = 4 * 1024
/** The largest single read of signatures. */
const RUN_BYTES = 1024 * 1024
/** The signature buffer of a band task, by default: about 150,000 signatures of 112 hashes. */
export const BAND_BUFFER_BYTES = 64 * 1024 * 1024

export interface BandTaskSpec extends TaskSpec {
  readonly signDirs: ReadonlyArray<string>
  readonly counts: ReadonlyArray<number>
  readonly band: number
  readonly bands: number
  readonly rows: number
  readonly threshold: number
  readonly maxComparisons: number
  /** the signature buffer's size; default BAND_BUFFER_BYTES */
  readonly bufferBytes?: number
}

export interface BandVerified {
  /** the matching pairs, two documents each, in the order they were found */
  readonly edges: Array<number>
  readonly compared: number
  readonly matched: number
  /** signatures read again: only in a bucket with more candidate rows than the buffer holds */
  readonly reread: number
}

/**
 * Verifies the candidate pairs of one band. `sv` holds the band's m (document, key) pairs sorted by
 * key, then document (as uint32 pairs: document, key). The comparisons and their order are those of
 * a pairwise loop (lsh.ts's: buckets in key order, each member against the earlier members not already
 * joined to it, at most `maxComparisons` each), so the pairs found are too; what changes is where the
 * signatures come from. Buckets of two or more members are taken in key order into windows of at most
 * W candidate rows (W = the signatures the buffer holds); a window's signatures are read in one
 * file-order pass (SignatureFiles.readSorted), then its buckets are verified from memory. A bucket
 * larger than W alone keeps its first W/2 members' signatures and streams the rest in file order, W/2
 * at a time; a comparison with a member in neither reads that one signature again (counted).
 */
export const verifyBand = (
  sv: Uint32Array,
  m: number,
  n: number,
  sigs: SignatureFiles,
  o: { readonly threshold: number; readonly maxComparisons: number; readonly bufferBytes: number }
): BandVerified => {
  const k = sigs.k
  const bucketEnd = (s: number): number => {
    let e = s + 1
    while (e < m && sv[2 * e + 1] === sv[2 * s + 1]) e++
    return e
  }
  // per buffered row: its signature (4k), its document in file order and its slot (4 + 4), and a
  // bucket's (start, end, first row) for each two rows at most (6)
  // no larger than the band's candidate rows need (often far fewer than the buffer holds)
  let candidates = 0
  for (let s = 0; s < m;) {
    const e = bucketEnd(s)
    if (e - s >= 2) candidates += e - s
    s = e
  }
  const W = Math.max(4, Math.min(candidates, Math.floor(o.bufferBytes / (4 * k + BOOKKEEPING_BYTES))))
  const buf = new Int32Array((W + 1) * k) // the last slot: a signature read again (large buckets)
  const sortedDocs = new Uint32Array(W)
  const slotOf = new Int32Array(W)
  const ranges = new Int32Array(3 * (W >> 1) + 3)
  const joined = new UnionFind(n)
  const edges: Array<number> = []
  let compared = 0
  let matched = 0
  let reread = 0
  const share = (a: number, b: number): number => {
    const oa = a * k
    const ob = b * k
    let eq = 0
    for (let t = 0; t < k; t++) if (buf[oa + t] === buf[ob + t]) eq++
    return eq / k
  }
  /**
   * Member j of the bucket starting at s against the earlier ones. Member x's signature is at slot
   * `slots[base + x]`, or, with `slots` undefined (a bucket larger than the buffer), at `streamed(x)`.
   */
  const verifyMember = (s: number, j: number, slots: Int32Array | undefined, base: number) => {
    const dj = sv[2 * j]!
    const sj = slots === undefined ? streamed(j - s) : slots[base + j - s]!
    let budget = o.maxComparisons
    for (let t = s; t < j && budget > 0; t++) {
      const dt = sv[2 * t]!
      if (joined.find(dt) === joined.find(dj)) continue
      budget--
      compared++
      if (share(slots === undefined ? streamed(t - s) : slots[base + t - s]!, sj) >= o.threshold) {
        joined.union(dt, dj)
        edges.push(dt, dj)
        matched++
      }
    }
  }
  /** Reads members [from, to) of the bucket starting at s (its documents ascend) into slots first... */
  const readMembers = (s: number, from: number, to: number, first: number) => {
    for (let x = from; x < to; x++) sortedDocs[x - from] = sv[2 * (s + x)]!
    sigs.readSorted(sortedDocs, to - from, buf, first)
  }

  // the large bucket being verified: its first member's position, its members, and the streamed block
  let big = 0
  let head = 0
  let blockFrom = 0
  const block = () => W - head
  const streamed = (x: number): number => {
    if (x < head) return x
    if (x >= blockFrom && x < blockFrom + block()) return head + (x - blockFrom)
    reread++
    readMembers(big, x, x + 1, W)
    return W
  }

  let start = 0
  while (start < m) {
    const first = bucketEnd(start)
    if (first - start > W) {
      // a bucket larger than the buffer: its first half-buffer of members stays, the rest streams
      // through the other half in file order; an earlier member in neither is read again
      const size = first - start
      big = start
      head = W >> 1
      blockFrom = size
      readMembers(start, 0, head, 0)
      for (let x = 1; x < size; x++) {
        if (x >= head && (x < blockFrom || x >= blockFrom + block())) {
          blockFrom = x
          readMembers(start, x, Math.min(size, x + block()), head)
        }
        verifyMember(start, start + x, undefined, 0)
      }
      start = first
      continue
    }
    // a window: the buckets of two or more members, in key order, while their members fit
    let buckets = 0
    let rows = 0
    let s = start
    let e = first
    for (;;) {
      if (e - s >= 2) {
        if (rows + (e - s) > W) break
        for (let t = s; t < e; t++) sortedDocs[rows + t - s] = sv[2 * t]!
        ranges[3 * buckets] = s
        ranges[3 * buckets + 1] = e
        ranges[3 * buckets + 2] = rows
        buckets++
        rows += e - s
      }
      s = e
      if (s >= m) break
      e = bucketEnd(s)
      if (e - s > W) break
    }
    // file order; a document is in one bucket of a band, so each slot is one member's
    sortedDocs.subarray(0, rows).sort()
    for (let b = 0; b < buckets; b++) {
      const bs = ranges[3 * b]!
      const base = ranges[3 * b + 2]!
      for (let t = bs; t < ranges[3 * b + 1]!; t++) slotOf[base + t - bs] = searchSorted(sortedDocs, rows, sv[2 * t]!)
    }
    sigs.readSorted(sortedDocs, rows, buf, 0)
    for (let b = 0; b < buckets; b++) {
      const bs = ranges[3 * b]!
      for (let j = bs + 1; j < ranges[3 * b + 1]!; j++) verifyMember(bs, j, slotOf, ranges[3 * b + 2]!)
    }
    start = s
  }
  return { edges, compared, matched, reread }
}

/** Bytes of bookkeeping per row the band buffer holds, besides its signature (see verifyBand). */
const BOOKKEEPING_BYTES = 14

/** The index of `x` in `a[0..n)` (ascending, x present). */
const searchSorted = (a: Uint32Array, n: number, x: number): number => {
  let lo = 0
  let hi = n - 1
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (a[mid]! < x) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * A band's (document, key) pairs of the signed rows, sorted by key, then document, as uint32 pairs
 * (document, key) in `sv`; n counts every row, m the signed ones. 8 bytes per row.
 */
export const bandPairs = (spec: Pick<BandTaskSpec, "signDirs" | "counts" | "band" | "bands">): { readonly sv: Uint32Array; readonly m: number; readonly n: number } => {
  const n = spec.counts.reduce((a, b) => a + b, 0)
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
  return { sv: new Uint32Array(sorted.buffer, 0, 2 * m), m, n }
}

registerShardOp("minhash-band", async (task) => {
  const spec = task as BandTaskSpec
  const k = spec.bands * spec.rows
  const { sv, m, n } = bandPairs(spec)
  const sigs = new SignatureFiles(spec.signDirs, spec.counts, k)
  let r: BandVerified
  try {
    r = verifyBand(sv, m, n, sigs, { threshold: spec.threshold, maxComparisons: spec.maxComparisons, bufferBytes: spec.bufferBytes ?? BAND_BUFFER_BYTES })
  } finally {
    sigs.close()
  }
  fs.writeFileSync(path.join(spec.dir, "edges.bin"), new Uint8Array(Int32Array.from(r.edges).buffer))
  return { compared: r.compared, matched: r.matched, signatureReads: sigs.reads, signaturesReread: r.reread }
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

/**
 * Stage 3's estimates for the report: for each removed row (`duplicateOf` not -1), the number of equal
 * signature positions with the row it duplicates (the estimated Jaccard is that / k, what
 * `SignatureFiles.jaccard` gives; -1 for a kept row). Each signature needed, a removed row's and each
 * cluster's kept row's, is read once: the (kept, removed) pairs are taken in order of kept row, in
 * windows whose kept rows fill at most half the buffer and whose removed rows the other half; both are
 * read in file order (SignatureFiles.readSorted). A cluster whose removed rows span windows keeps its
 * kept row's signature in the buffer from one window to the next. Memory: 8 bytes per removed row (the
 * sorted pairs), 4 per row (the answer), and the buffer.
 */
export const duplicateShares = (sigs: SignatureFiles, duplicateOf: ReadonlyArray<Int32Array>, bufferBytes = BAND_BUFFER_BYTES): Array<Int32Array> => {
  const k = sigs.k
  const starts = [0]
  for (const d of duplicateOf) starts.push(starts[starts.length - 1]! + d.length)
  const out = duplicateOf.map((d) => new Int32Array(d.length).fill(-1))
  let r = 0
  for (const d of duplicateOf) for (let i = 0; i < d.length; i++) if (d[i]! !== -1) r++
  // (removed, kept) as uint32 pairs of one uint64 each: sorted by kept row, then removed row
  const pairs = new BigUint64Array(r)
  const view = new Uint32Array(pairs.buffer)
  r = 0
  duplicateOf.forEach((d, p) => {
    for (let i = 0; i < d.length; i++) {
      if (d[i]! === -1) continue
      view[2 * r] = starts[p]! + i
      view[2 * r + 1] = d[i]!
      r++
    }
  })
  pairs.sort()
  let clusters = 0
  for (let t = 0; t < r; t++) if (t === 0 || view[2 * t + 1] !== view[2 * t - 1]) clusters++
  // kept rows in slots [0, half), removed rows in [half, half + rows); no more than they need
  const slots = Math.max(2, Math.floor(bufferBytes / (4 * k)))
  const half = Math.max(1, Math.min(slots >> 1, clusters))
  const rows = Math.max(1, Math.min(slots - (slots >> 1), r))
  const buf = new Int32Array((half + rows) * k)
  const keptDocs = new Uint32Array(half)
  const removedDocs = new Uint32Array(rows)
  const keptSlot = new Int32Array(rows) // per pair of the window: its kept row's slot
  let carried = -1 // a kept row whose signature is at slot 0 from the window before
  let s = 0
  while (s < r) {
    // the window: pairs [s, e), at most `rows` of them and `half` distinct kept rows
    let kept = 0
    let e = s
    while (e < r && e - s < rows) {
      const c = view[2 * e + 1]!
      if (kept === 0 || keptDocs[kept - 1]! !== c) {
        if (kept === half) break
        keptDocs[kept++] = c
      }
      keptSlot[e - s] = kept - 1
      removedDocs[e - s] = view[2 * e]!
      e++
    }
    const fresh = keptDocs[0] === carried ? 1 : 0
    sigs.readSorted(keptDocs.subarray(fresh), kept - fresh, buf, fresh)
    // removed rows in file order (each is one pair's); a pair finds its slot by search
    const sorted = removedDocs.slice(0, e - s).sort()
    sigs.readSorted(sorted, e - s, buf, half)
    for (let t = s; t < e; t++) {
      const a = keptSlot[t - s]! * k
      const b = (half + searchSorted(sorted, e - s, view[2 * t]!)) * k
      let eq = 0
      for (let x = 0; x < k; x++) if (buf[a + x] === buf[b + x]) eq++
      const g = view[2 * t]!
      const p = pieceAt(starts, g)
      out[p]![g - starts[p]!] = eq
    }
    // the last kept row's cluster goes on in the next window: keep its signature, at slot 0
    carried = -1
    if (e < r && view[2 * e + 1]! === keptDocs[kept - 1]!) {
      buf.copyWithin(0, (kept - 1) * k, kept * k)
      carried = keptDocs[kept - 1]!
    }
    s = e
  }
  return out
}

/** The piece holding global row `g` (starts: each piece's first global row, then the total). */
const pieceAt = (starts: ReadonlyArray<number>, g: number): number => {
  let lo = 0
  let hi = starts.length - 2
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (starts[mid]! <= g) lo = mid
    else hi = mid - 1
  }
  return lo
}

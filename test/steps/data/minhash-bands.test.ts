/**
 * The MinHash band stage's verification (steps/data/minhash/staged.ts, verifyBand) reads each candidate
 * row's signature once, in file order, through a bounded buffer, and finds exactly the pairs of the
 * pairwise loop it replaced (two signature reads per comparison), in the same order. Checked on planted
 * near-duplicates plus two large clusters (a bucket of 40 exact copies and one of 25 near copies in
 * every band), for buffers from one that holds every candidate down to one of 4 signatures, where
 * windows hold a few buckets and the large buckets stream through the buffer's halves. And stage 3's
 * estimates of each removed row against its kept row (duplicateShares), read once each, are those of
 * the two reads per removed row dedup.ts made before.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { executeTask } from "../../../steps/data/fanout.ts"
import { clusterPieces, duplicateShares, SignatureFiles, verifyBand } from "../../../steps/data/minhash/staged.ts"
import { plantedCorpus, rng } from "./corpus.ts"
import { tempDir, writeJsonl } from "./helpers.ts"
import { pairwise, signCorpus } from "./pairwise-bands.ts"

const BANDS = 14
const ROWS = 8
const K = BANDS * ROWS
const THRESHOLD = 0.8
const MAX_COMPARISONS = 64

/** A file's bytes in an ArrayBuffer of their own (a small read's Buffer is a view into a shared pool). */
const bytesOf = (file: string): ArrayBuffer => {
  const b = fs.readFileSync(file)
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer
}

/** The band's (document, key) pairs sorted by key, then document, as the band task builds them. */
const bandPairs = (signDirs: ReadonlyArray<string>, counts: ReadonlyArray<number>, band: number): { sv: Uint32Array; m: number; n: number } => {
  const n = counts.reduce((a, b) => a + b, 0)
  const list: Array<[number, number]> = []
  let doc = 0
  signDirs.forEach((d, p) => {
    const meta = new Int32Array(bytesOf(path.join(d, "meta.bin")))
    const keys = new Uint32Array(bytesOf(path.join(d, "bands.bin")))
    for (let i = 0; i < counts[p]!; i++, doc++) if (meta[i * 3] !== 0) list.push([keys[i * BANDS + band]!, doc])
  })
  list.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  const sv = new Uint32Array(2 * list.length)
  list.forEach(([key, d], i) => {
    sv[2 * i] = d
    sv[2 * i + 1] = key
  })
  return { sv, m: list.length, n }
}


/** Rows in buckets of two or more: the candidates whose signatures a band needs. */
const candidates = (sv: Uint32Array, m: number): Array<number> => {
  const out: Array<number> = []
  for (let start = 0; start < m;) {
    let end = start + 1
    while (end < m && sv[2 * end + 1] === sv[2 * start + 1]) end++
    if (end - start >= 2) for (let t = start; t < end; t++) out.push(sv[2 * t]!)
    start = end
  }
  return out.sort((a, b) => a - b)
}

const largestBucket = (sv: Uint32Array, m: number): number => {
  let most = 0
  for (let start = 0; start < m;) {
    let end = start + 1
    while (end < m && sv[2 * end + 1] === sv[2 * start + 1]) end++
    most = Math.max(most, end - start)
    start = end
  }
  return most
}

/** SignatureFiles that records which documents readSorted was asked for. */
class CountingFiles extends SignatureFiles {
  readonly asked: Array<number> = []
  override readSorted(docs: Uint32Array, count: number, out: Int32Array, first: number): void {
    for (let i = 0; i < count; i++) this.asked.push(docs[i]!)
    super.readSorted(docs, count, out, first)
  }
}

describe("MinHash band verification", async () => {
  const r = rng(17)
  const { docs } = plantedCorpus(13, 500)
  const big = docs[0]!.split(" ")
  for (let c = 0; c < 40; c++) docs.push(docs[1]!)
  for (let c = 0; c < 25; c++) docs.push(big.map((w, i) => (i === Math.floor(r() * big.length) ? "edited" : w)).join(" "))
  for (let i = docs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1))
    ;[docs[i], docs[j]] = [docs[j]!, docs[i]!]
  }
  const dir = tempDir()
  const file = writeJsonl(path.join(dir, "corpus.jsonl"), docs.map((text) => ({ text })))
  const { signDirs, counts } = await signCorpus(file, dir, 4, BANDS, ROWS)

  it("finds the pairwise loop's pairs, reading each candidate's signature once, for buffers down to 4 signatures", () => {
    expect(signDirs.length).toBeGreaterThan(1)
    let rereads = 0
    for (let band = 0; band < BANDS; band++) {
      const { sv, m, n } = bandPairs(signDirs, counts, band)
      const reference = new SignatureFiles(signDirs, counts, K)
      const want = pairwise(sv, m, n, reference, THRESHOLD, MAX_COMPARISONS)
      reference.close()
      const needed = candidates(sv, m)
      expect(needed.length).toBeGreaterThan(65)
      for (const signatures of [1_000_000, 64, 16, 4]) {
        const sigs = new CountingFiles(signDirs, counts, K)
        const got = verifyBand(sv, m, n, sigs, { threshold: THRESHOLD, maxComparisons: MAX_COMPARISONS, bufferBytes: signatures * (4 * K + 14) })
        sigs.close()
        expect(got.edges, `band ${band}, ${signatures} signatures`).toEqual(want.edges)
        expect(got.compared).toBe(want.compared)
        // each candidate's signature asked for once (plus, in a bucket larger than the buffer, the
        // rereads it counts); nothing else
        expect(sigs.asked.length).toBe(needed.length + got.reread)
        expect([...new Set(sigs.asked)].sort((a, b) => a - b)).toEqual(needed)
        if (signatures >= 64) expect(got.reread).toBe(0)
        // read calls: at most one per signature, fewer where near rows share one; the pairwise loop
        // made two per comparison
        expect(sigs.reads).toBeLessThanOrEqual(needed.length + got.reread)
        expect(sigs.reads).toBeLessThan(2 * want.compared)
        if (signatures === 4) rereads += got.reread
      }
      // the 40 copies share every band's bucket: larger than the 4- and 16-signature buffers
      expect(largestBucket(sv, m)).toBeGreaterThanOrEqual(40)
    }
    // a large bucket's comparison with a member streamed out of the 4-signature buffer happened
    expect(rereads).toBeGreaterThan(0)
  })

  it("the band task writes the same pairs whatever its buffer", async () => {
    const edgesWith = async (bufferBytes: number | undefined, name: string) => {
      const spec = { op: "minhash-band", id: name, dir: path.join(dir, "band", name), signDirs, counts, band: 3, bands: BANDS, rows: ROWS, threshold: THRESHOLD, maxComparisons: MAX_COMPARISONS, ...(bufferBytes === undefined ? {} : { bufferBytes }) }
      const res = await executeTask(spec)
      return { edges: fs.readFileSync(path.join(spec.dir, "edges.bin")), res }
    }
    const whole = await edgesWith(undefined, "default")
    const small = await edgesWith(8 * (4 * K + 14), "small")
    expect(whole.edges.length).toBeGreaterThan(0)
    expect(small.edges.equals(whole.edges)).toBe(true)
    expect(small.res).toMatchObject({ compared: whole.res.compared, matched: whole.res.matched })
    expect(whole.res.signaturesReread).toBe(0)
  })

  it("estimates each removed row against its kept row as two reads per row did, reading each signature once", async () => {
    const bandDirs: Array<string> = []
    for (let band = 0; band < BANDS; band++) {
      const spec = { op: "minhash-band", id: `all-${band}`, dir: path.join(dir, "band", `all-${band}`), signDirs, counts, band, bands: BANDS, rows: ROWS, threshold: THRESHOLD, maxComparisons: MAX_COMPARISONS }
      await executeTask(spec)
      bandDirs.push(spec.dir)
    }
    const c = clusterPieces(signDirs, counts, bandDirs)
    // the estimates as dedup.ts took them before: two reads per removed row
    const reference = new SignatureFiles(signDirs, counts, K)
    const starts = [0]
    for (const n of counts) starts.push(starts[starts.length - 1]! + n)
    const want = c.duplicateOf.map((d, p) => Array.from(d, (kept, i) => (kept === -1 ? -1 : reference.jaccard(starts[p]! + i, kept))))
    reference.close()
    const removed: Array<number> = []
    const keptRows = new Set<number>()
    c.duplicateOf.forEach((d, p) => d.forEach((kept, i) => kept !== -1 && (removed.push(starts[p]! + i), keptRows.add(kept))))
    // the 40 copies and the 25 near copies are clusters: larger than the small buffers' halves
    expect(removed.length).toBeGreaterThan(80)
    const needed = [...removed, ...keptRows].sort((a, b) => a - b)
    for (const signatures of [1_000_000, 16, 5, 2]) {
      const sigs = new CountingFiles(signDirs, counts, K)
      const got = duplicateShares(sigs, c.duplicateOf, signatures * 4 * K)
      sigs.close()
      expect(got.map((d) => Array.from(d, (eq) => (eq === -1 ? -1 : eq / K))), `${signatures} signatures`).toEqual(want)
      // every removed row's signature and every cluster's kept row's, once each
      expect([...sigs.asked].sort((a, b) => a - b)).toEqual(needed)
      expect(sigs.reads).toBeLessThanOrEqual(needed.length)
      if (signatures === 1_000_000) expect(sigs.reads).toBeLessThan(removed.length) // near rows share a read
    }
  })
})

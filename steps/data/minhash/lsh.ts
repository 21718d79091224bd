/**
 * Locality-sensitive hashing over MinHash signatures (datatrove's stages, with verification added):
 * each of `bands` bands hashes `rows` consecutive signature values to a bucket key; documents sharing a
 * key in any band are candidates; a candidate pair joins one cluster only when its estimated Jaccard
 * (share of equal signature values) is >= threshold. Buckets are found by sorting (key, doc) pairs
 * (a radix sort, 16 bytes per document for the current band) instead of a hash map's ~60 per entry.
 */
import { bandKey } from "./hash.ts"
import { estimateJaccard } from "./signature.ts"
import { UnionFind } from "./union-find.ts"

export interface LshConfig {
  readonly bands: number
  readonly rows: number
  readonly threshold: number
  /**
   * Verifications one document may do per band bucket; only pathological buckets (thousands of
   * distinct near-miss documents sharing a band) reach it.
   */
  readonly maxComparisons: number
}

export interface LshResult {
  readonly clusters: UnionFind
  /** candidate pairs verified, and those that passed */
  readonly compared: number
  readonly matched: number
}

/**
 * Sorts (key, document) pairs by key, stably (documents filled in ascending order stay ascending
 * within a key: the order of sorting key<<32 | document as one 64-bit value), by two counting passes
 * over 16-bit digits of the key: linear time, 16 bytes per pair of scratch.
 */
export class KeySorter {
  keys: Uint32Array
  docs: Uint32Array
  private altKeys: Uint32Array
  private altDocs: Uint32Array
  private readonly counts = new Uint32Array(65536)

  constructor(n: number) {
    this.keys = new Uint32Array(n)
    this.docs = new Uint32Array(n)
    this.altKeys = new Uint32Array(n)
    this.altDocs = new Uint32Array(n)
  }

  /** Sorts the first m pairs; returns the arrays holding the result (keys and docs are swapped in). */
  sort(m: number): { readonly keys: Uint32Array; readonly docs: Uint32Array } {
    for (let shift = 0; shift < 32; shift += 16) {
      const { keys, docs, altKeys, altDocs, counts } = this
      counts.fill(0)
      for (let i = 0; i < m; i++) counts[(keys[i]! >>> shift) & 0xffff]!++
      let sum = 0
      for (let d = 0; d < 65536; d++) {
        const c = counts[d]!
        counts[d] = sum
        sum += c
      }
      for (let i = 0; i < m; i++) {
        const key = keys[i]!
        const at = counts[(key >>> shift) & 0xffff]!++
        altKeys[at] = key
        altDocs[at] = docs[i]!
      }
      this.keys = altKeys
      this.docs = altDocs
      this.altKeys = keys
      this.altDocs = docs
    }
    return { keys: this.keys, docs: this.docs }
  }
}

/**
 * Clusters `n` documents whose signatures (k = bands*rows values each) are in `sigs`. `signed[i]` is
 * 0 for documents without words, which never match. `docKeys`, if given, holds each document's band keys
 * (bands per document, as Signer writes them); otherwise they are computed here. Deterministic:
 * buckets are scanned in key order and members in document order.
 */
export const clusterSignatures = (
  sigs: Int32Array,
  signed: Uint8Array,
  n: number,
  k: number,
  config: LshConfig,
  onBand?: (band: number) => void,
  docKeys?: Uint32Array
): LshResult => {
  const { bands, rows, threshold } = config
  if (bands * rows > k) throw new Error(`bands x rows (${bands} x ${rows}) exceeds the ${k} hashes per signature`)
  const clusters = new UnionFind(n)
  const sorter = new KeySorter(n)
  let compared = 0
  let matched = 0
  for (let band = 0; band < bands; band++) {
    let m = 0
    for (let i = 0; i < n; i++) {
      if (signed[i] === 0) continue
      sorter.keys[m] = docKeys === undefined ? bandKey(sigs, i * k + band * rows, rows, band) : docKeys[i * bands + band]!
      sorter.docs[m] = i
      m++
    }
    // (key, document) pairs in key order, documents ascending within a key: buckets in key order
    const { keys, docs } = sorter.sort(m)
    let start = 0
    while (start < m) {
      let end = start + 1
      while (end < m && keys[end] === keys[start]) end++
      for (let j = start + 1; j < end; j++) {
        const dj = docs[j]!
        let budget = config.maxComparisons
        for (let t = start; t < j && budget > 0; t++) {
          const dt = docs[t]!
          if (clusters.find(dt) === clusters.find(dj)) continue
          budget--
          compared++
          if (estimateJaccard(sigs, dt, dj, k) >= threshold) {
            clusters.union(dt, dj)
            matched++
          }
        }
      }
      start = end
    }
    onBand?.(band)
  }
  return { clusters, compared, matched }
}

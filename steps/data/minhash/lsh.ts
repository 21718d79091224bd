/**
 * Locality-sensitive hashing over MinHash signatures (datatrove's stages, with verification added):
 * each of `bands` bands hashes `rows` consecutive signature values to a bucket key; documents sharing a
 * key in any band are candidates; a candidate pair joins one cluster only when its estimated Jaccard
 * (share of equal signature values) is >= threshold. Buckets are found by sorting (key, doc) pairs,
 * which needs 8 bytes per document and band instead of a hash map's ~60.
 */
import { fmix32 } from "./hash.ts"
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

export const bandKey = (sigs: Int32Array, base: number, rows: number, band: number): number => {
  let h = 0x811c9dc5 ^ band
  for (let r = 0; r < rows; r++) h = fmix32(Math.imul(h ^ sigs[base + r]!, 0x01000193) + r)
  return h >>> 0
}

/**
 * Clusters `n` documents whose signatures (k = bands*rows values each) are in `sigs`. `signed[i]` is
 * 0 for documents without words, which never match. Deterministic: buckets are scanned in key order
 * and members in document order.
 */
export const clusterSignatures = (
  sigs: Int32Array,
  signed: Uint8Array,
  n: number,
  k: number,
  config: LshConfig,
  onBand?: (band: number) => void
): LshResult => {
  const { bands, rows, threshold } = config
  if (bands * rows > k) throw new Error(`bands x rows (${bands} x ${rows}) exceeds the ${k} hashes per signature`)
  const clusters = new UnionFind(n)
  const pairs = new BigUint64Array(n)
  const view = new Uint32Array(pairs.buffer)
  let compared = 0
  let matched = 0
  for (let band = 0; band < bands; band++) {
    // low word: document, high word: bucket key; sorting the 64-bit values groups buckets
    let m = 0
    for (let i = 0; i < n; i++) {
      if (signed[i] === 0) continue
      view[2 * m] = i
      view[2 * m + 1] = bandKey(sigs, i * k + band * rows, rows, band)
      m++
    }
    const sorted = pairs.subarray(0, m).sort()
    const sv = new Uint32Array(sorted.buffer, 0, 2 * m)
    let start = 0
    while (start < m) {
      let end = start + 1
      while (end < m && sv[2 * end + 1] === sv[2 * start + 1]) end++
      for (let j = start + 1; j < end; j++) {
        const dj = sv[2 * j]!
        let budget = config.maxComparisons
        for (let t = start; t < j && budget > 0; t++) {
          const dt = sv[2 * t]!
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

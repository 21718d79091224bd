/**
 * 64-bit hashing from 32-bit integer arithmetic (no BigInt: it allocates and is slow in hot loops).
 * A string hashes to two 32-bit lanes, each a MurmurHash3-style pass over UTF-16 code units with its
 * own seed and a final avalanche (fmix32). Word n-grams hash by combining their words' lane values
 * in order, so each word is hashed once however many shingles it is part of.
 */

/** MurmurHash3's 32-bit finalizer: every input bit affects every output bit. */
export const fmix32 = (h: number): number => {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

const C1 = 0xcc9e2d51
const C2 = 0x1b873593

/** MurmurHash3's block of one code unit (what the WebAssembly kernel looks up per byte). */
export const murmurBlock = (unit: number): number => {
  const k = Math.imul(unit, C1)
  return Math.imul((k << 15) | (k >>> 17), C2)
}

/** One lane of a string hash; `seed` picks the lane. */
export const hashString32 = (s: string, seed: number): number => {
  let h = seed | 0
  const n = s.length
  for (let i = 0; i < n; i++) {
    let k = Math.imul(s.charCodeAt(i), C1)
    k = (k << 15) | (k >>> 17)
    h ^= Math.imul(k, C2)
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  return fmix32(h ^ n)
}

export const LANE_SEED_LO = 0x9747b28c
export const LANE_SEED_HI = 0x5bd1e995

/**
 * Hashes of every n-gram of `lo`/`hi` word lanes into `outLo`/`outHi` (returns the count). Words
 * fewer than n make one shingle of all of them, so short texts still get a signature.
 */
export const shingleHashes = (
  lo: Int32Array,
  hi: Int32Array,
  words: number,
  n: number,
  outLo: Int32Array,
  outHi: Int32Array
): number => {
  const width = Math.min(n, words)
  const count = words === 0 ? 0 : words - width + 1
  for (let s = 0; s < count; s++) {
    let a = 0x2545f491 ^ width
    let b = 0x6c8e9cf5 ^ width
    for (let k = 0; k < width; k++) {
      a = Math.imul(a ^ lo[s + k]!, 0x01000193) + k
      b = Math.imul(b ^ hi[s + k]!, 0x5bd1e995) + k
      b ^= b >>> 15
    }
    outLo[s] = fmix32(a) | 0
    outHi[s] = fmix32(b ^ a) | 0
  }
  return count
}

/** The LSH bucket key of band `band`: a hash of its `rows` signature values from `base` on. */
export const bandKey = (sigs: Int32Array, base: number, rows: number, band: number): number => {
  let h = 0x811c9dc5 ^ band
  for (let r = 0; r < rows; r++) h = fmix32(Math.imul(h ^ sigs[base + r]!, 0x01000193) + r)
  return h >>> 0
}

/** splitmix32: a small seeded generator for the permutation coefficients. */
export const splitmix32 = (seed: number): (() => number) => {
  let s = seed >>> 0
  return () => {
    s = (s + 0x9e3779b9) | 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad)
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97)
    return (z ^ (z >>> 15)) >>> 0
  }
}

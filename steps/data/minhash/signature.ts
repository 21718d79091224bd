/**
 * MinHash signatures. A text is simplified (NFKC, lower case, punctuation removed), split into words,
 * cut into word n-gram shingles hashed to 64 bits, and each of k hash functions keeps its minimum over
 * the shingles. Hash function i maps a shingle's lanes (lo, hi) to
 *   v_i = a_i*lo + c_i*hi + b_i  (mod 2^32)
 * with seeded odd a_i, c_i: for random shingle hashes every v_i is uniform and any two v_i, v_j are
 * (close to) independent, which is what the Jaccard estimate's accuracy rests on, at two multiplies
 * per shingle and function. The coefficients depend only on the seed, so signatures are the same
 * whichever thread computes them.
 */
import { minimaKernel, type MinimaKernel } from "./minima-wasm.ts"
import { C1, C2, fmix32, hashString32, LANE_SEED_HI, LANE_SEED_LO, shingleHashes, splitmix32 } from "./hash.ts"

export interface MinHashConfig {
  readonly ngram: number
  readonly numHashes: number
  readonly seed: number
}

export interface Coefficients {
  readonly a: Int32Array
  readonly b: Int32Array
  readonly c: Int32Array
}

export const coefficients = (numHashes: number, seed: number): Coefficients => {
  const next = splitmix32(seed ^ 0x5eed)
  const a = new Int32Array(numHashes)
  const b = new Int32Array(numHashes)
  const c = new Int32Array(numHashes)
  for (let i = 0; i < numHashes; i++) {
    a[i] = next() | 1
    b[i] = next()
    c[i] = next() | 1
  }
  return { a, b, c }
}

const punctRe = /[\p{P}\p{S}]+/gu
const spaceRe = /\s+/

/** datatrove-style simplification: the words shingles are made of. */
export const simplifyWords = (text: string): Array<string> => {
  const t = text.normalize("NFKC").toLowerCase().replace(punctRe, " ").trim()
  return t.length === 0 ? [] : t.split(spaceRe)
}

/** 1 for the ASCII code units that separate words: JS whitespace (\s) and \p{P}\p{S}. */
const ASCII_SEPARATOR = (() => {
  const t = new Uint8Array(128)
  for (let c = 0; c < 128; c++) {
    const ch = String.fromCharCode(c)
    if (/\s/.test(ch) || /[\p{P}\p{S}]/u.test(ch)) t[c] = 1
  }
  return t
})()

/** Reusable scratch buffers, grown as needed, so signing allocates nothing per document. */
export class Signer {
  private lo = new Int32Array(1024)
  private hi = new Int32Array(1024)
  private sLo = new Int32Array(1024)
  private sHi = new Int32Array(1024)
  private readonly coef: Coefficients
  /** the WebAssembly SIMD minima kernel, its memory laid out as coefficients | minima | sLo | sHi */
  private readonly kernel: MinimaKernel | undefined
  private readonly groups: number
  private readonly minimaAt: number
  private readonly shinglesAt: number
  readonly config: MinHashConfig

  // no parameter properties: worker threads load this file with Node's type stripping
  constructor(config: MinHashConfig) {
    this.config = config
    this.coef = coefficients(config.numHashes, config.seed)
    this.kernel = minimaKernel()
    this.groups = 2 * Math.ceil(config.numHashes / 8) // the kernel takes groups of four in pairs
    this.minimaAt = this.groups * 48
    this.shinglesAt = this.minimaAt + this.groups * 16
    if (this.kernel !== undefined) {
      // groups of four functions as a[4] c[4] b[4]; the padding functions' minima are never read
      this.growMemory(this.shinglesAt + 2 * 4 * this.sLo.length)
      const co = new Int32Array(this.kernel.memory.buffer, 0, this.groups * 12)
      const { a, b, c } = this.coef
      for (let i = 0; i < this.groups * 4; i++) {
        const g = (i >> 2) * 12 + (i & 3)
        co[g] = i < a.length ? a[i]! : 1
        co[g + 4] = i < a.length ? c[i]! : 1
        co[g + 8] = i < a.length ? b[i]! : 0
      }
      this.shingleViews(this.sLo.length)
    }
  }

  /**
   * Writes the signature of `text` into `out` at `offset` (numHashes values). Returns false for a
   * text with no words: it gets no signature and is never a duplicate.
   */
  sign(text: string, out: Int32Array, offset: number): boolean {
    let n = this.hashAsciiWords(text)
    if (n < 0) n = this.hashWords(text)
    const k = this.config.numHashes
    if (n === 0) {
      out.fill(0x7fffffff, offset, offset + k)
      return false
    }
    const count = shingleHashes(this.lo, this.hi, n, this.config.ngram, this.sLo, this.sHi)
    const kernel = this.kernel
    if (kernel === undefined) minima(this.coef, this.sLo, this.sHi, count, out, offset)
    else {
      kernel.minima(this.shinglesAt, this.shinglesAt + 4 * this.sLo.length, count, 0, this.groups / 2, this.minimaAt)
      out.set(new Int32Array(kernel.memory.buffer, this.minimaAt, k), offset)
    }
    return true
  }

  private growMemory(bytes: number): void {
    const memory = this.kernel!.memory
    const missing = bytes - memory.buffer.byteLength
    if (missing > 0) memory.grow(Math.ceil(missing / 65536))
  }

  /** sLo and sHi as views of the kernel's memory, `size` values each */
  private shingleViews(size: number): void {
    this.growMemory(this.shinglesAt + 2 * 4 * size)
    const buffer = this.kernel!.memory.buffer
    this.sLo = new Int32Array(buffer, this.shinglesAt, size)
    this.sHi = new Int32Array(buffer, this.shinglesAt + 4 * size, size)
  }

  /** The general path: simplifyWords, then each word's two lanes. Returns the word count. */
  private hashWords(text: string): number {
    const words = simplifyWords(text)
    const n = words.length
    if (n > this.lo.length) this.grow(n)
    const lo = this.lo
    const hi = this.hi
    for (let i = 0; i < n; i++) {
      const w = words[i]!
      lo[i] = hashString32(w, LANE_SEED_LO)
      hi[i] = hashString32(w, LANE_SEED_HI)
    }
    return n
  }

  /**
   * The same word lanes as hashWords, for an all-ASCII text, in one pass over its code units with no
   * strings made: for ASCII, NFKC changes nothing, lower-casing is A-Z -> a-z, and words are the runs
   * between whitespace and punctuation/symbols (ASCII_SEPARATOR). Returns -1 at the first non-ASCII
   * code unit (the caller then takes the general path).
   */
  private hashAsciiWords(text: string): number {
    const len = text.length
    if (len >= 2 * this.lo.length) this.grow((len >> 1) + 1)
    const lo = this.lo
    const hi = this.hi
    let n = 0
    let w = 0
    let hl = LANE_SEED_LO | 0
    let hh = LANE_SEED_HI | 0
    for (let i = 0; i <= len; i++) {
      const ch = i < len ? text.charCodeAt(i) : 32
      if (ch > 127) return -1
      if (ASCII_SEPARATOR[ch] === 1) {
        if (w > 0) {
          lo[n] = fmix32(hl ^ w) | 0
          hi[n] = fmix32(hh ^ w) | 0
          n++
          w = 0
          hl = LANE_SEED_LO | 0
          hh = LANE_SEED_HI | 0
        }
        continue
      }
      // one MurmurHash3 round per lane, as hashString32 does
      let kk = Math.imul(ch >= 65 && ch <= 90 ? ch + 32 : ch, C1)
      kk = Math.imul((kk << 15) | (kk >>> 17), C2)
      hl ^= kk
      hl = (hl << 13) | (hl >>> 19)
      hl = (Math.imul(hl, 5) + 0xe6546b64) | 0
      hh ^= kk
      hh = (hh << 13) | (hh >>> 19)
      hh = (Math.imul(hh, 5) + 0xe6546b64) | 0
      w++
    }
    return n
  }

  private grow(n: number): void {
    const size = Math.max(n, this.lo.length * 2)
    this.lo = new Int32Array(size)
    this.hi = new Int32Array(size)
    if (this.kernel === undefined) {
      this.sLo = new Int32Array(size)
      this.sHi = new Int32Array(size)
    } else this.shingleViews(size)
  }
}

/**
 * The minimum of each hash function over the shingles, into out[offset..offset+k). Values are kept as
 * signed int32 with the top bit flipped (same order as unsigned) so V8 never boxes them as doubles,
 * and four functions run per pass over the shingles (about 2.5x faster than one at a time).
 */
const minima = (
  coef: Coefficients,
  sLo: Int32Array,
  sHi: Int32Array,
  count: number,
  out: Int32Array,
  offset: number
): void => {
  const { a, b, c } = coef
  const k = a.length
  let i = 0
  for (; i + 4 <= k; i += 4) {
    const a0 = a[i]!, a1 = a[i + 1]!, a2 = a[i + 2]!, a3 = a[i + 3]!
    const c0 = c[i]!, c1 = c[i + 1]!, c2 = c[i + 2]!, c3 = c[i + 3]!
    const b0 = b[i]!, b1 = b[i + 1]!, b2 = b[i + 2]!, b3 = b[i + 3]!
    let m0 = 0x7fffffff, m1 = m0, m2 = m0, m3 = m0
    for (let s = 0; s < count; s++) {
      const lo = sLo[s]!, hi = sHi[s]!
      const v0 = (Math.imul(a0, lo) + Math.imul(c0, hi) + b0) | 0
      if (v0 < m0) m0 = v0
      const v1 = (Math.imul(a1, lo) + Math.imul(c1, hi) + b1) | 0
      if (v1 < m1) m1 = v1
      const v2 = (Math.imul(a2, lo) + Math.imul(c2, hi) + b2) | 0
      if (v2 < m2) m2 = v2
      const v3 = (Math.imul(a3, lo) + Math.imul(c3, hi) + b3) | 0
      if (v3 < m3) m3 = v3
    }
    out[offset + i] = m0
    out[offset + i + 1] = m1
    out[offset + i + 2] = m2
    out[offset + i + 3] = m3
  }
  for (; i < k; i++) {
    const ai = a[i]!, bi = b[i]!, ci = c[i]!
    let m = 0x7fffffff
    for (let s = 0; s < count; s++) {
      const v = (Math.imul(ai, sLo[s]!) + Math.imul(ci, sHi[s]!) + bi) | 0
      if (v < m) m = v
    }
    out[offset + i] = m
  }
}

/** The share of equal positions of two signatures: the MinHash estimate of their Jaccard similarity. */
export const estimateJaccard = (sigs: Int32Array, i: number, j: number, k: number): number => {
  const oi = i * k
  const oj = j * k
  let eq = 0
  for (let t = 0; t < k; t++) if (sigs[oi + t] === sigs[oj + t]) eq++
  return eq / k
}

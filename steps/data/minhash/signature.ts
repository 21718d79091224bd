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
import { bandKey, hashString32, LANE_SEED_HI, LANE_SEED_LO, murmurBlock, shingleHashes, splitmix32 } from "./hash.ts"
import { BLOCKS_AT, SEPARATOR_BLOCK, SEPARATORS_AT, signingKernel, TABLES_END, UNIT_SEPARATORS_AT, type SigningKernel } from "./kernel-wasm.ts"

/** LSH banding: `bands` bands of `rows` consecutive signature values */
export interface Banding {
  readonly bands: number
  readonly rows: number
}

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

const encoder = new TextEncoder()
const surrogateRe = /[\uD800-\uDFFF]/
/** A character simplifyWords turns into a word break: whitespace, punctuation, symbols. */
const breakRe = /[\s\p{P}\p{S}]/u

let unitTable: Uint8Array | undefined
/** 1 for each UTF-16 code unit outside the surrogates that simplifyWords turns into a word break */
const unitSeparators = (): Uint8Array => {
  if (unitTable !== undefined) return unitTable
  const table = new Uint8Array(65536)
  for (let c = 0; c < 65536; c++) if ((c < 0xd800 || c > 0xdfff) && breakRe.test(String.fromCharCode(c))) table[c] = 1
  unitTable = table
  return table
}

/**
 * Reusable scratch buffers, grown as needed, so signing allocates nothing per document. With the
 * WebAssembly kernel (kernel-wasm.ts) all of them live in its memory, laid out as
 *   tables (66,560 bytes) | coefficients | minima | band keys | raw | sh | lo | hi | text
 * for texts of up to `size` words: raw and sh hold size + 16 int32 pairs, lo and hi size + 16 int32
 * (the kernel's four-wide passes read and write a little past the end, and its word pass spreads its
 * four stretches' words over raw), text 4 x size + 32 bytes (the text, a separator byte, and the
 * len + 3 bytes after it the word pass may read). An all-ASCII text is copied in as bytes and its words
 * hashed there (`words`): for ASCII, NFKC changes nothing, lower-casing is A-Z -> a-z, and words are
 * the runs between whitespace and punctuation/symbols, exactly what simplifyWords yields; any other
 * text takes simplifyWords. Shingle hashes (into sh), minima and
 * band keys are computed there too; without the kernel everything is done in JS.
 */
export class Signer {
  private lo = new Int32Array(1024)
  private hi = new Int32Array(1024)
  private sLo = new Int32Array(1024)
  private sHi = new Int32Array(1024)
  private text = new Uint8Array(0)
  private textBuffer = Buffer.alloc(0)
  private unitTableLoaded = false
  private rawAt = 0
  private shAt = 0
  private minimaView = new Int32Array(0)
  private keysView = new Uint32Array(0)
  private readonly coef: Coefficients
  private readonly kernel: SigningKernel | undefined
  private readonly groups: number
  private readonly coefAt: number
  private readonly minimaAt: number
  private readonly keysAt: number
  private readonly banding: Banding | undefined
  private readonly scratchAt: number
  readonly config: MinHashConfig

  // no parameter properties: worker threads load this file with Node's type stripping
  /**
   * `wasm: false` signs in plain JS (what an engine without WebAssembly SIMD gets; same signatures);
   * `banding`: sign() can also write each signature's LSH band keys (lsh.ts's bandKey).
   */
  constructor(config: MinHashConfig, options: { readonly wasm?: boolean; readonly banding?: Banding } = {}) {
    this.config = config
    this.banding = options.banding
    if (this.banding !== undefined && this.banding.bands * this.banding.rows > config.numHashes) {
      throw new Error(`bands x rows (${this.banding.bands} x ${this.banding.rows}) exceeds the ${config.numHashes} hashes per signature`)
    }
    this.coef = coefficients(config.numHashes, config.seed)
    this.kernel = options.wasm === false ? undefined : signingKernel()
    this.groups = 2 * Math.ceil(config.numHashes / 8) // the kernel takes groups of four in pairs
    this.coefAt = TABLES_END
    this.minimaAt = this.coefAt + this.groups * 48
    this.keysAt = this.minimaAt + this.groups * 16
    this.scratchAt = this.keysAt + 16 * Math.ceil((this.banding?.bands ?? 0) / 4)
    if (this.kernel !== undefined) {
      this.views(this.lo.length)
      const memory = this.kernel.memory.buffer
      const separators = new Uint8Array(memory, SEPARATORS_AT, 128)
      const blocks = new Int32Array(memory, BLOCKS_AT, 128)
      for (let ch = 0; ch < 128; ch++) {
        separators[ch] = breakRe.test(String.fromCharCode(ch)) ? 1 : 0
        blocks[ch] = separators[ch] !== 0 ? SEPARATOR_BLOCK : murmurBlock(ch >= 65 && ch <= 90 ? ch + 32 : ch)
      }
      // groups of four functions as a[4] c[4] b[4]; the padding functions' minima are never read
      const co = new Int32Array(memory, this.coefAt, this.groups * 12)
      const { a, b, c } = this.coef
      for (let i = 0; i < this.groups * 4; i++) {
        const g = (i >> 2) * 12 + (i & 3)
        co[g] = i < a.length ? a[i]! : 1
        co[g + 4] = i < a.length ? c[i]! : 1
        co[g + 8] = i < a.length ? b[i]! : 0
      }
    }
  }

  /**
   * Writes the signature of `text` into `out` at `offset` (numHashes values), and with `banding` its
   * band keys into `keys` at `keysOffset` if given. Returns false for a text with no words: it gets no
   * signature (nor keys) and is never a duplicate.
   */
  sign(text: string, out: Int32Array, offset: number, keys?: Uint32Array, keysOffset = 0): boolean {
    const kernel = this.kernel
    let n = kernel === undefined ? -1 : this.hashAsciiWords(text)
    if (n < 0 && kernel !== undefined) n = this.hashUnitWords(text)
    if (n < 0) n = this.hashWords(text)
    const k = this.config.numHashes
    if (n === 0) {
      out.fill(0x7fffffff, offset, offset + k)
      return false
    }
    if (kernel === undefined) {
      const count = shingleHashes(this.lo, this.hi, n, this.config.ngram, this.sLo, this.sHi)
      minima(this.coef, this.sLo, this.sHi, count, out, offset)
      if (keys !== undefined && this.banding !== undefined) {
        const { bands, rows } = this.banding
        for (let b = 0; b < bands; b++) keys[keysOffset + b] = bandKey(out, offset + b * rows, rows, b)
      }
    } else {
      const width = Math.min(this.config.ngram, n)
      const count = n - width + 1
      kernel.shingles(this.lo.byteOffset, this.hi.byteOffset, count, width, this.shAt)
      // an odd count runs with its last shingle twice (shingles wrote it), which leaves every minimum as is
      kernel.minima(this.shAt, (count + 1) & ~1, this.coefAt, this.groups / 2, this.minimaAt)
      out.set(this.minimaView, offset)
      if (keys !== undefined && this.banding !== undefined) {
        kernel.bandKeys(this.minimaAt, this.banding.bands, this.banding.rows, this.keysAt)
        keys.set(this.keysView, keysOffset)
      }
    }
    return true
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

  /** The kernel's word lanes of an all-ASCII text; -1 for any other text. */
  private hashAsciiWords(text: string): number {
    const len = text.length
    // a text of len code units has at most (len + 1) / 2 words
    if ((len >> 1) + 1 > this.lo.length) this.grow((len >> 1) + 1)
    const { read, written } = encoder.encodeInto(text, this.text)
    // a non-ASCII code unit takes more than one byte
    if (read !== len || written !== len) return -1
    this.text[len] = 32
    return this.kernel!.words(this.text.byteOffset, len, this.rawAt, this.lo.byteOffset, this.hi.byteOffset)
  }

  /**
   * The kernel's word lanes of any other text without surrogates: normalized and lower-cased here as
   * simplifyWords does, then its UTF-16 code units go to the kernel, which breaks words where
   * simplifyWords would (whitespace, punctuation, symbols) and hashes them as hashString32 does.
   * -1 for a text with surrogates (astral characters are classified by code point: left to
   * simplifyWords).
   */
  private hashUnitWords(text: string): number {
    const t = text.normalize("NFKC").toLowerCase()
    if (surrogateRe.test(t)) return -1
    if (!this.unitTableLoaded) {
      new Uint8Array(this.kernel!.memory.buffer, UNIT_SEPARATORS_AT, 65536).set(unitSeparators())
      this.unitTableLoaded = true
    }
    const len = t.length
    if ((len >> 1) + 1 > this.lo.length) this.grow((len >> 1) + 1)
    this.textBuffer.write(t, 0, "utf16le")
    this.textBuffer.writeUInt16LE(32, 2 * len)
    return this.kernel!.words16(this.text.byteOffset, len, this.rawAt, this.lo.byteOffset, this.hi.byteOffset)
  }

  /** (kernel) the scratch arrays as views of the kernel's memory, for texts of up to `size` words */
  private views(size: number): void {
    const memory = this.kernel!.memory
    const pairs = 8 * (size + 16)
    const bytes = this.scratchAt + 3 * pairs + 4 * size + 32
    if (bytes > memory.buffer.byteLength) memory.grow(Math.ceil((bytes - memory.buffer.byteLength) / 65536))
    const buffer = memory.buffer
    this.rawAt = this.scratchAt
    this.shAt = this.rawAt + pairs
    this.lo = new Int32Array(buffer, this.shAt + pairs, size)
    this.hi = new Int32Array(buffer, this.shAt + pairs + pairs / 2, size)
    this.text = new Uint8Array(buffer, this.shAt + 2 * pairs, 4 * size + 32)
    this.textBuffer = Buffer.from(buffer, this.text.byteOffset, this.text.byteLength)
    this.minimaView = new Int32Array(buffer, this.minimaAt, this.config.numHashes)
    if (this.banding !== undefined) this.keysView = new Uint32Array(buffer, this.keysAt, this.banding.bands)
  }

  private grow(n: number): void {
    const size = Math.max(n, this.lo.length * 2)
    if (this.kernel !== undefined) return this.views(size)
    this.lo = new Int32Array(size)
    this.hi = new Int32Array(size)
    this.sLo = new Int32Array(size)
    this.sHi = new Int32Array(size)
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

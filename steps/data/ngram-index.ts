/**
 * An index of benchmark n-grams on simplified tokens (the GPT-3 / lm-eval convention: lower case,
 * punctuation removed, 13-grams). Items shorter than n tokens are matched whole, when they have at
 * least `minTokens` tokens (GPT-3's smallest n was 8); shorter ones cannot be checked reliably and are
 * counted as skipped. n-grams are kept as 53-bit keys from the two 32-bit hash lanes: a false match
 * needs a 2^-53 collision.
 */
import { hashString32, LANE_SEED_HI, LANE_SEED_LO, shingleHashes } from "./minhash/hash.ts"
import { simpleTokens } from "./text.ts"

export interface NgramHit {
  /** benchmark item index */
  readonly item: number
  /** n-grams of the item found in the text */
  readonly hits: number
  /** the item's n-gram count */
  readonly total: number
}

class Lanes {
  lo = new Int32Array(256)
  hi = new Int32Array(256)
  sLo = new Int32Array(256)
  sHi = new Int32Array(256)

  fill(tokens: ReadonlyArray<string>): void {
    if (tokens.length > this.lo.length) {
      const size = Math.max(tokens.length, this.lo.length * 2)
      this.lo = new Int32Array(size)
      this.hi = new Int32Array(size)
      this.sLo = new Int32Array(size)
      this.sHi = new Int32Array(size)
    }
    for (let i = 0; i < tokens.length; i++) {
      this.lo[i] = hashString32(tokens[i]!, LANE_SEED_LO)
      this.hi[i] = hashString32(tokens[i]!, LANE_SEED_HI)
    }
  }

  key(s: number): number {
    return (this.sHi[s]! >>> 11) * 4294967296 + (this.sLo[s]! >>> 0)
  }
}

export class NgramIndex {
  /** gram width -> key -> items holding it */
  private readonly byWidth = new Map<number, Map<number, Array<number>>>()
  private readonly totals: Array<number> = []
  private readonly lanes = new Lanes()
  skipped = 0

  constructor(readonly n: number, readonly minTokens: number) {}

  /** Adds an item; returns false when it is too short to check. */
  add(item: number, text: string): boolean {
    const tokens = simpleTokens(text)
    this.totals[item] = 0
    if (tokens.length < Math.min(this.n, this.minTokens)) {
      this.skipped++
      return false
    }
    const width = Math.min(this.n, tokens.length)
    let grams = this.byWidth.get(width)
    if (grams === undefined) this.byWidth.set(width, (grams = new Map()))
    const l = this.lanes
    l.fill(tokens)
    const count = shingleHashes(l.lo, l.hi, tokens.length, width, l.sLo, l.sHi)
    const seen = new Set<number>()
    for (let s = 0; s < count; s++) {
      const key = l.key(s)
      if (seen.has(key)) continue
      seen.add(key)
      const list = grams.get(key)
      if (list === undefined) grams.set(key, [item])
      else if (list[list.length - 1] !== item) list.push(item)
    }
    this.totals[item] = seen.size
    return true
  }

  /** Benchmark items sharing at least one n-gram with `text`. */
  match(text: string): Array<NgramHit> {
    const tokens = simpleTokens(text)
    if (tokens.length === 0) return []
    const l = this.lanes
    l.fill(tokens)
    const found = new Map<number, Set<number>>()
    for (const [width, grams] of this.byWidth) {
      if (tokens.length < width) continue
      const count = shingleHashes(l.lo, l.hi, tokens.length, width, l.sLo, l.sHi)
      for (let s = 0; s < count; s++) {
        const key = l.key(s)
        const items = grams.get(key)
        if (items === undefined) continue
        for (const it of items) {
          let set = found.get(it)
          if (set === undefined) found.set(it, (set = new Set()))
          set.add(key)
        }
      }
    }
    return [...found].map(([item, keys]) => ({ item, hits: keys.size, total: this.totals[item]! }))
  }
}

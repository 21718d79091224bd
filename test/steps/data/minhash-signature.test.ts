/**
 * The fast signing paths (one-pass ASCII word hashing, the WebAssembly SIMD minima kernel) against the
 * definition written out plainly here: simplified words, their two hash lanes, word n-gram shingles,
 * and for each function i the signed minimum of a_i*lo + c_i*hi + b_i. Any difference would change
 * which rows dedup keeps.
 */
import { describe, expect, it } from "vitest"
import { hashString32, LANE_SEED_HI, LANE_SEED_LO, shingleHashes } from "../../../steps/data/minhash/hash.ts"
import { coefficients, Signer, simplifyWords } from "../../../steps/data/minhash/signature.ts"
import { rng } from "./corpus.ts"

const reference = (text: string, ngram: number, k: number, seed: number): Int32Array | undefined => {
  const words = simplifyWords(text)
  if (words.length === 0) return undefined
  const lo = Int32Array.from(words, (w) => hashString32(w, LANE_SEED_LO))
  const hi = Int32Array.from(words, (w) => hashString32(w, LANE_SEED_HI))
  const sLo = new Int32Array(words.length)
  const sHi = new Int32Array(words.length)
  const count = shingleHashes(lo, hi, words.length, ngram, sLo, sHi)
  const { a, b, c } = coefficients(k, seed)
  const out = new Int32Array(k)
  for (let i = 0; i < k; i++) {
    let m = 0x7fffffff
    for (let s = 0; s < count; s++) m = Math.min(m, (Math.imul(a[i]!, sLo[s]!) + Math.imul(c[i]!, sHi[s]!) + b[i]!) | 0)
    out[i] = m
  }
  return out
}

describe("minhash signatures", () => {
  const r = rng(3)
  // ASCII with every kind of code unit (controls, punctuation, symbols, upper case, all whitespace),
  // and texts with non-ASCII letters, compatibility forms (NFKC), Unicode spaces and punctuation
  const pieces = ["The", "QUICK", "brown", "fox's", "e-mail", "a_b", "x\u0001y", "\t", "\v", "\f", "\r\n", "  ", "$5", "1+1=2", "C++", "~tilde`", "Ünïcödé", "ﬁne", "Ｆｕｌｌ", "naïve", "\u00a0", "\u2028", "—", "…", "İstanbul", "ß", "日本語", "😀", "[x]", "{y}", "|", "\u001c", "@home", "#tag"]
  const texts = Array.from({ length: 400 }, (_, i) => {
    const ascii = i % 2 === 0
    const pool = ascii ? pieces.filter((p) => /^[\x00-\x7f]*$/.test(p)) : pieces
    const ws = Array.from({ length: Math.floor(r() * 300) }, () => pool[Math.floor(r() * pool.length)]!)
    return ws.join(r() < 0.5 ? " " : "")
  })
  texts.push("", "   ", "...!!!", "one", "a b c", "x".repeat(5000), "word ".repeat(3000))

  for (const [ngram, k, wasm] of [[5, 112, true], [3, 10, true], [1, 1, true], [13, 256, true], [5, 112, false], [3, 10, false]] as const) {
    it(`equal the definition (ngram ${ngram}, ${k} hashes, ${wasm ? "WebAssembly" : "plain JS"}) on ASCII and Unicode texts`, () => {
      const signer = new Signer({ ngram, numHashes: k, seed: 9 }, { wasm })
      const out = new Int32Array(k * 2)
      for (const text of texts) {
        const want = reference(text, ngram, k, 9)
        const signed = signer.sign(text, out, k)
        expect(signed).toBe(want !== undefined)
        if (want !== undefined) expect(Array.from(out.subarray(k)), JSON.stringify(text.slice(0, 80))).toEqual(Array.from(want))
      }
    })
  }
})

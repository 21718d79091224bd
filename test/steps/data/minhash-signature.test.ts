/**
 * The fast signing paths (one-pass ASCII word hashing, the WebAssembly SIMD minima kernel) against the
 * definition written out plainly here: simplified words, their two hash lanes, word n-gram shingles,
 * and for each function i the signed minimum of a_i*lo + c_i*hi + b_i. Any difference would change
 * which rows dedup keeps.
 */
import { createHash } from "node:crypto"
import { describe, expect, it } from "vitest"
import { signingKernel } from "../../../steps/data/minhash/kernel-wasm.ts"
import { bandKey } from "../../../steps/data/minhash/hash.ts"
import { clusterSignatures } from "../../../steps/data/minhash/lsh.ts"
import { hashString32, LANE_SEED_HI, LANE_SEED_LO, shingleHashes } from "../../../steps/data/minhash/hash.ts"
import { coefficients, Signer, simplifyWords } from "../../../steps/data/minhash/signature.ts"
import { plantedCorpus, rng } from "./corpus.ts"

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
  it("are computed by the WebAssembly kernel on this Node (an invalid module would fall back to plain JS silently)", () => {
    expect(signingKernel()).toBeDefined()
  })

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
  // short texts of every length, separators anywhere (the word pass cuts texts into four stretches at
  // separators near their quarters)
  for (let len = 1; len <= 48; len++) {
    for (const alphabet of ["ab ", "aB.,", "x  "]) texts.push(Array.from({ length: len }, () => alphabet[Math.floor(r() * alphabet.length)]).join(""))
  }

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

  it("equal the definition on texts with every UTF-16 code unit outside the surrogates (the code-unit path)", () => {
    // each unit between two ASCII letters: a separator splits them, anything else joins them (NFKC and
    // lower-casing of the whole text included: expansions, İ's two units, combining marks)
    const units = Array.from({ length: 65536 }, (_, c) => c).filter((c) => c < 0xd800 || c > 0xdfff)
    const uniTexts: Array<string> = []
    // few units per text and single-word shingles, so that one unit split or joined changes the minima
    for (let i = 0; i < units.length; i += 6) uniTexts.push(units.slice(i, i + 6).map((c) => `a${String.fromCharCode(c)}b`).join(i % 12 === 0 ? " " : ""))
    uniTexts.push("\ufdfa \u3000x\u2000y\u1680z\ufeffw\u202fv\u205fu İSTANBUL ǅemal ﬃ ½ ㍿ ¡¿«»„€£©®°±×÷ e\u0301 日本語テキスト한국어", "é".repeat(4000))
    const signer = new Signer({ ngram: 1, numHashes: 16, seed: 4 })
    const out = new Int32Array(16)
    for (const text of uniTexts) {
      const want = reference(text, 1, 16, 4)
      expect(signer.sign(text, out, 0)).toBe(want !== undefined)
      if (want !== undefined) expect(Array.from(out), JSON.stringify(text.slice(0, 40))).toEqual(Array.from(want))
    }
  })

  for (const [ngram, k, bands, rows] of [[5, 112, 14, 8], [3, 10, 3, 3], [2, 7, 7, 1], [1, 1, 1, 1], [4, 256, 20, 12]] as const) {
    it(`band keys (${bands} x ${rows} of ${k} hashes) written while signing equal bandKey of the signature`, () => {
      for (const wasm of [true, false]) {
        const signer = new Signer({ ngram, numHashes: k, seed: 5 }, { wasm, banding: { bands, rows } })
        const out = new Int32Array(k + 3)
        const keys = new Uint32Array(bands + 2)
        for (const text of texts) {
          keys.fill(0)
          if (!signer.sign(text, out, 3, keys, 2)) continue
          const want = Array.from({ length: bands }, (_, b) => bandKey(out, 3 + b * rows, rows, b))
          expect(Array.from(keys.subarray(2)), `${wasm ? "WebAssembly" : "plain JS"}: ${JSON.stringify(text.slice(0, 80))}`).toEqual(want)
        }
      }
    })
  }
})

// Pinned values, computed once (before the kernels were tuned): any change to the hashing, the
// coefficients or the LSH would change which rows a cached dedup keeps, so it must show up here.
describe("minhash signatures and clusters are pinned", () => {
  it("for two fixed texts, in WebAssembly and plain JS", () => {
    for (const wasm of [true, false]) {
      const signer = new Signer({ ngram: 5, numHashes: 16, seed: 1 }, { wasm })
      const out = new Int32Array(16)
      signer.sign("The quick brown fox jumps over the lazy dog; the dog sleeps.", out, 0)
      expect(Array.from(out)).toEqual([-1201926919, -1654405374, -1993194329, -1121182662, -1701981219, -1953021952, -1027232749, -1861387656, -1395418404, -2132531913, -1456917282, -1987544208, -1474308705, -1992116822, -2065467958, -1168293229])
      signer.sign("Ünïcödé naïve ﬁne café — déjà vu, straße", out, 0)
      expect(Array.from(out)).toEqual([-1191402197, -828616579, -1462128719, -1469694974, -2138286221, -19318706, -598123636, -2056444186, -169830134, -90421477, -1968305355, -1564499368, -553532816, -1262267722, -2040095946, -1140451003])
    }
  })

  it("for a planted corpus: every signature (digest) and the clusters LSH finds", () => {
    const { docs } = plantedCorpus(5, 1500)
    const k = 112
    const signer = new Signer({ ngram: 5, numHashes: k, seed: 1 })
    const sigs = new Int32Array(docs.length * k)
    const signed = new Uint8Array(docs.length)
    for (let i = 0; i < docs.length; i++) signed[i] = signer.sign(docs[i]!, sigs, i * k) ? 1 : 0
    expect(docs.length).toBe(2133)
    expect(createHash("sha256").update(new Uint8Array(sigs.buffer)).digest("hex")).toBe("147d32c439524e1584d3ddb2146439add556117e2188967218068ef874bf9490")
    const lsh = { bands: 14, rows: 8, threshold: 0.8, maxComparisons: 64 }
    const { clusters, compared, matched } = clusterSignatures(sigs, signed, docs.length, k, lsh)
    // each document's cluster named by its first member
    const named = (uf: { find: (i: number) => number }): Int32Array => {
      const first = new Map<number, number>()
      return Int32Array.from(docs, (_, i) => {
        const r = uf.find(i)
        if (!first.has(r)) first.set(r, i)
        return first.get(r)!
      })
    }
    const canon = named(clusters)
    expect({ compared, matched, removed: canon.filter((c, i) => c !== i).length }).toEqual({ compared: 498, matched: 353, removed: 353 })
    expect(createHash("sha256").update(new Uint8Array(canon.buffer)).digest("hex")).toBe("99b09358d7745e73eabe76576d88ed6ab79f5ec36e5663016f8f542aa636e918")
    // the same clusters from band keys the signer wrote
    const keyed = new Signer({ ngram: 5, numHashes: k, seed: 1 }, { banding: { bands: 14, rows: 8 } })
    const keys = new Uint32Array(docs.length * 14)
    for (let i = 0; i < docs.length; i++) keyed.sign(docs[i]!, sigs, i * k, keys, i * 14)
    const again = clusterSignatures(sigs, signed, docs.length, k, lsh, undefined, keys)
    expect({ compared: again.compared, matched: again.matched }).toEqual({ compared, matched })
    expect(named(again.clusters)).toEqual(canon)
  })
})

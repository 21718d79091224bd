/**
 * Generated corpora with planted near-duplicates, and brute-force exact Jaccard to judge MinHash by.
 * Words come from a Zipf-like vocabulary so texts look like language (frequent words repeat) without
 * making unrelated texts share 5-grams.
 */
import { simplifyWords } from "../../../steps/data/minhash/signature.ts"

export const rng = (seed: number) => {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) | 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface Corpus {
  readonly docs: Array<string>
}

/** base docs, plus near-duplicates (a few word edits), heavier edits (hard negatives) and exact copies */
export const plantedCorpus = (seed: number, bases: number): Corpus => {
  const r = rng(seed)
  const vocab = Array.from({ length: 4000 }, (_, i) => "w" + i.toString(36) + (i % 7 === 0 ? "ing" : ""))
  const word = () => vocab[Math.floor(vocab.length * Math.pow(r(), 2.2))]!
  const base = () => Array.from({ length: 60 + Math.floor(r() * 120) }, word)
  const edit = (ws: Array<string>, edits: number): Array<string> => {
    const out = ws.slice()
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(r() * out.length)
      const op = r()
      if (op < 0.5) out[at] = word()
      else if (op < 0.75) out.splice(at, 0, word())
      else out.splice(at, 1)
    }
    return out
  }
  const docs: Array<string> = []
  for (let b = 0; b < bases; b++) {
    const ws = base()
    docs.push(ws.join(" "))
    const roll = r()
    if (roll < 0.3) docs.push(edit(ws, 1 + Math.floor(r() * 3)).join(" "))
    else if (roll < 0.4) docs.push(edit(ws, Math.floor(ws.length * (0.1 + r() * 0.3))).join(" "))
    else if (roll < 0.43) docs.push(ws.join(" "))
  }
  // shuffle so duplicates are not neighbours
  for (let i = docs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1))
    ;[docs[i], docs[j]] = [docs[j]!, docs[i]!]
  }
  return { docs }
}

export const shingleSet = (text: string, n: number): Set<string> => {
  const ws = simplifyWords(text)
  const width = Math.min(n, ws.length)
  const s = new Set<string>()
  for (let i = 0; i + width <= ws.length && width > 0; i++) s.add(ws.slice(i, i + width).join(" "))
  return s
}

/** Exact Jaccard of every pair sharing at least one shingle (all other pairs are 0). */
export const bruteForcePairs = (docs: ReadonlyArray<string>, n: number): Map<string, number> => {
  const sets = docs.map((d) => shingleSet(d, n))
  const postings = new Map<string, Array<number>>()
  sets.forEach((s, i) => {
    for (const sh of s) {
      const l = postings.get(sh)
      if (l === undefined) postings.set(sh, [i])
      else if (l[l.length - 1] !== i) l.push(i)
    }
  })
  const inter = new Map<string, number>()
  for (const l of postings.values()) {
    for (let a = 0; a < l.length; a++) {
      for (let b = a + 1; b < l.length; b++) {
        const key = `${l[a]}-${l[b]}`
        inter.set(key, (inter.get(key) ?? 0) + 1)
      }
    }
  }
  const out = new Map<string, number>()
  for (const [key, i] of inter) {
    const [a, b] = key.split("-").map(Number) as [number, number]
    out.set(key, i / (sets[a]!.size + sets[b]!.size - i))
  }
  return out
}

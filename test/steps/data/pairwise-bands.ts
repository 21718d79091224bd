/**
 * What the band tests and bench/minhash-bands.ts share: a corpus signed by the real sign stage, and the
 * MinHash band verification as it was before `verifyBand` (steps/data/minhash/staged.ts): the same
 * buckets (rows sorted by band key), order and skips, with two signature reads per comparison, the
 * reference they compare against.
 */
import * as path from "node:path"
import { executeTask } from "../../../steps/data/fanout.ts"
import { detectFormat } from "../../../steps/data/formats.ts"
import type { SignatureFiles } from "../../../steps/data/minhash/staged.ts"
import { UnionFind } from "../../../steps/data/minhash/union-find.ts"
import { planPieces } from "../../../steps/data/shards.ts"

/** Signs a JSONL corpus in about `pieces` pieces (5-grams, keep longest, seed 1) under `dir`/sign: each piece's sign directory and rows. */
export const signCorpus = async (
  file: string,
  dir: string,
  pieces: number,
  bands: number,
  rows: number
): Promise<{ readonly signDirs: Array<string>; readonly counts: Array<number> }> => {
  const format = await detectFormat(file)
  const signDirs: Array<string> = []
  const counts: Array<number> = []
  for (const [i, piece] of (await planPieces(file, pieces)).entries()) {
    const spec = { op: "minhash-sign", id: String(i), dir: path.join(dir, "sign", String(i)), piece, format, onInvalid: "error", fields: ["text"], keep: "longest", ngram: 5, bands, rows, seed: 1 }
    counts.push((await executeTask(spec)).rows as number)
    signDirs.push(spec.dir)
  }
  return { signDirs, counts }
}

/** The loop verifyBand replaced: the same buckets and order, two signature reads per comparison. */
export const pairwise = (
  sv: Uint32Array,
  m: number,
  n: number,
  sigs: SignatureFiles,
  threshold: number,
  maxComparisons: number
): { readonly edges: Array<number>; readonly compared: number } => {
  const joined = new UnionFind(n)
  const edges: Array<number> = []
  let compared = 0
  for (let start = 0; start < m;) {
    let end = start + 1
    while (end < m && sv[2 * end + 1] === sv[2 * start + 1]) end++
    for (let j = start + 1; j < end; j++) {
      let budget = maxComparisons
      for (let t = start; t < j && budget > 0; t++) {
        if (joined.find(sv[2 * t]!) === joined.find(sv[2 * j]!)) continue
        budget--
        compared++
        if (sigs.jaccard(sv[2 * t]!, sv[2 * j]!) >= threshold) {
          joined.union(sv[2 * t]!, sv[2 * j]!)
          edges.push(sv[2 * t]!, sv[2 * j]!)
        }
      }
    }
    start = end
  }
  return { edges, compared }
}

/**
 * The MinHash band verification as it was before `verifyBand` (steps/data/minhash/staged.ts): the same
 * buckets (rows sorted by band key), order and skips, with two signature reads per comparison. The
 * reference the band tests and bench/minhash-bands.ts compare against.
 */
import type { SignatureFiles } from "../../../steps/data/minhash/staged.ts"
import { UnionFind } from "../../../steps/data/minhash/union-find.ts"

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

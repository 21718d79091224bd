/**
 * Sorting a flagged (training row, benchmark item) pair into Platypus' three review categories, and
 * review.md, the pairs listed by category for a person. The same heuristics are implemented in Python
 * (py/review.py) for the semantic method; a shared fixture (test/steps/data/fixtures/review-cases.json)
 * keeps the two in agreement.
 *
 * - question similarity: 1 - word edit distance / longer length, on simplified tokens (lower case,
 *   no punctuation); a reordering of the same words counts as 1.
 * - answer agreement (only when the benchmark's answer is known): the training answer contains the
 *   benchmark answer's tokens as a contiguous run, or their token F1 is >= 0.75 (so "quadrant II" does
 *   not agree with "quadrant IV": F1 0.5).
 * Categories, in order:
 * 1. "similar but different": the answer is known and does not agree (e.g. an axis or quadrant changed);
 * 2. "duplicate": question similarity >= duplicateSimilarity (default 0.9): near-verbatim, a word
 *    changed, or the same words reordered;
 * 3. "gray area": not verbatim, but the answer agrees (or is unknown).
 */
import { simpleTokens } from "./text.ts"

export type Category = "duplicate" | "gray area" | "similar but different"
export const categories: ReadonlyArray<Category> = ["duplicate", "gray area", "similar but different"]

/** A record with a fresh value for each category (counts, lists of pairs). */
export const categoryRecord = <A>(value: () => A): Record<Category, A> =>
  Object.fromEntries(categories.map((c) => [c, value()])) as Record<Category, A>

export interface Verdict {
  readonly category: Category
  readonly questionSimilarity: number
  readonly answerAgrees: boolean | null
}

const maxTokens = 512

/** Word-level Levenshtein distance (two rows of the table). */
export const wordEditDistance = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): number => {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  let cur = new Array<number>(b.length + 1).fill(0)
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i
    for (let j = 1; j <= b.length; j++) {
      const sub = prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)
      cur[j] = Math.min(sub, prev[j]! + 1, cur[j - 1]! + 1)
    }
    ;[prev, cur] = [cur, prev]
  }
  return prev[b.length]!
}

const sameWords = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean =>
  a.length === b.length && [...a].sort().join(" ") === [...b].sort().join(" ")

export const questionSimilarity = (a: string, b: string): number => {
  const ta = simpleTokens(a).slice(0, maxTokens)
  const tb = simpleTokens(b).slice(0, maxTokens)
  if (ta.length === 0 && tb.length === 0) return 1
  if (sameWords(ta, tb)) return 1
  return 1 - wordEditDistance(ta, tb) / Math.max(ta.length, tb.length)
}

const containsRun = (hay: ReadonlyArray<string>, needle: ReadonlyArray<string>): boolean => {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer
    return true
  }
  return false
}

export const tokenF1 = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): number => {
  if (a.length === 0 || b.length === 0) return 0
  const counts = new Map<string, number>()
  for (const t of b) counts.set(t, (counts.get(t) ?? 0) + 1)
  let common = 0
  for (const t of a) {
    const c = counts.get(t) ?? 0
    if (c > 0) {
      common++
      counts.set(t, c - 1)
    }
  }
  if (common === 0) return 0
  const p = common / a.length
  const r = common / b.length
  return (2 * p * r) / (p + r)
}

export const answerAgrees = (trainAnswer: string, benchAnswer: string | undefined): boolean | null => {
  if (benchAnswer === undefined) return null
  const ba = simpleTokens(benchAnswer)
  if (ba.length === 0) return null
  const ta = simpleTokens(trainAnswer)
  return containsRun(ta, ba) || tokenF1(ta, ba) >= 0.75
}

export const categorize = (
  pair: { readonly trainQuestion: string; readonly trainAnswer: string; readonly benchQuestion: string; readonly benchAnswer?: string | undefined },
  duplicateSimilarity = 0.9
): Verdict => {
  const qs = Math.round(questionSimilarity(pair.trainQuestion, pair.benchQuestion) * 1000) / 1000
  const agrees = answerAgrees(pair.trainAnswer, pair.benchAnswer)
  const category: Category = agrees === false ? "similar but different" : qs >= duplicateSimilarity ? "duplicate" : "gray area"
  return { category, questionSimilarity: qs, answerAgrees: agrees }
}

/** A flagged pair as the reports list it. */
export interface ReviewPair {
  readonly train: string
  readonly trainQuestion: string
  readonly benchmark: string
  readonly item: string
  readonly benchQuestion: string
  readonly benchAnswer?: string | undefined
  readonly score: number
  readonly category: Category
  readonly questionSimilarity: number
  readonly answerAgrees: boolean | null
  readonly removed: boolean
}

const cell = (s: string): string => s.replace(/\|/g, "\\|").replace(/\s+/g, " ")

/** Pairs review.md lists per category: enough to judge a category by, and the file stays readable
 * (and bounded) when a leak flags millions of rows; flagged.jsonl has them all. */
export const reviewPairsPerCategory = 200

/** What review.md shows: the counts of every flagged pair, and the first pairs of each category. */
export interface ReviewListing {
  readonly flaggedPairs: number
  readonly byCategory: Record<Category, number>
  /** the first pairs of each category in input order (at most reviewPairsPerCategory) */
  readonly shown: Record<Category, ReadonlyArray<ReviewPair>>
}

/** The listing of pairs held in memory (a test's, a small run's). */
export const listingOf = (pairs: ReadonlyArray<ReviewPair>, perCategory = reviewPairsPerCategory): ReviewListing => {
  const byCategory = categoryRecord(() => 0)
  const shown = categoryRecord((): Array<ReviewPair> => [])
  for (const p of pairs) if (byCategory[p.category]++ < perCategory) shown[p.category].push(p)
  return { flaggedPairs: pairs.length, byCategory, shown }
}

/**
 * review.md: the flagged pairs grouped by category, for a person to read: the first pairs of each
 * category, then how many more flagged.jsonl holds (report.json has the counts and a few examples).
 * Both decontamination kinds write it here from their flagged.jsonl.
 */
export const reviewMarkdown = (title: string, listing: ReviewListing): string => {
  const out = [`# ${title}`, "", `${listing.flaggedPairs} flagged pair(s).`, ""]
  for (const c of categories) {
    const list = listing.shown[c]
    const count = listing.byCategory[c]
    out.push(`## ${c} (${count})`, "")
    if (count === 0) continue
    out.push("| training row | benchmark item | score | question sim. | answer agrees | removed | training question | benchmark question |")
    out.push("|---|---|---|---|---|---|---|---|")
    for (const p of list) {
      const agrees = p.answerAgrees === null ? "?" : p.answerAgrees ? "yes" : "no"
      out.push(
        `| ${p.train} | ${p.benchmark} ${p.item} | ${p.score} | ${p.questionSimilarity} | ${agrees} | ${p.removed ? "yes" : "no"} | ${cell(p.trainQuestion)} | ${cell(p.benchQuestion)} |`
      )
    }
    out.push("")
    if (count > list.length) out.push(`... and ${count - list.length} more: see flagged.jsonl`, "")
  }
  return out.join("\n")
}

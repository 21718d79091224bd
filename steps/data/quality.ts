/**
 * Gopher-style quality rules (Rae et al. 2021, as datatrove's GopherQualityFilter implements them).
 * Each rule has a threshold; `null` turns it off. A row is removed by the first rule it fails, and
 * that rule gets the blame in the report.
 */
import * as Schema from "effect/Schema"
import { withDefault } from "./common.ts"
import { words } from "./text.ts"

const NullableNumber = Schema.NullOr(Schema.Number)

/** datatrove's defaults, which are Gopher's. */
export const GopherParams = Schema.Struct({
  minWords: withDefault(NullableNumber, 50),
  maxWords: withDefault(NullableNumber, 100_000),
  minMeanWordLength: withDefault(NullableNumber, 3),
  maxMeanWordLength: withDefault(NullableNumber, 10),
  maxSymbolWordRatio: withDefault(NullableNumber, 0.1).annotate({ description: "\"#\" per word, and (\"...\" + \"…\") per word, each" }),
  maxBulletLineRatio: withDefault(NullableNumber, 0.9).annotate({
    description: "share of lines starting with a bullet"
  }),
  maxEllipsisLineRatio: withDefault(NullableNumber, 0.3).annotate({
    description: "share of lines ending with an ellipsis"
  }),
  minAlphaWordRatio: withDefault(NullableNumber, 0.8).annotate({
    description: "share of words holding at least one alphabetic character"
  }),
  minStopWords: withDefault(NullableNumber, 2).annotate({
    description: "distinct Gopher stop words, as written (lower case): the, be, to, of, and, that, have, with"
  })
})
export type GopherParams = typeof GopherParams.Type

const punctOnly = /^[\p{P}\p{S}]+$/u
const hasAlpha = /\p{L}/u
const bulletStart = /^\s*[•-]/u // datatrove's two bullets
const lineBreak = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/
const ellipsisEnd = /(\.\.\.|…)\s*$/
const stopWords = new Set(["the", "be", "to", "of", "and", "that", "have", "with"])

/** The name of the first Gopher rule `text` fails, or undefined when it passes them all. */
export const gopherFailure = (text: string, p: GopherParams): string | undefined => {
  const all = words(text)
  const real = all.filter((w) => !punctOnly.test(w))
  const n = real.length
  if (p.minWords !== null && n < p.minWords) return "gopher.minWords"
  if (p.maxWords !== null && n > p.maxWords) return "gopher.maxWords"
  const mean = n === 0 ? 0 : real.reduce((a, w) => a + w.length, 0) / n
  if (p.minMeanWordLength !== null && mean < p.minMeanWordLength) return "gopher.minMeanWordLength"
  if (p.maxMeanWordLength !== null && mean > p.maxMeanWordLength) return "gopher.maxMeanWordLength"
  // as datatrove: hashes and ellipses each against the threshold (not their sum), per word of all words
  if (p.maxSymbolWordRatio !== null) {
    const perWord = (k: number) => k / Math.max(all.length, 1)
    if (perWord(count(text, "#")) > p.maxSymbolWordRatio || perWord(count(text, "...") + count(text, "…")) > p.maxSymbolWordRatio) {
      return "gopher.maxSymbolWordRatio"
    }
  }
  // as datatrove (Python's str.splitlines): blank lines count in the line ratios' denominators
  const lines = text.split(lineBreak)
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop()
  if (p.maxBulletLineRatio !== null && lines.length > 0) {
    if (lines.filter((l) => bulletStart.test(l)).length / lines.length > p.maxBulletLineRatio) return "gopher.maxBulletLineRatio"
  }
  if (p.maxEllipsisLineRatio !== null && lines.length > 0) {
    if (lines.filter((l) => ellipsisEnd.test(l)).length / lines.length > p.maxEllipsisLineRatio) {
      return "gopher.maxEllipsisLineRatio"
    }
  }
  if (p.minAlphaWordRatio !== null && all.length > 0) {
    if (all.filter((w) => hasAlpha.test(w)).length / all.length < p.minAlphaWordRatio) return "gopher.minAlphaWordRatio"
  }
  // as datatrove: how many distinct stop words occur, case-sensitively ("The" is not "the")
  if (p.minStopWords !== null) {
    if (new Set(all.filter((w) => stopWords.has(w))).size < p.minStopWords) return "gopher.minStopWords"
  }
  return undefined
}

const count = (s: string, sub: string): number => {
  let n = 0
  for (let i = s.indexOf(sub); i !== -1; i = s.indexOf(sub, i + sub.length)) n++
  return n
}

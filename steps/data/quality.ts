/**
 * Gopher-style quality rules (Rae et al. 2021, as datatrove's GopherQualityFilter implements them).
 * Each rule has a threshold; `null` turns it off. A row is removed by the first rule it fails, and
 * that rule gets the blame in the report.
 */
import * as Schema from "effect/Schema"
import { withDefault } from "./common.ts"
import { whitespaceChars, words } from "./text.ts"

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

/**
 * A symbol word, made of these characters only, is left out of the word count and the mean word
 * length (not out of the hash, ellipsis, alphabetic and stop word ratios, which count every word), as
 * datatrove's GopherQualityFilter leaves out words made of its PUNCTUATION_SET only. That
 * set is narrower than Unicode's punctuation and symbols: `→`, `•`, `©`, `€`, `‘`, `·`, `¿`, emoji and
 * box drawing (but `━` and `►`) are words there, and so here. It is built from Unicode properties:
 * - control characters (\p{Cc}; datatrove lists C0 and C1 but tab and newline, which split words anyway),
 * - ASCII punctuation and symbols (all 32),
 * - sentence terminals (\p{Sentence_Terminal}: `.`, `!`, `?`, `。`, `．`, `！`, `？`, `‽`, `⁉`, `।`, `؟`, `።`, ...),
 * plus a delta named here: the Khmer signs U+17D6 ៖, U+17D9 ៙, U+17DA ៚ (datatrove counts them among
 * its terminal punctuation; Unicode does not), and datatrove's hand-picked common punctuation outside
 * those: « » ´ – — ’ “ ” „ … ∶ ━ ► 、 〈 〉 《 》 「 」 【 】 and the fullwidth （ ） ， ： ； ～ ％.
 * Where the two sets still differ (test/steps/data/clean.test.ts checks every code point against
 * datatrove 0.10.1's set when the Python env is there): U+FF11 １ (FULLWIDTH DIGIT ONE, which datatrove
 * lists) is a word here, being a digit; and the sentence terminals datatrove's list lacks are symbols
 * here: U+2024 ․ and the vertical forms U+FE12 ︒, U+FE15 ︕, U+FE16 ︖ (NFKC, on by default, makes them
 * `.`, `。`, `!`, `?` before the rules anyway), the Coptic U+2CF9-U+2CFB ⳹ ⳺ ⳻, and those new in Unicode
 * 16 (U+1B4E, U+1B4F, U+1B7F, U+113D4, U+113D5, U+16D6E, U+16D6F).
 */
const symbolWord =
  /^[\p{Cc}!-\/:-@\[-`{-~\p{Sentence_Terminal}\u17D6\u17D9\u17DA\u00AB\u00BB\u00B4\u2013\u2014\u2019\u201C-\u201E\u2026\u2236\u2501\u25BA\u3001\u3008-\u300D\u3010\u3011\uFF05\uFF08\uFF09\uFF0C\uFF1A\uFF1B\uFF5E]+$/u

/** Whether `ch` (one code point) is a character symbol words are made of (symbolWord). */
export const isSymbolChar = (ch: string): boolean => symbolWord.test(ch)

const hasAlpha = /\p{L}/u // Python's str.isalpha: categories Lu, Ll, Lt, Lm, Lo
// Python's str.lstrip and str.rstrip strip whitespaceChars, not JavaScript's \s
const bulletStart = new RegExp(`^[${whitespaceChars}]*[•-]`, "u") // datatrove's two bullets
const lineBreak = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/
const ellipsisEnd = new RegExp(`(\\.\\.\\.|…)[${whitespaceChars}]*$`, "u")
const stopWords = new Set(["the", "be", "to", "of", "and", "that", "have", "with"])

/** The name of the first Gopher rule `text` fails, or undefined when it passes them all. */
export const gopherFailure = (text: string, p: GopherParams): string | undefined => {
  const all = words(text)
  const real = all.filter((w) => !symbolWord.test(w))
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

/**
 * Text normalization shared by the data steps. Two levels: `cleanText` repairs text that is kept
 * (NFKC, control characters, whitespace), and `simpleTokens` is the aggressive form used only for
 * matching (lower case, punctuation removed), as datatrove's `simplify_text` and lm-eval's n-gram
 * decontamination do.
 */

export interface CleanTextOptions {
  readonly nfkc: boolean
  readonly controlChars: boolean
  readonly whitespace: boolean
}

// C0/C1 controls except \t \n, plus the zero-width space, word joiner and BOM that survive NFKC. ZWNJ
// and ZWJ (U+200C, U+200D) stay: emoji sequences and Persian and Indic scripts need them.
const controlRe = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u200B\u2060\uFEFF]/g
// \r\n and lone \r become \n; runs of horizontal space become one space
const crRe = /\r\n?/g
const hspaceRe = /[^\S\n]+/g
const trailingRe = / *\n */g
const blankRunRe = /\n{3,}/g

export const cleanText = (s: string, o: CleanTextOptions): string => {
  let t = s
  if (o.nfkc) t = t.normalize("NFKC")
  if (o.controlChars) t = t.replace(controlRe, "")
  if (o.whitespace) {
    t = t.replace(crRe, "\n").replace(hspaceRe, " ").replace(trailingRe, "\n").replace(blankRunRe, "\n\n").trim()
  }
  return t
}

/**
 * Python's whitespace (str.isspace, what str.split() splits on), as a character class's contents:
 * JavaScript's \s differs by U+FEFF (not whitespace in Python) and U+001C-U+001F, U+0085 (whitespace
 * in Python). cleanText removes all of those, so it matters only with controlChars off.
 */
export const whitespaceChars = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
const wordRe = new RegExp(`[^${whitespaceChars}]+`, "gu")

/** Words as whitespace-separated tokens, as Python's str.split() makes them (what Gopher's rules count). */
export const words = (s: string): Array<string> => s.match(wordRe) ?? []

const punctRe = /[\p{P}\p{S}]+/gu

/** Lower-cased NFKC words with punctuation and symbols removed: the tokens matching is done on. */
export const simpleTokens = (s: string): Array<string> => {
  const t = s.normalize("NFKC").toLowerCase().replace(punctRe, " ").trim()
  return t.length === 0 ? [] : t.split(/\s+/)
}

/** Text for exact-match keys: NFKC, lower case unless caseSensitive, whitespace collapsed. */
export const keyText = (s: string, caseSensitive: boolean): string => {
  const t = s.normalize("NFKC").replace(/\s+/g, " ").trim()
  return caseSensitive ? t : t.toLowerCase()
}

/** A short preview of a row's text for reports. */
export const preview = (s: string, max = 160): string => {
  const t = s.replace(/\s+/g, " ").trim()
  return t.length <= max ? t : t.slice(0, max - 1) + "…"
}

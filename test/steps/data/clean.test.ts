import * as path from "node:path"
import { execa } from "execa"
import { describe, expect, it } from "vitest"
import { pythonEnvVars, pythonExecutable } from "../../../engine/python.ts"
import { clean } from "../../../steps/data/clean.ts"
import { gopherFailure, GopherParams, isSymbolChar } from "../../../steps/data/quality.ts"
import { Schema } from "effect"
import { errorOf, readJsonlFile, runStep, tempDir, writeJsonl } from "./helpers.ts"

const gopherDefaults = Schema.decodeUnknownSync(GopherParams)({})
const prose = "The quick brown fox jumps over the lazy dog and then it runs to the river with the other animals of the forest. "

describe("clean", () => {
  it("normalizes text and drops rows per rule, reporting each rule with examples", async () => {
    const f = writeJsonl(path.join(tempDir(), "in.jsonl"), [
      { instruction: "Ｆｕｌｌ\u00a0width   text\u0007 here", input: "", output: "kept  \r\n answer" },
      { instruction: "   ", output: "no question" },
      { instruction: "short", output: "x" },
      { instruction: "As an AI language model I cannot", output: "refusal text here" },
      { instruction: "A normal question about rivers?", output: "A normal answer about rivers." }
    ])
    const r = await runStep(clean, { data: f }, { minChars: 12, dropPatterns: ["(?i)^as an ai"] })
    expect(r.rows).toEqual([
      { instruction: "Full width text here", input: "", output: "kept\nanswer" },
      { instruction: "A normal question about rivers?", output: "A normal answer about rivers." }
    ])
    expect(r.report.removedByRule).toEqual({ "empty.instruction": 1, minChars: 1, "dropPatterns[0]": 1 })
    expect(r.report.examples["minChars"][0]).toMatchObject({ at: "in.jsonl:3", text: "short x" })
    expect(r.report.modified).toBe(2)
    expect(r.metrics).toMatchObject({ rows_in: 5, rows_out: 2, removed: 3 })
    expect(readJsonlFile(path.join(r.output, "removed.jsonl")).map((x) => x.rule)).toEqual([
      "empty.instruction",
      "minChars",
      "dropPatterns[0]"
    ])
  })

  it("applies word limits and Gopher rules when asked", async () => {
    const f = writeJsonl(path.join(tempDir(), "in.jsonl"), [
      { text: prose.repeat(3) },
      { text: "too few words" },
      { text: "#tag ".repeat(30) + prose.repeat(3) },
      { text: prose.repeat(200) }
    ])
    const r = await runStep(clean, { data: f }, { maxWords: 1000, gopher: {} })
    expect(r.rows).toEqual([{ text: prose.repeat(3).trim() }])
    expect(r.report.removedByRule).toEqual({ "gopher.minWords": 1, "gopher.maxSymbolWordRatio": 1, maxWords: 1 })
  })

  it("keeps a row when the rule that would drop it is turned off", async () => {
    const f = writeJsonl(path.join(tempDir(), "in.jsonl"), [{ text: "too few words but fine" }])
    const r = await runStep(clean, { data: f }, { gopher: { minWords: null, minStopWords: null } })
    expect(r.rows).toHaveLength(1)
  })

  it("keeps ZWJ and ZWNJ (emoji sequences, Persian and Indic scripts) and drops other zero-width characters", async () => {
    const family = "\u{1F468}\u200D\u{1F469}\u200D\u{1F467}"
    const persian = "\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645"
    const f = writeJsonl(path.join(tempDir(), "in.jsonl"), [{ text: `${family} ${persian} zero\u200Bwidth\u2060joined\uFEFF` }])
    const r = await runStep(clean, { data: f })
    expect(r.rows).toEqual([{ text: `${family} ${persian} zerowidthjoined` }])
  })

  it("fails on a malformed line by default and counts it with onInvalid: skip", async () => {
    const f = writeJsonl(path.join(tempDir(), "in.jsonl"), [{ text: "fine row" }, { text: 3 }])
    expect(await errorOf(runStep(clean, { data: f }))).toContain(`${f}:2: field text: Expected string`)
    const r = await runStep(clean, { data: f }, { onInvalid: "skip" })
    expect(r.rows).toEqual([{ text: "fine row" }])
    expect(r.report.invalidSkipped).toBe(1)
    expect(r.metrics.invalid_skipped).toBe(1)
  })

  it("rejects a bad regular expression naming the param", async () => {
    const f = writeJsonl(path.join(tempDir(), "in.jsonl"), [{ text: "x" }])
    expect(await errorOf(runStep(clean, { data: f }, { dropPatterns: ["ok", "(unclosed"] }))).toContain(
      "param dropPatterns[1] is not a valid regular expression"
    )
  })
})

describe("gopher rules", () => {
  it("measures each rule", () => {
    const g = gopherDefaults
    expect(gopherFailure(prose.repeat(3), g)).toBeUndefined()
    expect(gopherFailure(("verylongwordsonly ".repeat(60)), g)).toBe("gopher.maxMeanWordLength")
    expect(gopherFailure(Array.from({ length: 10 }, () => "- " + prose).join("\n"), g)).toBe("gopher.maxBulletLineRatio")
    expect(gopherFailure(prose.repeat(3) + " ###".repeat(20), g)).toBe("gopher.maxSymbolWordRatio")
    expect(gopherFailure(Array.from({ length: 10 }, () => prose + "…").join("\n"), { ...g, maxSymbolWordRatio: null })).toBe(
      "gopher.maxEllipsisLineRatio"
    )
    expect(gopherFailure(prose.repeat(2) + " 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26", g)).toBe(
      "gopher.minAlphaWordRatio"
    )
    expect(gopherFailure("cat dog bird fish ".repeat(20), g)).toBe("gopher.minStopWords")
  })

  // each input decided as datatrove's GopherQualityFilter decides it (checked with datatrove, whitespace words)
  it("counts as datatrove does", () => {
    const g = gopherDefaults
    // distinct stop words, case-sensitively: one "the" repeated, or "The"/"And", are one and none
    expect(gopherFailure("the quick brown animal jumped across some wooden fences ".repeat(6), g)).toBe("gopher.minStopWords")
    expect(gopherFailure("The quick brown animal jumped across some wooden fences. And ".repeat(6), g)).toBe("gopher.minStopWords")
    expect(gopherFailure("the quick brown animal jumped across some wooden fences and ".repeat(6), g)).toBeUndefined()
    // hashes and ellipses each under 10% of the words, together over: kept
    expect(gopherFailure("#a #b #c #d #e #f ... ... ... ... ... ... " + prose.repeat(4), g)).toBeUndefined()
    // blank lines count among the lines: 2 of 4 lines end with an ellipsis (50%), 2 of 2 without the blank ones
    expect(gopherFailure(`${prose}...\n\n${prose}…\n\n`, { ...g, minWords: null, maxSymbolWordRatio: null })).toBe("gopher.maxEllipsisLineRatio")
    expect(gopherFailure(`${prose}...\n\n\n\n${prose}\n\n${prose}\n\n\n\n`, { ...g, minWords: null, maxSymbolWordRatio: null })).toBeUndefined()
  })
})

// Symbol words (left out of the word count and the mean length): datatrove's PUNCTUATION_SET, not
// Unicode's punctuation and symbols. Each token t goes into two documents: 48 words and `t t` (50
// words if t counts as one, too few if not), and 50 three-letter words and t ten times (a mean word
// length under 3 if t counts, 3 if not).
const words48 = Array.from({ length: 48 }, (_, i) => prose.split(" ")[i % 23]!.replace(".", "")).join(" ")
const short50 = Array.from({ length: 50 }, (_, i) => ["the", "and", "cat", "dog", "sun", "red", "box"][i % 7]).join(" ")
const probeTexts = (t: string) => [`${words48} ${t} ${t}`, `${short50} ${Array(10).fill(t).join(" ")}`]
// datatrove 0.10.1's GopherQualityFilter's answers on those two documents (whitespace words; null: kept).
// The last test checks them against datatrove itself; test/steps/data/fixtures/gopher_datatrove.py
// prints them again for a list of texts (the Python env's datatrove).
const short = "gopher_short_doc"
const belowAvg = "gopher_below_avg_threshold"
const datatroveAnswers: ReadonlyArray<readonly [string, string | null, string | null]> = [
  // words there (Unicode punctuation or symbols outside its set), so here
  ...[..."→•©€®°§¶·‘‹›¿¡✓😀▶─※†±×£′〜『〔・♥★१", "→»"].map((t) => [t, null, belowAvg] as const),
  ["(c)", null, null],
  // symbols there, so here: ASCII punctuation and symbols, sentence terminals, datatrove's hand-picked delta
  ...[..."$%@|~—–«»“”„’´∶━►、。〈〉《》「」【】（），：；～％！？．‽⁉؟।॥։።۔၊။។៕៖៙៚\u{11F43}", "—»", "!?", "->"].map((t) => [t, short, null] as const),
  ["…", short, "gopher_too_many_ellipsis"],
  ["...", short, "gopher_too_many_ellipsis"]
]
// where anneal's set differs from datatrove's (quality.ts says why): datatrove's answers, then anneal's
const documentedDifferences: ReadonlyArray<readonly [string, string | null, string | null, string | null, string | null]> = [
  ["１", short, null, null, belowAvg],
  ...[..."\u2024\uFE12\u2CF9\u1B7F\u{113D4}"].map((t) => [t, null, belowAvg, short, null] as const)
]
// words split on Python's whitespace (U+001F is, U+FEFF is not): 46 words and `cat?dog cat?dog`
const whitespaceAnswers: ReadonlyArray<readonly [string, string | null]> = [
  [`${words48.split(" ").slice(2).join(" ")} cat\u001Fdog cat\u001Fdog`, null],
  [`${words48} cat\uFEFFdog`, short]
]
const ruleOf: Record<string, string> = {
  gopher_short_doc: "gopher.minWords",
  gopher_below_avg_threshold: "gopher.minMeanWordLength",
  gopher_too_many_ellipsis: "gopher.maxSymbolWordRatio"
}
const rule = (reason: string | null): string | null => (reason === null ? null : ruleOf[reason]!)

describe("gopher symbol words", () => {
  it("decides as datatrove 0.10.1 does on punctuation, symbols and emoji", async () => {
    const cases: Array<{ readonly text: string; readonly expected: string | null; readonly what: string }> = []
    for (const [t, a, b] of datatroveAnswers) probeTexts(t).forEach((text, i) => cases.push({ text, expected: rule([a, b][i]!), what: `${t} ${i}` }))
    for (const [t, , , a, b] of documentedDifferences) probeTexts(t).forEach((text, i) => cases.push({ text, expected: rule([a, b][i]!), what: `${t} ${i}` }))
    whitespaceAnswers.forEach(([text, reason], i) => cases.push({ text, expected: rule(reason), what: `whitespace ${i}` }))
    const f = writeJsonl(path.join(tempDir(), "in.jsonl"), cases.map((c) => ({ text: c.text })))
    // the text as datatrove sees it: no repair (NFKC would make `１` `1`, and `…` `...`)
    const r = await runStep(clean, { data: f }, { nfkc: false, controlChars: false, whitespace: false, gopher: {} })
    const removed = new Map(readJsonlFile(path.join(r.output, "removed.jsonl")).map((x) => [x.at as string, x.rule as string]))
    const got = cases.map((c, i) => ({ what: c.what, rule: removed.get(`in.jsonl:${i + 1}`) ?? null }))
    expect(got).toEqual(cases.map((c) => ({ what: c.what, rule: c.expected })))
    expect(r.rows).toHaveLength(cases.filter((c) => c.expected === null).length)
  })

  it("keeps the tokens' decisions through the default repairs when NFKC leaves them alone", async () => {
    const stable = datatroveAnswers.filter(([t]) => t.normalize("NFKC") === t)
    expect(stable.length).toBeGreaterThan(40)
    const f = writeJsonl(path.join(tempDir(), "in.jsonl"), stable.flatMap(([t]) => probeTexts(t).map((text) => ({ text }))))
    const r = await runStep(clean, { data: f }, { gopher: {} })
    const removed = new Map(readJsonlFile(path.join(r.output, "removed.jsonl")).map((x) => [x.at as string, x.rule as string]))
    expect(stable.flatMap(([t], k) => [0, 1].map((i) => [t, removed.get(`in.jsonl:${2 * k + i + 1}`) ?? null]))).toEqual(
      stable.flatMap(([t, a, b]) => [[t, rule(a)], [t, rule(b)]])
    )
  })

  it("agrees with datatrove itself: its answers above, its PUNCTUATION_SET but for the documented code points", async () => {
    const script = path.join(import.meta.dirname, "fixtures", "gopher_datatrove.py")
    const env = { ...process.env, ...pythonEnvVars() }
    const texts = [...datatroveAnswers, ...documentedDifferences].flatMap(([t]) => probeTexts(t)).concat(whitespaceAnswers.map(([t]) => t))
    const answers = JSON.parse((await execa(pythonExecutable(), [script], { input: JSON.stringify(texts), env })).stdout) as Array<string | null>
    expect(answers).toEqual([...datatroveAnswers, ...documentedDifferences].flatMap(([, a, b]) => [a, b]).concat(whitespaceAnswers.map(([, r]) => r)))
    const set = new Set(JSON.parse((await execa(pythonExecutable(), [script, "--punctuation-set"], { env })).stdout) as Array<number>)
    const differ: Array<string> = []
    for (let c = 0; c < 0x110000; c++) {
      if (c >= 0xd800 && c < 0xe000) continue // surrogates: no text holds them alone
      if (isSymbolChar(String.fromCodePoint(c)) !== set.has(c)) differ.push(c.toString(16).toUpperCase())
    }
    // tab and newline (\p{Cc} here, whitespace there: never inside a word); the rest as quality.ts says
    expect(differ).toEqual(["9", "A", "1B4E", "1B4F", "1B7F", "2024", "2CF9", "2CFA", "2CFB", "FE12", "FE15", "FE16", "FF11", "113D4", "113D5", "16D6E", "16D6F"])
  })
})

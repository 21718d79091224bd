import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { clean } from "../../../steps/data/clean.ts"
import { gopherFailure, GopherParams } from "../../../steps/data/quality.ts"
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

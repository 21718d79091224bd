import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { dedup } from "../../../steps/data/dedup.ts"
import { errorOf, readJsonlFile, runStep, tempDir, writeJsonl } from "./helpers.ts"

const rows = [
  { instruction: "What is 2+2?", output: "4" },
  { instruction: "Name a prime.", input: "", output: "7" },
  { instruction: "what is  2+2?", output: "2 + 2 = 4, because adding two and two gives four." },
  { instruction: "What is 2+2?", input: "Show your work.", output: "4" },
  { instruction: "WHAT IS 2+2?", output: "Four." }
]

describe("dedup exact", () => {
  const file = writeJsonl(path.join(tempDir(), "in.jsonl"), rows)

  it("keeps the row with the longest output among equal normalized instruction + input", async () => {
    const r = await runStep(dedup, { data: file })
    expect(r.rows).toEqual([rows[1], rows[2], rows[3]])
    expect(r.report).toMatchObject({ method: "exact", input: 5, kept: 3, removed: 2, distinctKeys: 3 })
    const removed = readJsonlFile(path.join(r.output, "removed.jsonl"))
    expect(removed).toEqual([
      { at: "in.jsonl:1", rule: "exact", duplicateOf: "in.jsonl:3" },
      { at: "in.jsonl:5", rule: "exact", duplicateOf: "in.jsonl:3" }
    ])
    expect(r.metrics).toMatchObject({ rows_in: 5, rows_out: 3, removed: 2 })
  })

  it("keeps the first with keep: first, and respects caseSensitive and fields", async () => {
    expect((await runStep(dedup, { data: file }, { keep: "first" })).rows).toEqual([rows[0], rows[1], rows[3]])
    expect((await runStep(dedup, { data: file }, { keep: "first", caseSensitive: true })).rows).toEqual(rows)
    // on the instruction alone, the row with an input is a duplicate too
    expect((await runStep(dedup, { data: file }, { fields: ["instruction"] })).rows).toEqual([rows[1], rows[2]])
  })

  it("dedups other formats on their question side", async () => {
    const f = writeJsonl(path.join(tempDir(), "m.jsonl"), [
      { messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello" }] },
      { messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "Hello there!" }] }
    ])
    const r = await runStep(dedup, { data: f })
    expect(r.rows).toHaveLength(1)
    expect(r.rows[0].messages[1].content).toBe("Hello there!")
  })

  it("errors on bad input: wrong field type, empty dataset, missing file", async () => {
    const bad = writeJsonl(path.join(tempDir(), "bad.jsonl"), [rows[0], { instruction: "x", output: 5 }])
    expect(await errorOf(runStep(dedup, { data: bad }))).toContain(`${bad}:2: field output: Expected string`)
    const empty = writeJsonl(path.join(tempDir(), "empty.jsonl"), [])
    expect(await errorOf(runStep(dedup, { data: empty }))).toContain("dataset is empty")
    expect(await errorOf(runStep(dedup, { data: "/nonexistent/x.jsonl" }))).toContain("/nonexistent/x.jsonl: dataset not found")
  })
})

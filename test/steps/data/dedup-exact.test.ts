import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { dedup } from "../../../steps/data/dedup.ts"
import { buildExactIndex, exactBucketCount, setExactBucketBytes } from "../../../steps/data/exact.ts"
import { readRows } from "../../../steps/data/jsonl.ts"
import { rng } from "./corpus.ts"
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

  it("bounded memory: keys split over many buckets give the rows the one-process index keeps, for any cut and workers", async () => {
    const r = rng(5)
    const many = Array.from({ length: 3000 }, (_, i) => ({
      instruction: `q${Math.floor(r() * 1500)}${r() < 0.1 ? " X" : " x"}`,
      input: i % 7 === 0 ? "" : `in${Math.floor(r() * 3)}`,
      output: "o".repeat(Math.floor(r() * 20))
    }))
    const f = writeJsonl(path.join(tempDir(), "many.jsonl"), many)
    for (const keep of ["longest", "first"] as const) {
      // the one-process reference: the kept row of each key
      const ix = await buildExactIndex(readRows(f, undefined).located(), "instruction", { fields: ["instruction", "input"], keep, caseSensitive: false })
      const expected = many.filter((_, i) => ix.clusterOf.data[i] === -1 || ix.best.data[ix.clusterOf.data[i]!] === i)
      const oneBucket = await runStep(dedup, { data: f }, { keep, tasks: 3 })
      expect(oneBucket.rows).toEqual(expected)
      expect(oneBucket.report.distinctKeys).toBe(ix.best.length)
      // a bound of 2 KiB of input per bucket: about 70 buckets, each holding a small share of the ~2300 keys
      const before = setExactBucketBytes(2048)
      try {
        expect(exactBucketCount([f])).toBeGreaterThan(50)
        for (const x of keep === "longest" ? [{ tasks: 1, workers: 1 }, { tasks: 8, workers: 2 }] : [{ tasks: 5, workers: 1 }]) {
          const bounded = await runStep(dedup, { data: f }, { keep, ...x })
          for (const file of ["data.jsonl", "removed.jsonl", "report.json", "dataset.json"]) {
            expect(fs.readFileSync(path.join(bounded.output, file), "utf8"), `${keep} ${file}`).toBe(fs.readFileSync(path.join(oneBucket.output, file), "utf8"))
          }
        }
      } finally {
        setExactBucketBytes(before)
      }
    }
  })
})

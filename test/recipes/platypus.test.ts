/**
 * The Platypus data stage on its generated data. The TS steps run here directly (fast); the two
 * embedding steps are covered by test/steps/data/semantic.test.ts, and the whole recipe runs with
 * `npx anneal run recipes/platypus.ts`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { loadRecipe } from "../../engine/load.ts"
import { dataDir, expected, generate } from "../../recipes/data/generate-platypus.ts"
import { benchmarkFields } from "../../recipes/platypus.ts"
import { clean, decontaminate, dedup } from "../../steps/data/index.ts"
import { readJsonlFile, runStep } from "../steps/data/helpers.ts"

const train = path.join(dataDir, "platypus-train.jsonl")
const bench = path.join(dataDir, "platypus-bench.jsonl")

describe("recipes/platypus.ts data stage", () => {
  it("the committed data is what the generator makes", () => {
    const out = generate()
    expect(fs.readFileSync(train, "utf8")).toBe(out.train)
    expect(fs.readFileSync(bench, "utf8")).toBe(out.bench)
  })

  it("wires clean -> dedup exact -> dedup semantic -> decontaminate n-gram -> decontaminate semantic", async () => {
    const graph = await loadRecipe(path.resolve(import.meta.dirname, "../../recipes/platypus.ts"))
    const data = ["clean", "dedup-exact", "dedup-semantic", "decontaminate-ngram", "decontaminate-semantic"]
    const kinds = ["clean", "dedup", "dedup-semantic", "decontaminate", "decontaminate-semantic"]
    data.forEach((id, i) => {
      const step = graph.byId.get(id)
      expect(step?.def.kind).toBe(kinds[i])
      // each data step reads the one before it (the first reads the source)
      if (i > 0) expect(step?.needs).toEqual([data[i - 1]])
    })
  })

  it("the TS steps remove exactly the planted dirty rows, exact duplicates and n-gram leaks", async () => {
    const cleaned = await runStep(clean, { data: train }, { minChars: 10 })
    expect(cleaned.report.input).toBe(expected.rows)
    expect(cleaned.report.removed).toBe(expected.clean)
    const exact = await runStep(dedup, { data: cleaned.output }, { method: "exact" })
    expect(exact.report.removed).toBe(expected.exact)
    // every removed duplicate has a shorter answer than the row kept in its place
    const rows = readJsonlFile(path.join(cleaned.output, "data.jsonl"))
    const at = (loc: string) => rows[Number(loc.split(":")[1]) - 1]
    const removed = readJsonlFile(path.join(exact.output, "removed.jsonl"))
    expect(removed).toHaveLength(expected.exact)
    for (const r of removed) expect(at(r.duplicateOf).output.length).toBeGreaterThan(at(r.at).output.length)
    const ngram = await runStep(decontaminate, { data: exact.output, benchmarks: [bench] }, { benchmark: benchmarkFields })
    expect(ngram.report.removed).toBe(expected.ngramLeaks)
    expect(ngram.report.byCategory).toEqual({ duplicate: 1, "gray area": 1, "similar but different": 1 })
  })
})

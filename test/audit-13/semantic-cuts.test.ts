/**
 * Issue 13: "output hash identical for 1, 3 and 8 shards" for decontaminate-semantic, which
 * semantic.test.ts takes at 1 and 3 tasks only (dedup-semantic it takes at 1, 3 and 8): here 1 task in
 * one process, 3 tasks and 8 tasks on 2 worker processes (more tasks than rows: empty pieces too), on
 * rows that leak two benchmark questions, must write the same bytes and remove the leaks.
 */
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { decontaminateSemantic } from "../../steps/data/semantic.ts"
import { paraphraseRows, runStep, tempDir, treeDigest, writeJsonl } from "../steps/data/helpers.ts"

describe("decontaminate-semantic for any cut", () => {
  it("the same bytes for 1, 3 and 8 tasks, with 1 or 2 worker processes", async () => {
    const dir = tempDir()
    const data = writeJsonl(path.join(dir, "train.jsonl"), paraphraseRows)
    const bench = writeJsonl(path.join(dir, "bench.jsonl"), [
      { question: "Which city is the capital of France?", answer: "Paris" },
      { question: "How many legs does a spider have?", answer: "8" }
    ])
    const params = { benchmark: { answer: "answer" }, remove: ["duplicate", "gray area", "similar but different"] }
    // at once: the runs in this process share one embedding server (one model load)
    const runs = await Promise.all([{ tasks: 1, workers: 1 }, { tasks: 3, workers: 2 }, { tasks: 8, workers: 2 }].map((x) =>
      runStep(decontaminateSemantic, { data, benchmarks: [bench] }, { ...params, ...x })))
    for (const r of runs) expect(Number(r.metrics.removed)).toBeGreaterThan(0)
    expect(runs.map((r) => treeDigest(r.output))).toEqual(runs.map(() => treeDigest(runs[0]!.output)))
  }, 300_000)
})

/**
 * The demo's pipeline (recipes/demo.ts) end to end at a smaller size: curation, tokenizer, pretraining,
 * LoRA SFT with NEFTune and a full SFT, lora-merge, TIES, four evals and eval-compare, run through the
 * CLI on CPU without --allow-cpu. The compare table must put the fine-tuned models ahead of the base on
 * the quiz their data teaches, and the losses must fall; the committed quiz is what the generator makes.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"
import { afterAll, describe, expect, it } from "vitest"
import type { MetricEvent } from "../../engine/events.ts"
import { projectRoot } from "../../engine/python.ts"
import { cli, ranSteps, stepEvents } from "../helpers/project.ts"

const dataDir = path.join(projectRoot, "recipes", "data", "demo")
const tiny = path.join(projectRoot, "test", "recipes", "demo-tiny.ts")

describe("recipes/demo.ts", () => {
  const store = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-demo-"))
  afterAll(() => fs.rmSync(store, { recursive: true, force: true }))

  it("the committed data is what recipes/data/generate-demo.ts makes", async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-demo-data-"))
    try {
      const copy = path.join(out, "generate-demo.ts")
      fs.copyFileSync(path.join(projectRoot, "recipes", "data", "generate-demo.ts"), copy)
      const r = await execa(path.join(projectRoot, "node_modules", ".bin", "tsx"), [copy], { cwd: out, reject: false })
      expect(r.exitCode, String(r.stderr)).toBe(0)
      for (const file of ["instructions.jsonl", "benchmark.jsonl", "quiz.jsonl"]) {
        expect(fs.readFileSync(path.join(out, "demo", file), "utf8"), file).toBe(fs.readFileSync(path.join(dataDir, file), "utf8"))
      }
    } finally {
      fs.rmSync(out, { recursive: true, force: true })
    }
  }, 60_000)

  it("runs from raw instructions to an eval-compare where the fine-tuned models beat the base", async () => {
    const r = await cli(["run", tiny, "--store", store, "--json"])
    expect(r.exitCode, r.stderr.slice(-3000)).toBe(0)
    expect(ranSteps(r.events)).toEqual([
      "as-text", "clean", "compare", "decontaminate", "dedup-exact", "dedup-minhash", "eval-base", "eval-full",
      "eval-lora", "eval-ties", "lora-merge", "merge-ties", "pretrain", "question-answer", "questions", "sft-full",
      "sft-lora", "tokenizer"
    ])
    // no GPU here: the steps that want one run on CPU without --allow-cpu, and the run says so once
    const cpuLines = r.events.filter((e) => e.event === "log" && /on CPU/.test(e.message))
    expect(cpuLines).toHaveLength(1)

    const metric = (step: string, name: string) =>
      r.events.find((e): e is MetricEvent => e.event === "metric" && e.step === step && e.name === name)?.value as number
    for (const step of ["pretrain", "sft-lora", "sft-full"]) {
      expect(metric(step, "last_loss"), `${step} loss falls`).toBeLessThan(metric(step, "first_loss"))
    }

    const compare = stepEvents(r.events).find((e) => e.step === "compare")!
    const table = JSON.parse(fs.readFileSync(path.join(store, "artifacts", compare.output!, "report.json"), "utf8")) as {
      columns: Array<string>
      rows: Array<{ task: string; metric: string; values: Array<number> }>
    }
    expect(table.columns).toEqual(["base", "lora", "full", "ties"])
    const acc = table.rows.find((row) => row.task === "demo_quiz" && row.metric === "acc")!.values
    const [base, lora, full, ties] = acc as [number, number, number, number]
    expect(full).toBeGreaterThan(base)
    expect(lora).toBeGreaterThan(base)
    expect(ties).toBeGreaterThan(base)
  }, 900_000)
})

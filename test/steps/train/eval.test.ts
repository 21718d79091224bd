/**
 * eval: a local multiple-choice task scores the same through the step as through lm-eval's own CLI on
 * the same model and task; eval-compare puts reports side by side.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Schema } from "effect"
import { beforeAll, describe, expect, it } from "vitest"
import { runImplementation, type StepDefinition } from "../../../engine/step.ts"
import { evalCompare, evaluate } from "../../../steps/train/index.ts"
import { makeFixtures, python, runWorker, tempDir } from "./helpers.ts"

describe("eval", () => {
  let fx: string
  beforeAll(async () => {
    fx = await makeFixtures()
  })

  it("gives the same acc and acc_norm as running lm-eval directly on the same model and task", async () => {
    const run = await runWorker(evaluate, {
      inputs: { model: path.join(fx, "base"), benchmarks: [path.join(fx, "mc")] },
      params: { localTaskNames: ["colors"] }
    })
    expect(run.error).toBeUndefined()
    expect(run.exitCode).toBe(0)
    const report = JSON.parse(fs.readFileSync(path.join(run.output, "report.json"), "utf8"))
    const viaStep = report.results.results.colors
    expect(fs.readFileSync(path.join(run.output, "report.md"), "utf8")).toMatch(/\| colors \| acc \| 0 \|/)

    // the same task, written by hand in the harness's YAML format, run with `python -m lm_eval run`
    const dir = tempDir("anneal-lmeval-")
    fs.writeFileSync(path.join(dir, "colors.yaml"), [
      "task: colors",
      "dataset_path: json",
      "dataset_kwargs:",
      `  data_files: {test: "${path.join(fx, "mc", "data.jsonl")}"}`,
      "test_split: test",
      "output_type: multiple_choice",
      "doc_to_text: \"Question: {{question}}\\nAnswer:\"",
      "doc_to_choice: \"{{choices}}\"",
      "doc_to_target: answer",
      "metric_list:",
      "  - {metric: acc, aggregation: mean, higher_is_better: true}",
      "  - {metric: acc_norm, aggregation: mean, higher_is_better: true}",
      ""
    ].join("\n"))
    await python([
      "-m", "lm_eval", "run", "--model", "hf", "--model_args", `pretrained=${path.join(fx, "base")},dtype=float32`,
      "--tasks", "colors", "--include_path", dir, "--num_fewshot", "0", "--device", "cpu", "--batch_size", "8",
      "--output_path", path.join(dir, "out")
    ])
    const files: Array<string> = []
    const walk = (d: string) => fs.readdirSync(d, { withFileTypes: true }).forEach((e) =>
      e.isDirectory() ? walk(path.join(d, e.name)) : e.name.startsWith("results") && files.push(path.join(d, e.name))
    )
    walk(path.join(dir, "out"))
    const direct = JSON.parse(fs.readFileSync(files[0]!, "utf8")).results.colors
    expect(viaStep["acc,none"]).toBe(direct["acc,none"])
    expect(viaStep["acc_norm,none"]).toBe(direct["acc_norm,none"])
    expect(report.table).toContainEqual(expect.objectContaining({ task: "colors", metric: "acc", value: direct["acc,none"] }))
  }, 600_000)

  it("refuses benchmark rows that are not multiple choice, and unknown task names, before loading the model", async () => {
    const bad = await runWorker(evaluate, { inputs: { model: path.join(fx, "base"), benchmarks: [path.join(fx, "text")] } })
    expect(bad.exitCode).toBe(2)
    expect(bad.error).toMatch(/eval: benchmark local_0: .*expected a multiple-choice row/)
  }, 300_000)
})

describe("eval-compare", () => {
  const report = (model: string, acc: number) => {
    const dir = tempDir("anneal-report-")
    const table = [
      { task: "colors", metric: "acc", value: acc, stderr: 0.1, num_fewshot: 0, headline: true },
      { task: "colors", metric: "acc_norm", value: acc / 2, stderr: 0.1, num_fewshot: 0, headline: false }
    ]
    fs.writeFileSync(path.join(dir, "report.json"), JSON.stringify({ model, table }))
    return dir
  }

  it("joins the reports' tables into one row per task and metric, a column per model", async () => {
    const output = tempDir("anneal-compare-")
    const def = evalCompare.definition as unknown as StepDefinition
    const params = Schema.decodeUnknownSync(def.params as Schema.Codec<unknown, unknown>)({ names: ["plain", "neftune"], headlineOnly: true })
    const metrics: Record<string, unknown> = {}
    await Effect.runPromise(runImplementation(def, {
      step: "compare", key: "k", params, inputs: { reports: [report("a", 0.25), report("b", 0.5)] } as never, output,
      resumeDir: output, gpus: [], cpus: 1, seed: 0, signal: new AbortController().signal,
      progress: () => {}, metric: (n, v) => (metrics[n] = v), log: () => {}
    }))
    const c = JSON.parse(fs.readFileSync(path.join(output, "report.json"), "utf8"))
    expect(c).toEqual({ columns: ["plain", "neftune"], rows: [{ task: "colors", metric: "acc", values: [0.25, 0.5] }] })
    expect(fs.readFileSync(path.join(output, "report.md"), "utf8")).toContain("| colors | acc | 0.2500 | 0.5000 |")
    expect(metrics["colors/acc/neftune"]).toBe(0.5)
  })
})

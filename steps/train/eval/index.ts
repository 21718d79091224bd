/**
 * `eval`: lm-evaluation-harness on local multiple-choice JSONL tasks and built-in task names
 * (worker.py), writing a Report (report.json: the harness's results plus a normalized table; report.md).
 * `eval-compare`: puts several such reports side by side (in-process TS).
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import * as Schema from "effect/Schema"
import { findLlamaCpp, findLlamaLoglik, llamaLoglikSource } from "../../../engine/components/llama-cpp.ts"
import { defineStep, Port } from "../../../engine/step.ts"
import type { CommandContext, CommandSpec } from "../../../engine/step.ts"
import {
  describe, NonNegativeInt, PositiveInt, seedParam, trainDir, trainingCommand, withDefault, workerSourceFiles
} from "../common.ts"

const script = path.join(trainDir, "eval", "worker.py")

/**
 * The training command, plus where llama.cpp's scorer is (ANNEAL_LLAMA_LOGLIK) when it is built: the
 * worker scores a GGUF model with it, and fails naming `anneal setup --with llama-cpp` when it is not.
 */
const evalCommand = <P>(ctx: CommandContext<P>): CommandSpec => {
  const spec = trainingCommand(script)(ctx)
  const llama = findLlamaCpp()
  const loglik = findLlamaLoglik(llama)
  return loglik === undefined ? spec : { ...spec, env: { ...spec.env, ANNEAL_LLAMA_LOGLIK: loglik, ANNEAL_LLAMA_CPP_COMMIT: llama!.commit } }
}

/** The tasks each preset runs: task -> [numFewshot, the metric it reports] (PRESETS in worker.py). */
export const evalPresets = {
  none: {},
  "leaderboard-v1": {
    arc_challenge: [25, "acc_norm"], hellaswag: [10, "acc_norm"], mmlu: [5, "acc"], truthfulqa_mc2: [0, "acc"]
  }
}

/** Mirrors EvalConfig in worker.py. */
export const EvalParams = Schema.Struct({
  tasks: withDefault(Schema.Array(Schema.NonEmptyString), []).annotate(
    describe("built-in harness tasks to run besides the preset's and the local ones (their data must be in the local HF cache)")
  ),
  preset: withDefault(Schema.Literals(["none", "leaderboard-v1"]), "none").annotate({
    description: "a task set: leaderboard-v1 = the Open LLM Leaderboard v1 tasks (task: [shots, metric])",
    presets: evalPresets
  }),
  localTaskNames: withDefault(Schema.Array(Schema.String.check(Schema.isPattern(/^[A-Za-z0-9_]+$/))), []).annotate(
    describe("names of the local tasks made from the benchmarks inputs, in order (default local_0, local_1, ...)")
  ),
  numFewshot: withDefault(NonNegativeInt, 0).annotate(describe("few-shot examples for the tasks not in the preset")),
  limit: withDefault(NonNegativeInt, 0).annotate(describe("examples per task (0: all); for quick smoke runs")),
  batchSize: withDefault(PositiveInt, 8).annotate(describe("examples per forward pass")),
  ggufCtx: withDefault(NonNegativeInt, 0).annotate(
    describe("GGUF models (scored by llama.cpp): context window in tokens (0: the model's training context, at most 4096)")
  ),
  logSamples: withDefault(Schema.Boolean, false).annotate(
    describe("also write samples.jsonl: each item's per-choice log-likelihoods (or generation) and its scores")
  ),
  allowPickle: withDefault(Schema.Boolean, false).annotate(describe("load pickle (.bin) weights; only for files you trust")),
  seed: seedParam()
})
export type EvalParams = typeof EvalParams.Type

export const evaluate = defineStep({
  kind: "eval",
  version: 2,
  description: "evaluate a model with lm-evaluation-harness (local multiple-choice JSONL or built-in tasks)",
  params: EvalParams,
  inputs: {
    model: Port.describe(Port.model(), "the model to evaluate: a Hugging Face directory (full precision, bitsandbytes, GPTQ) or a quantize step's GGUF output"),
    adapter: Port.describe(Port.optional(Port.adapter()), "a LoRA adapter to apply on top of the model"),
    benchmarks: Port.describe(
      Port.many(Port.anyDataset()),
      "multiple-choice datasets {question, choices, answer}, one local task each"
    )
  },
  output: Port.report(),
  resources: { gpus: 1, cpuFallback: true },
  sourceFiles: [...workerSourceFiles(script), path.join(trainDir, "eval", "llama_lm.py"), llamaLoglikSource],
  command: evalCommand
})

// ---------------------------------------------------------------------------------------------
// eval-compare

/** One row of an eval report's normalized table (written by worker.py). */
export interface EvalRow {
  readonly task: string
  readonly metric: string
  readonly value: number
  readonly stderr: number | null
  readonly num_fewshot: number | null
  readonly headline: boolean
}

export const CompareParams = Schema.Struct({
  names: withDefault(Schema.Array(Schema.NonEmptyString), []).annotate(
    describe("a column name per report, in input order (default: each report's model directory name)")
  ),
  headlineOnly: withDefault(Schema.Boolean, false).annotate(
    describe("only each task's headline metric (acc_norm for ARC/HellaSwag, acc otherwise)")
  )
})

export interface Comparison {
  readonly columns: ReadonlyArray<string>
  readonly rows: ReadonlyArray<{ readonly task: string; readonly metric: string; readonly values: ReadonlyArray<number | null> }>
}

/** Joins report tables on (task, metric); a cell is null where a report lacks that row. */
export const compareTables = (
  columns: ReadonlyArray<string>,
  tables: ReadonlyArray<ReadonlyArray<EvalRow>>,
  headlineOnly: boolean
): Comparison => {
  const keys = new Map<string, { task: string; metric: string }>()
  for (const t of tables) {
    for (const r of t) if (!headlineOnly || r.headline) keys.set(`${r.task}\u0000${r.metric}`, { task: r.task, metric: r.metric })
  }
  const rows = [...keys.values()]
    .sort((a, b) => a.task.localeCompare(b.task) || a.metric.localeCompare(b.metric))
    .map(({ task, metric }) => ({
      task,
      metric,
      values: tables.map((t) => t.find((r) => r.task === task && r.metric === metric)?.value ?? null)
    }))
  return { columns, rows }
}

export const comparisonMarkdown = (c: Comparison): string => {
  const head = `| task | metric | ${c.columns.join(" | ")} |`
  const rule = `|---|---|${c.columns.map(() => "---:").join("|")}|`
  const body = c.rows.map((r) =>
    `| ${r.task} | ${r.metric} | ${r.values.map((v) => (v === null ? "" : v.toFixed(4))).join(" | ")} |`
  )
  return [head, rule, ...body].join("\n") + "\n"
}

export const evalCompare = defineStep({
  kind: "eval-compare",
  version: 1,
  description: "compare eval reports side by side (report.json + report.md table)",
  params: CompareParams,
  inputs: { reports: Port.describe(Port.many(Port.report()), "eval reports, one column each") },
  output: Port.report(),
  run: async (ctx) => {
    const reports = await Promise.all(ctx.inputs.reports.map(async (dir) => {
      const file = path.join(dir, "report.json")
      try {
        return JSON.parse(await fs.readFile(file, "utf8")) as { model?: string; table?: ReadonlyArray<EvalRow> }
      } catch (e) {
        throw new Error(`step "${ctx.step}": input reports: cannot read ${file}: ${(e as Error).message}`)
      }
    }))
    if (ctx.params.names.length > 0 && ctx.params.names.length !== reports.length) {
      throw new Error(
        `step "${ctx.step}": param names has ${ctx.params.names.length} names for ${reports.length} reports`
      )
    }
    reports.forEach((r, i) => {
      if (!Array.isArray(r.table)) {
        throw new Error(`step "${ctx.step}": input reports[${i}] is not an eval report (no table in report.json)`)
      }
    })
    const columns = ctx.params.names.length > 0 ? ctx.params.names : reports.map((r, i) => r.model ?? `report ${i}`)
    const comparison = compareTables(columns, reports.map((r) => r.table!), ctx.params.headlineOnly)
    await fs.writeFile(path.join(ctx.output, "report.json"), JSON.stringify(comparison, null, 2) + "\n")
    await fs.writeFile(path.join(ctx.output, "report.md"), comparisonMarkdown(comparison))
    for (const row of comparison.rows) {
      row.values.forEach((v, i) => {
        if (v !== null) ctx.metric(`${row.task}/${row.metric}/${columns[i]}`, v)
      })
    }
  }
})

/**
 * `decontaminate`: removes training rows that share an n-gram (default 13, on simplified tokens) with
 * an item of one or more benchmarks, as GPT-3 and lm-evaluation-harness do. Every flagged (row, item)
 * pair goes into flagged.jsonl with its score (the share of the item's n-grams found in the row) and a
 * review category (review.ts); report.json counts them per category and keeps the first `examples`,
 * and review.md lists the first of each category for a person to read. The pairs are streamed to
 * files, never held (flagged-pairs.ts): a leak can flag most rows. By default every flagged row is
 * removed, as Platypus did. The embedding-based method is the separate kind `decontaminate-semantic`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Schema from "effect/Schema"
import type { AnyDataset } from "../../engine/artifact.ts"
import { defineStep, preservingRows, Port, type StepContext } from "../../engine/step.ts"
import { BenchmarkFields, readBenchmark, type BenchmarkItem } from "./benchmark.ts"
import { locationOf, NonNegativeInt, OnInvalid, PositiveInt, UnitInterval, withDefault } from "./common.ts"
import { allText, answerText, detectFormat, joinFields, questionText } from "./formats.ts"
import { FanoutParams, fanoutExecutionOnly, OutputParam, registerMapper, runMapStep } from "./map-fanout.ts"
import { NgramIndex } from "./ngram-index.ts"
import { flaggedFile, mergeTaskPairs, PairLog, taskPairsFile, writeFlagged, type TaskPairs } from "./flagged-pairs.ts"
import { categories, categorize, reviewMarkdown, reviewPairsPerCategory, type Category, type ReviewPair } from "./review.ts"
import { preview } from "./text.ts"
import { writeReport } from "./writer.ts"

export const ReviewParams = {
  remove: withDefault(Schema.Array(Schema.Literals(categories)), [...categories]).annotate({
    description: "which categories of flagged rows to remove (all three by default, as Platypus)"
  }),
  duplicateSimilarity: withDefault(UnitInterval, 0.9).annotate({
    description: "question similarity at or above which a flagged pair is a \"duplicate\""
  })
}

export const DecontaminateParams = Schema.Struct({
  n: withDefault(PositiveInt, 13).annotate({
    description: "n-gram length on simplified tokens (13: lm-eval; GPT-3 used 8-13)"
  }),
  minTokens: withDefault(PositiveInt, 8).annotate({
    description: "benchmark items shorter than n tokens are matched whole if at least this long, else skipped"
  }),
  benchmark: withDefault(Schema.Union([BenchmarkFields, Schema.Array(BenchmarkFields)]), {}).annotate({
    description: "benchmark fields (dotted paths): question, choices, answer; a list gives one per benchmark input"
  }),
  includeAnswer: withDefault(Schema.Boolean, false).annotate({
    description: "also index the benchmark's answer text (not only its question)"
  }),
  fields: Schema.optionalKey(Schema.Array(Schema.String)).annotate({
    description: "training fields scanned; default every text field"
  }),
  ...ReviewParams,
  onInvalid: OnInvalid,
  examples: withDefault(NonNegativeInt, 5).annotate({ description: "flagged pairs kept as examples in report.json (flagged.jsonl has them all)" }),
  output: OutputParam,
  ...FanoutParams
})
export type DecontaminateParams = typeof DecontaminateParams.Type

const inputs = {
  data: Port.describe(Port.anyDataset(), "rows of any format (detected from the data)"),
  benchmarks: Port.describe(Port.many(Port.anyDataset()), "benchmark datasets whose items must not leak into the training rows")
}

export type FlaggedPair = ReviewPair

/** Reads every benchmark (small by nature) and fails clearly when one is missing or empty. */
export const loadBenchmarks = async (
  paths: ReadonlyArray<string>,
  fields: BenchmarkFields | ReadonlyArray<BenchmarkFields>
): Promise<Array<BenchmarkItem>> => {
  if (paths.length === 0) throw new Error("decontaminate needs at least one benchmark dataset (input benchmarks is empty)")
  const list = Array.isArray(fields) ? fields : paths.map(() => fields as BenchmarkFields)
  if (list.length !== paths.length) {
    throw new Error(`param benchmark lists ${list.length} field mappings for ${paths.length} benchmarks: give one per benchmark, or one for all`)
  }
  const items: Array<BenchmarkItem> = []
  for (let i = 0; i < paths.length; i++) items.push(...(await readBenchmark(paths[i]!, list[i]!)))
  return items
}

const indexOf = (items: ReadonlyArray<BenchmarkItem>, p: DecontaminateParams): NgramIndex => {
  const index = new NgramIndex(p.n, p.minTokens)
  items.forEach((it, i) => index.add(i, p.includeAnswer && it.answer !== undefined ? `${it.question}\n${it.answer}` : it.question))
  return index
}

// each task reads the benchmarks itself (small by nature) and flags its rows
registerMapper("decontaminate", async (spec) => {
  const p = spec.params as DecontaminateParams
  const format = spec.format
  const items = await loadBenchmarks(spec.inputs.benchmarks as ReadonlyArray<string>, p.benchmark)
  const index = indexOf(items, p)
  const removeSet = new Set<Category>(p.remove)
  // every pair goes to the task's pairs.jsonl as it is found; the task returns counts and spec.examples pairs
  const pairs = new PairLog(spec.dir, spec.examples)
  return {
    map: (r) => {
      const row = r.row
      const hits = index.match(p.fields === undefined ? allText(row, format) : joinFields(row, p.fields))
      let remove = false
      let best: FlaggedPair | undefined
      for (const h of hits.sort((a, b) => a.item - b.item)) {
        const it = items[h.item]!
        const trainQuestion = questionText(row, format)
        const v = categorize({ trainQuestion, trainAnswer: answerText(row, format), benchQuestion: it.question, benchAnswer: it.answer }, p.duplicateSimilarity)
        const removed = removeSet.has(v.category)
        const pair: FlaggedPair = {
          train: locationOf(r),
          trainQuestion: preview(trainQuestion, 300),
          benchmark: it.benchmark,
          item: it.at,
          benchQuestion: preview(it.question, 300),
          benchAnswer: it.answer,
          score: Math.round((h.hits / Math.max(h.total, 1)) * 1000) / 1000,
          ...v,
          removed
        }
        pairs.add(pair)
        remove ||= removed
        if (best === undefined || pair.score > best.score) best = pair
      }
      if (remove && best !== undefined) {
        return { remove: { rule: best.category, text: best.trainQuestion, extra: { benchmark: best.benchmark, item: best.item, score: best.score } } }
      }
      return { keep: row }
    },
    finish: () => ({ ...pairs.finish() }),
    close: () => pairs.close()
  }
})

export const runDecontaminate = async (ctx: StepContext<DecontaminateParams, typeof inputs>): Promise<void> => {
  const p = ctx.params
  const items = await loadBenchmarks(ctx.inputs.benchmarks, p.benchmark)
  const index = indexOf(items, p)
  const format = await detectFormat(ctx.inputs.data, { onInvalid: p.onInvalid })
  const m = await runMapStep(ctx, {
    mapper: "decontaminate",
    input: ctx.inputs.data,
    format,
    params: p,
    output: p.output,
    inputs: { benchmarks: ctx.inputs.benchmarks }
  })
  const found = mergeTaskPairs(m.extras as unknown as ReadonlyArray<TaskPairs>, p.examples)
  const listing = writeFlagged(m.taskDirs.map((d) => path.join(d, taskPairsFile)), ctx.output, found, reviewPairsPerCategory)
  const byCategory = found.byCategory
  writeReport(ctx.output, {
    step: "decontaminate",
    method: "ngram",
    n: p.n,
    format,
    input: m.rowsIn,
    kept: m.kept,
    removed: m.removed,
    benchmarks: [...new Set(items.map((i) => i.benchmark))].map((name) => ({ name, items: items.filter((i) => i.benchmark === name).length })),
    benchmarkItemsTooShort: index.skipped,
    flaggedPairs: found.flaggedPairs,
    byCategory,
    invalidSkipped: m.skipped,
    invalidExamples: m.invalidExamples,
    examples: found.examples,
    pairsFile: flaggedFile
  })
  fs.writeFileSync(path.join(ctx.output, "review.md"), reviewMarkdown(`Decontamination review (${p.n}-gram overlap)`, listing))
  ctx.metric("rows_in", m.rowsIn)
  ctx.metric("rows_out", m.kept)
  ctx.metric("removed", m.removed)
  ctx.metric("flagged_pairs", found.flaggedPairs)
  for (const c of categories) ctx.metric(`flagged.${c}`, byCategory[c])
}

export const decontaminate = preservingRows(defineStep({
  kind: "decontaminate",
  version: 3,
  description: "removes training rows sharing an n-gram with a benchmark item; flagged.jsonl lists every flagged pair with a category",
  params: DecontaminateParams,
  inputs,
  output: Port.anyDataset() as Port<AnyDataset>,
  resources: (p) => ({ cpus: p.workers ?? 2 }),
  executionOnly: fanoutExecutionOnly,
  run: runDecontaminate
}))

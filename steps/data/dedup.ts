/**
 * `dedup`: removes duplicate rows, in-process (no Python), by one of two methods:
 * - `exact`: rows whose normalized key fields are equal (default: the question side, Platypus'
 *   instruction + input); keep the longest answer or the first.
 * - `minhash`: near-duplicates by word n-gram MinHash + LSH (datatrove's defaults: 5-grams, 14 bands
 *   x 8 rows), candidates verified by estimated Jaccard >= threshold, clustered with union-find; one row
 *   kept per cluster. Signing runs on worker threads (the CPU slots the scheduler grants).
 * The semantic method (embeddings) is the separate kind `dedup-semantic`, a Python worker.
 * Output: the kept rows (original order), `report.json` and `removed.jsonl` (every removed row, the
 * row it duplicates and, for minhash, their estimated Jaccard).
 */
import * as Schema from "effect/Schema"
import type { AnyDataset } from "../../engine/artifact.ts"
import { defineStep, preservingRows, Port, type StepContext } from "../../engine/step.ts"
import { locationOf, NonNegativeInt, OnInvalid, PositiveInt, RemovalLog, UnitInterval, withDefault } from "./common.ts"
import { buildExactIndex } from "./exact.ts"
import { detectFormat, joinFields, questionFields, schemaOf, textFieldNames, type ConcreteFormat } from "./formats.ts"
import { readRows, type RowReader } from "./jsonl.ts"
import { buildMinHashIndex, similarity } from "./minhash/dedup-minhash.ts"
import { DatasetWriter, writeReport } from "./writer.ts"

export const MinHashParams = Schema.Struct({
  ngram: withDefault(PositiveInt, 5).annotate({ description: "words per shingle" }),
  bands: withDefault(PositiveInt, 14),
  rows: withDefault(PositiveInt, 8),
  threshold: withDefault(UnitInterval, 0.8).annotate({
    description: "candidates join a cluster when their estimated Jaccard is at least this"
  }),
  seed: withDefault(Schema.Int, 1),
  maxComparisons: withDefault(PositiveInt, 64).annotate({
    description: "verifications per document and band bucket (a guard against pathological buckets)"
  })
})

export const DedupParams = Schema.Struct({
  method: withDefault(Schema.Literals(["exact", "minhash"]), "exact").annotate({
    description: "exact: same normalized key text; minhash: estimated Jaccard of word shingles over threshold"
  }),
  fields: Schema.optionalKey(Schema.Array(Schema.String)).annotate({
    description: "fields the key (exact) or the shingles (minhash) come from; `messages:user` picks a role's turns"
  }),
  keep: withDefault(Schema.Literals(["longest", "first"]), "longest").annotate({
    description: "which row of a duplicate cluster stays: the longest answer (Platypus) or the first"
  }),
  caseSensitive: withDefault(Schema.Boolean, false).annotate({ description: "exact keys compare case" }),
  minhash: withDefault(MinHashParams, {}).annotate({
    description: "MinHash settings (bands x rows permutations, seeded: the seed is part of the key)"
  }),
  threads: Schema.optionalKey(PositiveInt).annotate({
    description: "worker threads for minhash; the result does not depend on it. Default: the CPU slots granted"
  }),
  onInvalid: OnInvalid,
  examples: withDefault(NonNegativeInt, 5).annotate({ description: "duplicate clusters kept as examples in report.json" })
})
export type DedupParams = typeof DedupParams.Type

const inputs = { data: Port.describe(Port.anyDataset(), "rows of any format (detected from the data)") }
type Ctx = StepContext<DedupParams, typeof inputs>

const defaultFields = (method: DedupParams["method"], format: ConcreteFormat): ReadonlyArray<string> =>
  method === "exact" ? questionFields[format] : textFieldNames[format]

export const runDedup = async (ctx: Ctx): Promise<void> => {
  const p = ctx.params
  const format = await detectFormat(ctx.inputs.data, { onInvalid: p.onInvalid })
  const fields = p.fields ?? defaultFields(p.method, format)
  const open = (): RowReader<unknown> => readRows(ctx.inputs.data, schemaOf(format), { onInvalid: p.onInvalid })
  const first = open()
  const progress = (phase: string) => (i: number) => {
    if (ctx.signal.aborted) throw new Error("interrupted")
    if (i % 10_000 === 0) ctx.progress({ current: i, unit: `rows (${phase})` })
  }
  const writer = new DatasetWriter(ctx.output, format)
  const log = new RemovalLog(ctx.output, p.examples)
  const second = open()
  let details: Record<string, unknown>
  if (p.method === "exact") {
    const ix = await buildExactIndex(first.located(), format, { fields, keep: p.keep, caseSensitive: p.caseSensitive }, progress("index"))
    for await (const r of second.located()) {
      const id = ix.clusterOf.get(r.index)
      if (id === -1 || ix.best.get(id) === r.index) writer.write(r.row as object)
      else log.remove("exact", locationOf(r), joinFields(r.row as Record<string, unknown>, fields), { duplicateOf: ix.bestAt[id] })
    }
    details = { distinctKeys: ix.best.length, emptyKeys: ix.emptyKeys }
  } else {
    const threads = p.threads ?? Math.max(1, ctx.cpus)
    const ix = await buildMinHashIndex(first.located(), format, { ...p.minhash, fields, keep: p.keep, threads }, progress("sign"))
    const roots = new Set<number>()
    for await (const r of second.located()) {
      const kept = ix.keptOf[ix.clusters.find(r.index)]!
      if (kept === r.index) {
        writer.write(r.row as object)
        continue
      }
      roots.add(ix.clusters.find(r.index))
      log.remove("minhash", locationOf(r), joinFields(r.row as Record<string, unknown>, fields), {
        duplicateOf: ix.at(kept),
        jaccard: similarity(ix, r.index, kept)
      })
    }
    details = {
      numHashes: ix.k,
      candidatePairsVerified: ix.compared,
      candidatePairsMatched: ix.matched,
      clustersWithDuplicates: roots.size,
      rowsWithoutWords: ix.unsigned
    }
  }
  const kept = writer.close()
  log.close()
  const input = first.stats.rows
  writeReport(ctx.output, {
    step: "dedup",
    method: p.method,
    format,
    fields,
    keep: p.keep,
    input,
    kept,
    removed: log.total,
    ...details,
    invalidSkipped: first.stats.skipped,
    invalidExamples: first.stats.examples,
    examples: log.examples[p.method] ?? []
  })
  ctx.metric("rows_in", input)
  ctx.metric("rows_out", kept)
  ctx.metric("removed", log.total)
  ctx.metric("invalid_skipped", first.stats.skipped)
}

export const dedup = preservingRows(defineStep({
  kind: "dedup",
  version: 2,
  description: "exact or MinHash near-duplicate removal, keeping the longest answer or the first row",
  params: DedupParams,
  inputs,
  output: Port.anyDataset() as Port<AnyDataset>,
  resources: (p) => ({ cpus: p.method === "minhash" ? (p.threads ?? 2) : 1 }),
  executionOnly: ["threads"],
  run: runDedup
}))

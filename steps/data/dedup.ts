/**
 * `dedup`: removes duplicate rows, in-process (no Python), by one of two methods:
 * - `exact`: rows whose normalized key fields are equal (default: the question side, Platypus'
 *   instruction + input); keep the longest answer or the first.
 * - `minhash`: near-duplicates by word n-gram MinHash + LSH (datatrove's defaults: 5-grams, 14 bands
 *   x 8 rows), candidates verified by estimated Jaccard >= threshold, clustered with union-find; one row
 *   kept per cluster. Both run as shard tasks on the CPU slots the scheduler grants: exact as keys per
 *   piece hash-partitioned into buckets, a dedup task per bucket (so memory is bounded by a bucket,
 *   not the corpus), a filter per piece; minhash as the stages of minhash/staged.ts.
 * The semantic method (embeddings) is the separate kind `dedup-semantic`, a Python worker.
 * Output: the kept rows (original order), `report.json` and `removed.jsonl` (every removed row, the
 * row it duplicates and, for minhash, their estimated Jaccard).
 */
import * as Schema from "effect/Schema"
import type { AnyDataset } from "../../engine/artifact.ts"
import { defineStep, preservingRows, Port, type StepContext } from "../../engine/step.ts"
import * as fs from "node:fs"
import * as path from "node:path"
import { NonNegativeInt, OnInvalid, PositiveInt, UnitInterval, withDefault } from "./common.ts"
import { exactBucketCount, exactPieceDecisions } from "./exact.ts"
import { runStage, stageDir, WorkerPool } from "./fanout.ts"
import { detectFormat, joinFields, questionFields, textFieldNames, type ConcreteFormat } from "./formats.ts"
import { datasetFiles } from "./jsonl.ts"
import { FanoutParams, fanoutExecutionOnly, OutputParam, registerMapper, runMapStep, stageProgress, workersOf } from "./map-fanout.ts"
import { clusterPieces, duplicateShares, SignatureFiles } from "./minhash/staged.ts"
import { planPieces, type Piece } from "./shards.ts"
import { writeReport } from "./writer.ts"

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
    description: "an older name of `workers`; the result does not depend on it."
  }),
  onInvalid: OnInvalid,
  examples: withDefault(NonNegativeInt, 5).annotate({ description: "duplicate clusters kept as examples in report.json" }),
  output: OutputParam,
  ...FanoutParams
})
export type DedupParams = typeof DedupParams.Type

const inputs = { data: Port.describe(Port.anyDataset(), "rows of any format (detected from the data)") }
type Ctx = StepContext<DedupParams, typeof inputs>

const defaultFields = (method: DedupParams["method"], format: ConcreteFormat): ReadonlyArray<string> =>
  method === "exact" ? questionFields[format] : textFieldNames[format]

/** A row's decision, one JSON line per row of a piece: null keeps it. */
type Decision = { readonly duplicateOf: string; readonly jaccard?: number } | null

// the filter stage: keep or remove each row as the decisions file of its piece says
registerMapper("dedup-filter", async (spec) => {
  const { decisions, rule, fields } = spec.inputs as { decisions: string; rule: string; fields: ReadonlyArray<string> }
  const lines = fs.readFileSync(path.join(decisions, `${spec.id}.jsonl`), "utf8").split("\n")
  return {
    map: (r) => {
      const d = JSON.parse(lines[r.index]!) as Decision
      return d === null ? { keep: r.row } : { remove: { rule, text: joinFields(r.row, fields), extra: d } }
    }
  }
})

const writeDecisions = (dir: string, tasks: ReadonlyArray<{ readonly id: string }>, perPiece: (p: number) => Iterable<Decision>): void => {
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  tasks.forEach((t, p) => {
    const out: Array<string> = []
    for (const d of perPiece(p)) out.push(JSON.stringify(d))
    fs.writeFileSync(path.join(dir, `${t.id}.jsonl`), out.join("\n") + "\n")
  })
}

const taskId = (i: number): string => String(i).padStart(5, "0")

export const runDedup = async (ctx: Ctx): Promise<void> => {
  const p = ctx.params
  const format = await detectFormat(ctx.inputs.data, { onInvalid: p.onInvalid })
  const fields = p.fields ?? defaultFields(p.method, format)
  const pieces = await planPieces(ctx.inputs.data, p.tasks)
  const workers = workersOf(ctx, p.workers ?? p.threads, ctx.inputs.data)
  const pool = new WorkerPool() // one set of worker processes for all the stages
  try {
    await dedupStages(ctx, { format, fields, pieces, workers, pool })
  } finally {
    pool.close()
  }
}

const dedupStages = async (
  ctx: Ctx,
  { format, fields, pieces, workers, pool }: { format: ConcreteFormat; fields: ReadonlyArray<string>; pieces: ReadonlyArray<Piece>; workers: number; pool: WorkerPool }
): Promise<void> => {
  const p = ctx.params
  const stage = async (name: string, op: string, plan: object, specs: ReadonlyArray<object>) => {
    const dir = stageDir(ctx.resumeDir, name, plan)
    const tasks = specs.map((s, i) => ({ ...s, op, id: taskId(i), dir: path.join(dir, taskId(i)) }))
    const results = await runStage(tasks, { workers, pool, signal: ctx.signal, onProgress: stageProgress(ctx, name), log: (m, l) => ctx.log(m, l) })
    return { tasks, results }
  }
  const common = { format, onInvalid: p.onInvalid, fields, keep: p.keep }
  const decisions = path.join(ctx.resumeDir, `decisions-${p.method}`)
  let details: Record<string, unknown>
  if (p.method === "exact") {
    const buckets = exactBucketCount(datasetFiles(ctx.inputs.data))
    const opts = { ...common, caseSensitive: p.caseSensitive, buckets }
    const keyed = await stage("exact-keys", "exact-keys", { pieces, ...opts }, pieces.map((piece) => ({ piece, ...opts })))
    const keyDirs = keyed.tasks.map((t) => t.dir)
    const bucketSpec = { keyDirs, names: pieces.map((x) => path.basename(x.file)) }
    const bucketed = await stage("exact-buckets", "exact-bucket", { ...bucketSpec, buckets }, Array.from({ length: buckets }, (_, bucket) => ({ ...bucketSpec, bucket })))
    const bucketDirs = bucketed.tasks.map((t) => t.dir)
    writeDecisions(decisions, keyed.tasks, (i) => exactPieceDecisions(bucketDirs, i, keyed.results[i]!.rows as number))
    const sum = (rs: ReadonlyArray<Record<string, unknown>>, f: string) => rs.reduce((a, r) => a + (r[f] as number), 0)
    details = { distinctKeys: sum(bucketed.results, "distinctKeys"), emptyKeys: sum(keyed.results, "emptyKeys") }
  } else {
    const mh = { ...common, ngram: p.minhash.ngram, bands: p.minhash.bands, rows: p.minhash.rows, seed: p.minhash.seed }
    const signed = await stage("minhash-sign", "minhash-sign", { pieces, ...mh }, pieces.map((piece) => ({ piece, ...mh })))
    const signDirs = signed.tasks.map((t) => t.dir)
    const counts = signed.results.map((r) => r.rows as number)
    const bandSpec = { signDirs, counts, bands: mh.bands, rows: mh.rows, threshold: p.minhash.threshold, maxComparisons: p.minhash.maxComparisons }
    const bands = await stage("minhash-bands", "minhash-band", bandSpec, Array.from({ length: mh.bands }, (_, band) => ({ ...bandSpec, band })))
    const c = clusterPieces(signDirs, counts, bands.tasks.map((t) => t.dir))
    const k = mh.bands * mh.rows
    // each removed row's estimate with its kept row: every signature involved read once
    const sigs = new SignatureFiles(signDirs, counts, k)
    let equal: Array<Int32Array>
    try {
      equal = duplicateShares(sigs, c.duplicateOf)
    } finally {
      sigs.close()
    }
    writeDecisions(decisions, signed.tasks, function* (piece) {
      const d = c.duplicateOf[piece]!
      for (let i = 0; i < d.length; i++) {
        const kept = d[i]!
        if (kept === -1) yield null
        else {
          yield {
            duplicateOf: `${path.basename(pieces[c.pieceOf(kept)]!.file)}:${c.lineOf(kept)}`,
            jaccard: Math.round((equal[piece]![i]! / k) * 1000) / 1000
          }
        }
      }
    })
    const sum = (f: string) => bands.results.reduce((a, r) => a + (r[f] as number), 0)
    details = {
      numHashes: k,
      candidatePairsVerified: sum("compared"),
      candidatePairsMatched: sum("matched"),
      clustersWithDuplicates: c.clustersWithDuplicates,
      rowsWithoutWords: c.unsigned
    }
  }
  const m = await runMapStep(ctx, {
    mapper: "dedup-filter",
    input: ctx.inputs.data,
    format,
    params: { ...p, workers },
    output: p.output,
    pieces,
    pool,
    inputs: { decisions, rule: p.method, fields }
  })
  writeReport(ctx.output, {
    step: "dedup",
    method: p.method,
    format,
    fields,
    keep: p.keep,
    input: m.rowsIn,
    kept: m.kept,
    removed: m.removed,
    ...details,
    invalidSkipped: m.skipped,
    invalidExamples: m.invalidExamples,
    examples: m.examples[p.method] ?? []
  })
  ctx.metric("rows_in", m.rowsIn)
  ctx.metric("rows_out", m.kept)
  ctx.metric("removed", m.removed)
  ctx.metric("invalid_skipped", m.skipped)
}

export const dedup = preservingRows(defineStep({
  kind: "dedup",
  version: 3,
  description: "exact or MinHash near-duplicate removal, keeping the longest answer or the first row",
  params: DedupParams,
  inputs,
  output: Port.anyDataset() as Port<AnyDataset>,
  resources: (p) => ({ cpus: p.workers ?? p.threads ?? 2 }),
  executionOnly: ["threads", ...fanoutExecutionOnly],
  run: runDedup
}))

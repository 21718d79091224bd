/**
 * Row-by-row data steps (clean, format, decontaminate) as shard tasks: each task reads one piece of
 * the input (shards.ts), decides every row (keep it, maybe changed, or remove it with a rule), and
 * writes its kept rows, its removals and its counts; the driver then merges them in input order into
 * the output dataset (shard-output.ts), `removed.jsonl` and the figures of `report.json`. The merge
 * sees the same rows in the same order whatever the cut and the number of workers, so the output
 * bytes, and the artifact's hash, are the same.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Schema from "effect/Schema"
import type { StepContext } from "../../engine/step.ts"
import { locationOf, RemovalLog, type RemovalExample } from "./common.ts"
import { DatasetError } from "./errors.ts"
import { registerShardOp, runStage, stageDir, type TaskSpec, type WorkerPool } from "./fanout.ts"
import { schemaOf, type ConcreteFormat } from "./formats.ts"
import { datasetFiles, isParquetFile, RowReader, type InvalidRow, type Located, type OnInvalid } from "./jsonl.ts"
import { columnsOf, inferredColumn, kindOfValue, mergeKinds, parquetExtraColumns, parquetShardInfo, type ExtraColumn, type ExtraKind } from "./parquet.ts"
import { planPieces, readPiece, type Piece } from "./shards.ts"
import { OutputLayout, resolveLayout, writeOutput } from "./shard-output.ts"
import { LineBlocks } from "./writer.ts"

const PositiveInt = Schema.Int.check(Schema.isGreaterThan(0))

/** Params every fanning step takes; none changes the output, so they are left out of the key. */
export const FanoutParams = {
  workers: Schema.optionalKey(PositiveInt).annotate({
    description: "shard tasks run at once (worker processes); the result does not depend on it. Default: the CPU slots granted, one for an input under 16 MiB."
  }),
  tasks: Schema.optionalKey(PositiveInt).annotate({
    description: "pieces the input is cut into, one shard task each; the result does not depend on it. Default: one per 64 MiB, at least one per input shard."
  })
}
export const fanoutExecutionOnly = ["workers", "tasks"]

export const OutputParam = Schema.optionalKey(OutputLayout).annotate({
  description: "output layout: one data.jsonl (default for JSONL input), or shards `data/train-NNNNN-of-NNNNN.{parquet,jsonl}`"
})

export type RowOutcome =
  | { readonly keep: Record<string, unknown> }
  | { readonly remove: { readonly rule: string; readonly text: string; readonly extra?: Record<string, unknown> } }

export interface RowMapper {
  readonly map: (r: Located<Record<string, unknown>>) => RowOutcome
  /** figures of the task beyond the common counts (merged by the step); called once every row is mapped */
  readonly finish?: () => Record<string, unknown>
  /** releases what the mapper holds open (a side file in the task's directory), whether or not the task
   * finished: a worker process runs many tasks */
  readonly close?: () => void
}

/** Builds a mapper from the task's spec (params, format, ...): runs once per task, in the task's process. */
export type MapperFactory = (spec: MapTaskSpec) => Promise<RowMapper>

export interface MapTaskSpec extends TaskSpec {
  readonly mapper: string
  readonly piece: Piece
  readonly format: ConcreteFormat
  /** the format of the rows the mapper keeps (default: format) */
  readonly outFormat?: ConcreteFormat
  readonly onInvalid: OnInvalid
  readonly examples: number
  readonly params: unknown
  readonly inputs: Record<string, unknown>
}

export interface MapTaskResult {
  readonly rowsIn: number
  readonly kept: number
  readonly counts: Record<string, number>
  readonly examples: Record<string, Array<RemovalExample>>
  readonly skipped: number
  readonly invalidExamples: Array<InvalidRow>
  readonly extra: Record<string, unknown>
  /** fields of the kept rows beyond the output format's, in first-seen order, with their values' kind */
  readonly extraKinds: Record<string, ExtraKind>
}

const mappers = new Map<string, MapperFactory>()

export const registerMapper = (name: string, factory: MapperFactory): void => {
  mappers.set(name, factory)
}

registerShardOp("map", async (task, progress, signal) => {
  const spec = task as MapTaskSpec
  const factory = mappers.get(spec.mapper)
  if (factory === undefined) throw new Error(`shard task ${spec.id}: unknown mapper "${spec.mapper}"`)
  const mapper = await factory(spec)
  const reader = new RowReader<Record<string, unknown>>(spec.piece.file, schemaOf(spec.format), { onInvalid: spec.onInvalid, allowEmpty: true })
  const log = new RemovalLog(spec.dir, spec.examples)
  const out = fs.openSync(path.join(spec.dir, "rows.jsonl"), "w")
  const lines = new LineBlocks(out)
  let kept = 0
  const known = columnsOf[spec.outFormat ?? spec.format]
  const extraKinds: Record<string, ExtraKind> = {}
  let extra: Record<string, unknown> = {}
  try {
    for await (const r of readPiece(spec.piece, reader)) {
      const o = mapper.map(r)
      if ("keep" in o) {
        for (const k in o.keep) {
          if (known.includes(k)) continue
          const kind = kindOfValue(o.keep[k])
          if (kind !== undefined && extraKinds[k] !== kind) extraKinds[k] = mergeKinds(extraKinds[k], kind)
        }
        lines.push(JSON.stringify(o.keep) + "\n")
        kept++
      } else log.remove(o.remove.rule, locationOf(r), o.remove.text, o.remove.extra)
      if (r.index % 1000 === 0) {
        if (signal?.aborted === true) throw new Error("interrupted")
        if (r.index % 5000 === 0) progress(r.index)
      }
    }
    lines.flush()
    extra = mapper.finish?.() ?? {}
  } finally {
    fs.closeSync(out)
    log.close()
    mapper.close?.()
  }
  const result: MapTaskResult = {
    rowsIn: reader.stats.rows,
    kept,
    counts: log.counts,
    examples: log.examples,
    skipped: reader.stats.skipped,
    invalidExamples: reader.stats.examples,
    extra,
    extraKinds
  }
  return result as unknown as Record<string, unknown>
})

export interface MapMerged {
  readonly rowsIn: number
  readonly kept: number
  readonly removed: number
  readonly counts: Record<string, number>
  readonly examples: Record<string, Array<RemovalExample>>
  readonly skipped: number
  readonly invalidExamples: Array<InvalidRow>
  /** each task's extra figures, in input order */
  readonly extras: ReadonlyArray<Record<string, unknown>>
  /** the kept rows' fields beyond the output format's, in first-seen order, kinds merged over the tasks */
  readonly extraKinds: Record<string, ExtraKind>
  /** each task's directory, in input order: a mapper's side files (decontamination's pairs.jsonl) are there */
  readonly taskDirs: ReadonlyArray<string>
}

export interface FanoutStepParams {
  readonly workers?: number | undefined
  readonly tasks?: number | undefined
  readonly onInvalid: OnInvalid
  readonly examples: number
}

/** Reports a stage's progress as the live view shows it: shards done of total, rows/s, failures. */
export const stageProgress = (ctx: Pick<StepContext<unknown, never>, "progress">, stage: string) => {
  const started = Date.now()
  let last = 0
  return (p: { readonly done: number; readonly total: number; readonly rows: number; readonly failed: number }) => {
    const now = Date.now()
    if (now - last < 250 && p.done < p.total) return
    last = now
    const secs = Math.max((now - started) / 1000, 1e-3)
    const rate = Math.round(p.rows / secs)
    // no `rate`: it counts the event's unit (shards), and a rows/s figure there showed as shards/s and
    // made the live view's ETA the shards left divided by rows/s; the rows' rate is in the phase text
    ctx.progress({
      current: p.done,
      total: p.total,
      unit: "shards",
      phase: `${stage}: ${p.rows} rows, ${rate} rows/s${p.failed > 0 ? `, ${p.failed} failed attempt${p.failed === 1 ? "" : "s"}` : ""}`
    })
  }
}

/** Input below which a step left to choose runs its tasks in its own process: a worker process costs
 * about a CPU-second to start (Node, tsx, Effect), what processing a few MB of rows costs. */
export const smallInputBytes = 16 << 20

/**
 * The worker count a step uses: its `workers` param, else the CPU slots the scheduler granted (one for
 * an input under smallInputBytes).
 */
export const workersOf = (ctx: { readonly cpus: number }, workers: number | undefined, input: string): number => {
  if (workers !== undefined) return workers
  const bytes = datasetFiles(input).reduce((a, f) => a + fs.statSync(f).size, 0)
  return bytes < smallInputBytes ? 1 : Math.max(1, ctx.cpus)
}

/**
 * Runs a row-by-row step as shard tasks and writes its output dataset and `removed.jsonl`; returns the
 * merged figures for the step's report.
 */
export const runMapStep = async (
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  ctx: StepContext<any, any>,
  o: {
    readonly mapper: string
    readonly input: string
    readonly format: ConcreteFormat
    readonly outFormat?: ConcreteFormat
    readonly params: FanoutStepParams
    readonly output: OutputLayout | undefined
    readonly inputs?: Record<string, unknown>
    /** the pieces, when an earlier stage planned them */
    readonly pieces?: ReadonlyArray<Piece>
    /** worker processes the step's earlier stages started */
    readonly pool?: WorkerPool
  }
): Promise<MapMerged> => {
  const p = o.params
  const pieces = o.pieces ?? (await planPieces(o.input, p.tasks))
  const dir = stageDir(ctx.resumeDir, "map", { mapper: o.mapper, pieces })
  const tasks: Array<MapTaskSpec> = pieces.map((piece, i) => ({
    op: "map",
    id: String(i).padStart(5, "0"),
    dir: path.join(dir, String(i).padStart(5, "0")),
    mapper: o.mapper,
    piece,
    format: o.format,
    ...(o.outFormat === undefined ? {} : { outFormat: o.outFormat }),
    onInvalid: p.onInvalid,
    examples: p.examples,
    params: ctx.params,
    inputs: o.inputs ?? {}
  }))
  const results = (await runStage(tasks, {
    workers: workersOf(ctx, p.workers, o.input),
    signal: ctx.signal,
    onProgress: stageProgress(ctx, o.mapper),
    log: (m, l) => ctx.log(m, l),
    ...(o.pool === undefined ? {} : { pool: o.pool })
  })) as unknown as Array<MapTaskResult>
  const merged = mergeResults(results, p.examples)
  if (merged.rowsIn === 0) {
    const skipped = merged.skipped > 0 ? ` (all ${merged.skipped} lines were invalid and skipped)` : ""
    throw DatasetError.at(o.input, undefined, `dataset is empty: no rows${skipped}`)
  }
  const parquetInputs = datasetFiles(o.input).filter(isParquetFile)
  const layout = resolveLayout(o.output, parquetInputs.length > 0, merged.kept)
  const outFormat = o.outFormat ?? o.format
  let extra: Array<ExtraColumn> = []
  if (layout.as === "parquet") {
    // the input shards' own column types where it was Parquet (every shard has one schema), else typed from the values
    const fromInput = parquetInputs.length > 0 ? parquetExtraColumns({ ...(await parquetShardInfo(parquetInputs[0]!)), format: outFormat }) : { columns: [], asJson: [] }
    if (fromInput.asJson.length > 0) ctx.log(`Parquet columns ${fromInput.asJson.join(", ")} are written as JSON text (their type does not round-trip through the step's rows)`, "warn")
    extra = fromInput.columns
    for (const [name, kind] of Object.entries(merged.extraKinds)) if (!extra.some((c) => c.name === name)) extra.push(inferredColumn(name, kind))
  }
  const written = await writeOutput(ctx.output, outFormat, layout, o.output, tasks.map((t) => path.join(t.dir, "rows.jsonl")), merged.kept, extra)
  if (written.extraFields > 0) {
    ctx.log(`${written.extraFields} rows had fields beyond the ${outFormat} columns that the Parquet shards do not keep (write JSONL to keep them)`, "warn")
  }
  concatFiles(path.join(ctx.output, "removed.jsonl"), tasks.map((t) => path.join(t.dir, "removed.jsonl")))
  return { ...merged, taskDirs: tasks.map((t) => t.dir) }
}

export const mergeResults = (results: ReadonlyArray<MapTaskResult>, maxExamples: number): Omit<MapMerged, "taskDirs"> => {
  const counts: Record<string, number> = {}
  const examples: Record<string, Array<RemovalExample>> = {}
  const invalidExamples: Array<InvalidRow> = []
  let rowsIn = 0
  let kept = 0
  let skipped = 0
  for (const r of results) {
    rowsIn += r.rowsIn
    kept += r.kept
    skipped += r.skipped
    for (const [rule, n] of Object.entries(r.counts)) counts[rule] = (counts[rule] ?? 0) + n
    for (const [rule, list] of Object.entries(r.examples)) {
      const into = (examples[rule] ??= [])
      for (const e of list) if (into.length < maxExamples) into.push(e)
    }
    for (const e of r.invalidExamples) if (invalidExamples.length < 20) invalidExamples.push(e)
  }
  // rules in order of first appearance in the input, as one pass would have counted them
  const removed = Object.values(counts).reduce((a, b) => a + b, 0)
  const extraKinds: Record<string, ExtraKind> = {}
  for (const r of results) for (const [k, kind] of Object.entries(r.extraKinds ?? {})) extraKinds[k] = mergeKinds(extraKinds[k], kind)
  return {
    extraKinds, rowsIn, kept, removed, counts: inFirstSeenOrder(results, counts), examples: inFirstSeenOrder(results, examples), skipped, invalidExamples, extras: results.map((r) => r.extra) }
}

/**
 * Rules in the order one pass over the whole input would have met them. A task's counts list its
 * rules in the order it met them, so walking the tasks in input order gives that order.
 */
const inFirstSeenOrder = <A>(results: ReadonlyArray<MapTaskResult>, merged: Record<string, A>): Record<string, A> => {
  const order: Array<string> = []
  for (const r of results) for (const rule of Object.keys(r.counts)) if (!order.includes(rule)) order.push(rule)
  const out: Record<string, A> = {}
  for (const rule of order) if (rule in merged) out[rule] = merged[rule]!
  return out
}

/** Concatenates files into `to` (missing ones count as empty). */
export const concatFiles = (to: string, files: ReadonlyArray<string>): void => {
  const fd = fs.openSync(to, "w")
  const buf = Buffer.alloc(1 << 22)
  try {
    for (const f of files) {
      if (!fs.existsSync(f)) continue
      const src = fs.openSync(f, "r")
      try {
        for (let n = fs.readSync(src, buf, 0, buf.length, null); n > 0; n = fs.readSync(src, buf, 0, buf.length, null)) fs.writeSync(fd, buf, 0, n)
      } finally {
        fs.closeSync(src)
      }
    }
  } finally {
    fs.closeSync(fd)
  }
}

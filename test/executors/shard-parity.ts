/**
 * Data steps' shard tasks on a real cluster (a Slurm job array, Ray tasks) against the same step fanned
 * out on this machine: `clean` and both semantic steps (their embedding stage starts a Python embedder in
 * each cluster task, their similarity stage runs Python too), each with several shard tasks, must write
 * the same bytes, and every task handed to the cluster must have been finished there (none left for the
 * step to run again here).
 *
 * The shard executor is process-wide (as in the CLI), and the cluster test files run their recipes'
 * data steps in the same process at the same time: only this helper's steps go to the cluster. A step is
 * recognised by its input file (unique to this helper), which its first stage's specs name; the later
 * stages' specs lie in the same resume directory (`<resumeDir>/<stage>/<id>.spec.json`).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { ExpectStatic } from "vitest"
import type { ShardRunner } from "../../engine/executors/shard-jobs.ts"
import { clean } from "../../steps/data/clean.ts"
import { finishedResult, setShardExecutor } from "../../steps/data/fanout.ts"
import { decontaminateSemantic, dedupSemantic } from "../../steps/data/semantic.ts"
import { paraphraseRows, runStep, treeDigest } from "../steps/data/helpers.ts"
import { buildOnce } from "../steps/train/helpers.ts"

/** Six instruction rows with two planted paraphrases, and a benchmark that two of them leak: the
 * smallest data on which both semantic steps remove something. */
const rows = paraphraseRows
const bench = [
  { question: "Which city is the capital of France?", answer: "Paris" },
  { question: "How many legs does a spider have?", answer: "8" }
]

export interface StageRecord {
  /** the stage's directory name: semantic-embed, semantic-greedy, map, ... */
  readonly stage: string
  readonly tasks: number
  /** tasks handed to the cluster that had no completion marker when it returned */
  readonly unfinished: ReadonlyArray<string>
  /** how long the cluster took over the stage's tasks */
  readonly ms: number
}

export interface ShardParityCase {
  readonly kind: string
  readonly tasks: number
  /** the cluster run's and the local run's tree digests */
  readonly cluster: string
  readonly local: string
  readonly removed: number
  readonly stages: ReadonlyArray<StageRecord>
}

const cases = (data: string, benchmark: string): Array<{ step: { readonly definition: unknown }; kind: string; inputs: Record<string, string | ReadonlyArray<string>>; params: object }> => [
  { step: clean, kind: "clean", inputs: { data }, params: { minWords: 8 } },
  { step: dedupSemantic, kind: "dedup-semantic", inputs: { data }, params: {} },
  { step: decontaminateSemantic, kind: "decontaminate-semantic", inputs: { data, benchmarks: [benchmark] }, params: { benchmark: { answer: "answer" }, remove: ["duplicate", "gray area", "similar but different"] } }
]

const writeInputs = (dir: string): { data: string; benchmark: string } => {
  const data = path.join(dir, "train.jsonl")
  fs.writeFileSync(data, rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
  const benchmark = path.join(dir, "bench.jsonl")
  fs.writeFileSync(benchmark, bench.map((r) => JSON.stringify(r)).join("\n") + "\n")
  return { data, benchmark }
}

/**
 * The three steps' artifact digests on this machine, in this process: built once per test run and
 * shared by the cluster test files (the semantic steps load the model; a run on a loaded machine takes
 * tens of seconds). The outputs name input files by base name only, so the directory does not matter,
 * and any cut writes the same bytes (fanout.test.ts, semantic.test.ts).
 */
const localDigests = async (tasks: number): Promise<Record<string, string>> => {
  const dir = await buildOnce(path.join(os.tmpdir(), `anneal-shard-parity-local-${tasks}`), async (staging) => {
    const { data, benchmark } = writeInputs(staging)
    const digests: Record<string, string> = {}
    for (const c of cases(data, benchmark)) digests[c.kind] = treeDigest((await runStep(c.step, c.inputs, { ...c.params, tasks })).output)
    fs.writeFileSync(path.join(staging, "digests.json"), JSON.stringify(digests))
  })
  return JSON.parse(fs.readFileSync(path.join(dir, "digests.json"), "utf8")) as Record<string, string>
}

/**
 * Runs clean, dedup-semantic and decontaminate-semantic with `tasks` shard tasks each through `runner`,
 * and returns what each did with the digest of the same step run on this machine (the caller asserts).
 */
export const clusterShardParity = async (runner: ShardRunner, tasks = 3): Promise<Array<ShardParityCase>> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-shard-parity-"))
  // the local reference meanwhile (or another test file's, when it already made it): the cluster run is mostly waiting
  const local = localDigests(tasks)
  local.catch(() => {})
  // each step its own copy of the inputs (same base names, so the same bytes as the reference): a stage's
  // specs name the step's input, which tells whose the stage is; later stages' lie in the same resume dir
  const runs = cases("", "").map((c, i) => {
    const d = path.join(dir, String(i))
    fs.mkdirSync(d)
    const { data, benchmark } = writeInputs(d)
    const inputs: Record<string, string | ReadonlyArray<string>> = c.kind === "decontaminate-semantic" ? { data, benchmarks: [benchmark] } : { data }
    return { ...c, inputs, needle: JSON.stringify(data).slice(1, -1), stages: [] as Array<StageRecord> }
  })
  const ours = new Map<string, (typeof runs)[number]>() // resume directory -> its step
  const previous = setShardExecutor({
    run: async (files, o) => {
      const resume = path.dirname(path.dirname(files[0]!))
      const run = ours.get(resume) ?? runs.find((r) => files.some((f) => fs.readFileSync(f, "utf8").includes(r.needle)))
      if (run === undefined) return previous?.run(files, o) // not ours: runs here
      ours.set(resume, run)
      const t0 = Date.now()
      await runner.run(files, o)
      const unfinished = files.filter((f) => finishedResult({ dir: f.replace(/\.spec\.json$/, "") }) === undefined).map((f) => path.basename(f))
      run.stages.push({ stage: path.basename(path.dirname(files[0]!)), tasks: files.length, unfinished, ms: Date.now() - t0 })
    }
  })
  let out: Array<ShardParityCase>
  try {
    // the three steps at once: each mostly waits for its stages' jobs
    out = await Promise.all(runs.map(async (c) => {
      const onCluster = await runStep(c.step, c.inputs, { ...c.params, tasks })
      return { kind: c.kind, tasks, cluster: treeDigest(onCluster.output), local: "", removed: Number(onCluster.metrics.removed), stages: c.stages }
    }))
  } finally {
    setShardExecutor(previous)
  }
  const digests = await local
  fs.rmSync(dir, { recursive: true, force: true })
  return out.map((c) => ({ ...c, local: digests[c.kind]! }))
}

/** What a user would notice: the same artifact bytes as on this machine, something removed, and every
 * stage of each step run on the cluster with all its tasks finished there. */
export const expectShardParity = (cases: ReadonlyArray<ShardParityCase>, expect: ExpectStatic): void => {
  expect(cases.map((c) => c.kind)).toEqual(["clean", "dedup-semantic", "decontaminate-semantic"])
  for (const c of cases) {
    expect(c.cluster, `${c.kind}: artifact bytes on the cluster vs here`).toBe(c.local)
    expect(c.removed, `${c.kind}: rows removed`).toBeGreaterThan(0)
    for (const s of c.stages) expect(s.unfinished, `${c.kind}: ${s.stage} tasks the cluster left unfinished`).toEqual([])
  }
  const stagesOf = (kind: string) => cases.find((c) => c.kind === kind)!.stages.map((s) => [s.stage, s.tasks])
  const n = cases[0]!.tasks
  console.log(cases.map((c) => `${c.kind}: ${c.stages.map((s) => `${s.stage} ${s.tasks} tasks ${(s.ms / 1000).toFixed(1)} s`).join(", ")}`).join("\n"))
  expect(stagesOf("clean")).toEqual([["map", n]])
  expect(stagesOf("dedup-semantic")).toEqual([["semantic-embed", n], ["semantic-greedy", 1], ["map", n]])
  // the embedding stage also embeds the benchmark questions (one more task)
  expect(stagesOf("decontaminate-semantic")).toEqual([["semantic-embed", n + 1], ["semantic-decontaminate", 1], ["map", n]])
}

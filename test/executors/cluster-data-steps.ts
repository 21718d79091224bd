/**
 * Issue 13's "for each data step: the same output hash for 1, 3 and 8 shards and for local, Slurm-array
 * and Ray execution", for the steps test/executors/shard-parity.ts does not take to a cluster: `format`
 * (to messages, and to 3 Parquet shards), n-gram `decontaminate`, exact `dedup` and MinHash `dedup`
 * (its sign, band and filter stages). fanout.test.ts shows 1, 3 and 8 tasks agree on this machine; here
 * each step's shard tasks go to a real cluster (a Slurm job array, Ray tasks) and must write the bytes of
 * the one-process run, every stage's tasks finished there (none left for the driver to run again).
 *
 * The steps run one after another, so every stage handed to the shard executor while a step runs is
 * that step's: no need to tell steps apart by their spec files.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { ExpectStatic } from "vitest"
import type { ShardRunner } from "../../engine/executors/shard-jobs.ts"
import { decontaminate } from "../../steps/data/decontaminate.ts"
import { dedup } from "../../steps/data/dedup.ts"
import { finishedResult, setShardExecutor } from "../../steps/data/fanout.ts"
import { format } from "../../steps/data/format.ts"
import { plantedCorpus, rng } from "../steps/data/corpus.ts"
import { runStep, tempDir, treeDigest, writeJsonl } from "../steps/data/helpers.ts"

export interface StageRecord {
  readonly stage: string
  readonly tasks: number
  /** tasks handed to the cluster without a completion marker once it returned */
  readonly unfinished: ReadonlyArray<string>
}

export interface ClusterCase {
  readonly name: string
  /** shard tasks the step was cut into on the cluster */
  readonly tasks: number
  readonly local: string
  readonly cluster: string
  readonly removed: number | undefined
  readonly stages: ReadonlyArray<StageRecord>
}

/** Instruction rows with repeated questions and, every 29th, a leaked benchmark question. */
const instructionRows = (n: number): Array<Record<string, string>> => {
  const r = rng(13)
  const words = Array.from({ length: 300 }, (_, i) => "tok" + i.toString(36))
  const sentence = (k: number) => Array.from({ length: k }, () => words[Math.floor(r() * words.length)]).join(" ")
  const rows: Array<Record<string, string>> = []
  for (let i = 0; i < n; i++) {
    if (i % 7 === 4) rows.push({ ...rows[Math.floor(r() * rows.length)]!, output: sentence(12) })
    else rows.push({ instruction: i % 29 === 3 ? "Name the largest planet of the solar system and give its mean radius in kilometres" : sentence(4 + Math.floor(r() * 14)), input: "", output: sentence(2 + Math.floor(r() * 20)) })
  }
  return rows
}

const cases = (dir: string) => {
  const data = writeJsonl(path.join(dir, "rows.jsonl"), instructionRows(240))
  const texts = writeJsonl(path.join(dir, "texts.jsonl"), plantedCorpus(5, 90).docs.map((text) => ({ text })))
  const bench = writeJsonl(path.join(dir, "bench.jsonl"), [{ question: "Name the largest planet of the solar system and give its mean radius in kilometres?", answer: "Jupiter" }])
  return [
    { name: "format to messages", step: format, inputs: { data }, params: { to: "messages", system: "be brief" }, removes: false },
    { name: "format to 3 Parquet shards", step: format, inputs: { data }, params: { as: "parquet", shards: 3 }, removes: false },
    { name: "decontaminate (n-gram)", step: decontaminate, inputs: { data, benchmarks: [bench] }, params: { n: 8 }, removes: true },
    { name: "dedup exact", step: dedup, inputs: { data }, params: { method: "exact" }, removes: true },
    { name: "dedup minhash", step: dedup, inputs: { data: texts }, params: { method: "minhash" }, removes: true }
  ] as const
}

/** Each case once in one process on this machine, then cut into each of `cuts` shard tasks through `runner`. */
export const clusterDataSteps = async (runner: ShardRunner, cuts: ReadonlyArray<number>): Promise<Array<ClusterCase>> => {
  const dir = tempDir("anneal-cluster-")
  const out: Array<ClusterCase> = []
  try {
    for (const c of cases(dir)) {
      const local = await runStep(c.step, c.inputs, { ...c.params, tasks: 1, workers: 1 }, { rows: false })
      for (const tasks of cuts) {
        const stages: Array<StageRecord> = []
        const previous = setShardExecutor({
          run: async (files, o) => {
            await runner.run(files, o)
            stages.push({
              stage: path.basename(path.dirname(files[0]!)),
              tasks: files.length,
              unfinished: files.filter((f) => finishedResult({ dir: f.replace(/\.spec\.json$/, "") }) === undefined).map((f) => path.basename(f))
            })
          }
        })
        let onCluster: Awaited<ReturnType<typeof runStep>>
        try {
          onCluster = await runStep(c.step, c.inputs, { ...c.params, tasks, workers: 2 }, { rows: false })
        } finally {
          setShardExecutor(previous)
        }
        out.push({ name: c.name, tasks, local: treeDigest(local.output), cluster: treeDigest(onCluster.output), removed: c.removes ? Number(onCluster.metrics.removed) : undefined, stages })
        fs.rmSync(onCluster.output, { recursive: true, force: true })
      }
      fs.rmSync(local.output, { recursive: true, force: true })
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
  return out
}

export const expectClusterParity = (got: ReadonlyArray<ClusterCase>, cuts: ReadonlyArray<number>, expect: ExpectStatic): void => {
  console.log(got.map((c) => `${c.name}, ${c.tasks} tasks: ${c.stages.map((s) => `${s.stage} ${s.tasks}`).join(", ")}`).join("\n"))
  const names = ["format to messages", "format to 3 Parquet shards", "decontaminate (n-gram)", "dedup exact", "dedup minhash"]
  expect(got.map((c) => [c.name, c.tasks])).toEqual(names.flatMap((n) => cuts.map((t) => [n, t])))
  for (const c of got) {
    const what = `${c.name}, ${c.tasks} tasks`
    expect(c.cluster, `${what}: artifact bytes on the cluster vs one process here`).toBe(c.local)
    if (c.removed !== undefined) expect(c.removed, `${what}: rows removed`).toBeGreaterThan(0)
    for (const s of c.stages) expect(s.unfinished, `${what}: ${s.stage} tasks the cluster left unfinished`).toEqual([])
    // every stage went to the cluster: the per-piece ones with one task a piece, then the rows written per piece
    const stages = c.stages.map((s) => [s.stage, s.tasks])
    if (c.name === "dedup exact") expect(stages, what).toEqual([["exact-keys", c.tasks], ["exact-buckets", expect.any(Number)], ["map", c.tasks]])
    else if (c.name === "dedup minhash") expect(stages, what).toEqual([["minhash-sign", c.tasks], ["minhash-bands", 14], ["map", c.tasks]])
    else expect(stages, what).toEqual([["map", c.tasks]])
  }
}

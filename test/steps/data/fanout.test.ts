/**
 * Data steps as shard tasks: the output (every file of the artifact) is the same for any cut of the
 * input into tasks and any number of worker processes; distributed MinHash agrees row for row with the
 * single-process implementation; a kill -9 mid fan-out loses only unfinished shards; bad shards fail
 * with one line naming the shard.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { execa } from "execa"
import { afterAll, describe, expect, it } from "vitest"
import { nodeBinary } from "../../../engine/executors/cluster-executor.ts"
import { pythonEnvVars, pythonExecutable } from "../../../engine/python.ts"
import { clean } from "../../../steps/data/clean.ts"
import { decontaminate } from "../../../steps/data/decontaminate.ts"
import { dedup } from "../../../steps/data/dedup.ts"
import { format } from "../../../steps/data/format.ts"
import { readRows } from "../../../steps/data/jsonl.ts"
import { buildMinHashIndex } from "../../../steps/data/minhash/dedup-minhash.ts"
import { bruteForcePairs, plantedCorpus, rng } from "./corpus.ts"
import { errorOf, readJsonlFile, runStep, tempDir, treeDigest, writeJsonl } from "./helpers.ts"

/** Instruction rows, some dirty, short or duplicated, one in 97 leaking a benchmark question. */
const instructionRows = (n: number, seed = 7): Array<Record<string, string>> => {
  const r = rng(seed)
  const words = Array.from({ length: 500 }, (_, i) => "word" + i.toString(36))
  const sentence = (k: number) => Array.from({ length: k }, () => words[Math.floor(r() * words.length)]).join(" ")
  const rows: Array<Record<string, string>> = []
  for (let i = 0; i < n; i++) {
    if (i % 11 === 3 && rows.length > 0) {
      rows.push({ ...rows[Math.floor(r() * rows.length)]!, output: sentence(40) }) // a duplicate question
      continue
    }
    const q = i % 97 === 5 ? "What is the boiling point of water at sea level in degrees Celsius on a normal day" : sentence(3 + Math.floor(r() * 20))
    rows.push({ instruction: (i % 13 === 0 ? "  " : "") + q + (i % 17 === 0 ? "\u0007" : ""), input: i % 5 === 0 ? sentence(4) : "", output: sentence(1 + Math.floor(r() * 30)) })
  }
  return rows
}

const kindOf = (s: unknown): string => (s as { definition: { kind: string } }).definition.kind

describe("data steps fan out", () => {
  const dir = tempDir()
  const data = writeJsonl(path.join(dir, "in.jsonl"), instructionRows(800))
  const bench = writeJsonl(path.join(dir, "bench.jsonl"), [{ question: "What is the boiling point of water at sea level in degrees Celsius on a normal day?", answer: "100" }])

  it("every data step writes the same bytes for 1, 3 and 8 tasks and for 1 or 2 worker processes", async () => {
    const texts = writeJsonl(path.join(dir, "texts.jsonl"), plantedCorpus(3, 150).docs.map((text) => ({ text })))
    const cases: Array<{ step: unknown; inputs: Record<string, string | ReadonlyArray<string>>; params: object }> = [
      { step: clean, inputs: { data }, params: { minWords: 5 } },
      { step: format, inputs: { data }, params: { to: "messages", system: "be brief" } },
      { step: decontaminate, inputs: { data, benchmarks: [bench] }, params: { n: 8 } },
      { step: dedup, inputs: { data }, params: { method: "exact" } },
      { step: dedup, inputs: { data: texts }, params: { method: "minhash" } }
    ]
    for (const c of cases) {
      const digests = new Set<string>()
      const removed = new Set<number>()
      for (const x of [{ tasks: 1, workers: 1 }, { tasks: 3, workers: 1 }, { tasks: 8, workers: 2 }]) {
        const r = await runStep(c.step as never, c.inputs, { ...c.params, ...x })
        removed.add(r.metrics.removed as number)
        digests.add(treeDigest(r.output))
      }
      if (c.step !== format) expect([...removed][0], kindOf(c.step)).toBeGreaterThan(0) // the case exercises removal
      expect(digests.size, kindOf(c.step)).toBe(1)
    }
  })

  it("distributed MinHash agrees row for row with the single-process implementation on planted near-duplicates", async () => {
    const { docs } = plantedCorpus(11, 700)
    const file = writeJsonl(path.join(tempDir(), "planted.jsonl"), docs.map((text) => ({ text })))
    const staged = await runStep(dedup, { data: file }, { method: "minhash", tasks: 5, workers: 1 })
    const reader = readRows(file, undefined)
    const ix = await buildMinHashIndex(reader.located(), "text", { fields: ["text"], keep: "longest", ngram: 5, bands: 14, rows: 8, threshold: 0.8, seed: 1, threads: 1, maxComparisons: 64 })
    // the reference's decision per row: kept, or the line of the row it duplicates
    const reference = docs.map((_, i) => {
      const kept = ix.keptOf[ix.clusters.find(i)]!
      return kept === i ? "kept" : ix.at(kept)
    })
    const removedAt = new Map(readJsonlFile(path.join(staged.output, "removed.jsonl")).map((x) => [Number(x.at.split(":")[1]) - 1, x.duplicateOf as string]))
    const distributed = docs.map((_, i) => removedAt.get(i) ?? "kept")
    expect(distributed).toEqual(reference)
    // the planted pairs at Jaccard >= 0.9 end up in one cluster
    const truth = bruteForcePairs(docs, 5)
    const rootOf = (i: number) => (removedAt.has(i) ? Number(removedAt.get(i)!.split(":")[1]) - 1 : i)
    const high = [...truth].filter(([, j]) => j >= 0.9).map(([k]) => k.split("-").map(Number) as [number, number])
    expect(high.length).toBeGreaterThan(60)
    expect(high.filter(([a, b]) => rootOf(a) === rootOf(b)).length / high.length).toBeGreaterThanOrEqual(0.95)
  })

  const children: Array<ReturnType<typeof execa>> = []
  afterAll(() => {
    for (const c of children) c.kill("SIGKILL")
  })

  it("after a kill -9 mid fan-out the rerun redoes only unfinished shards and equals a clean run", async () => {
    const big = writeJsonl(path.join(tempDir(), "big.jsonl"), instructionRows(16_000, 3))
    const params = { minWords: 5, tasks: 8, workers: 1 }
    const work = tempDir()
    const resume = path.join(work, "resume")
    fs.mkdirSync(resume)
    const markers = () => (fs.existsSync(path.join(resume, "map")) ? fs.readdirSync(path.join(resume, "map")).filter((f) => f.endsWith(".done.json")) : [])
    const child = execa(nodeBinary(), ["--import", "tsx", path.join(import.meta.dirname, "run-step-main.ts"), "clean", JSON.stringify({ data: big }), JSON.stringify(params), path.join(work, "out"), resume, "1"], { reject: false })
    children.push(child)
    let exited = false
    void child.finally(() => (exited = true))
    // kill the driver as soon as some shards, not all, are done
    while (markers().length === 0 && !exited) await new Promise((r) => setTimeout(r, 20))
    child.kill("SIGKILL")
    await child
    const before = new Map(markers().map((m) => [m, fs.statSync(path.join(resume, "map", m)).mtimeMs]))
    expect(before.size).toBeGreaterThan(0)
    expect(before.size).toBeLessThan(8)
    // rerun with the same resume dir: the finished shards' markers are untouched, the rest are written
    const { Effect, Schema } = await import("effect")
    const { runImplementation } = await import("../../../engine/step.ts")
    const out = tempDir()
    const def = (clean as unknown as { definition: any }).definition
    await Effect.runPromise(runImplementation(def, {
      step: "clean", key: "k", params: Schema.decodeUnknownSync(def.params)(params), inputs: { data: big }, output: out, resumeDir: resume,
      gpus: [], cpus: 1, seed: 0, signal: new AbortController().signal, progress: () => {}, metric: () => {}, log: () => {}
    } as never))
    for (const [m, mtime] of before) expect(fs.statSync(path.join(resume, "map", m)).mtimeMs).toBe(mtime)
    expect(markers().length).toBe(8)
    const fresh = await runStep(clean, { data: big }, params)
    expect(treeDigest(out)).toBe(treeDigest(fresh.output))
  })

  it("a worker killed with -9 mid fan-out: its shard is retried alone and the result equals a clean run", async () => {
    const big = writeJsonl(path.join(tempDir(), "big.jsonl"), instructionRows(16_000, 5))
    const params = { minWords: 5, tasks: 6, workers: 2 }
    const work = tempDir()
    const resume = path.join(work, "resume")
    fs.mkdirSync(resume)
    const child = execa(nodeBinary(), ["--import", "tsx", path.join(import.meta.dirname, "run-step-main.ts"), "clean", JSON.stringify({ data: big }), JSON.stringify(params), path.join(work, "out"), resume, "2"], { reject: false })
    children.push(child)
    let exited = false
    void child.finally(() => (exited = true))
    // a worker process (a child of the driver) that has started a task: kill it
    const workersOf = async () => (await execa("ps", ["-o", "pid=", "--ppid", String(child.pid)], { reject: false })).stdout.split("\n").map(Number).filter((n) => n > 0)
    const started = () => (fs.existsSync(path.join(resume, "map")) ? fs.readdirSync(path.join(resume, "map")).filter((f) => f.endsWith(".tmp")).length : 0)
    let victims: Array<number> = []
    while (!exited && (started() === 0 || victims.length === 0)) {
      victims = await workersOf()
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(exited).toBe(false)
    process.kill(victims[0]!, "SIGKILL")
    const done = await child
    expect(done.exitCode, String(done.stderr)).toBe(0)
    expect(String(done.stderr)).toMatch(/shard task \d+ failed \(the shard worker was killed by SIGKILL\); retrying it alone/)
    const fresh = await runStep(clean, { data: big }, { minWords: 5 })
    expect(treeDigest(path.join(work, "out"))).toBe(treeDigest(fresh.output))
  })

  it("Parquet shards: format writes the Hugging Face layout, and steps read it as they read JSONL", async () => {
    const pq = await runStep(format, { data }, { as: "parquet", shards: 3 })
    expect(JSON.parse(fs.readFileSync(path.join(pq.output, "dataset.json"), "utf8"))).toEqual({
      format: "instruction",
      rows: 800,
      shards: ["data/train-00000-of-00003.parquet", "data/train-00001-of-00003.parquet", "data/train-00002-of-00003.parquet"]
    })
    // same rows from Parquet as from JSONL, whatever the cut; back to one data.jsonl equals the source
    const fromJsonl = await runStep(clean, { data }, { minWords: 5, output: { as: "jsonl" } })
    const fromParquet = await runStep(clean, { data: pq.output }, { minWords: 5, output: { as: "jsonl" }, tasks: 4 })
    expect(fs.readFileSync(path.join(fromParquet.output, "data.jsonl"), "utf8")).toBe(fs.readFileSync(path.join(fromJsonl.output, "data.jsonl"), "utf8"))
    const back = await runStep(format, { data: path.join(pq.output, "data", "*.parquet") }, { as: "jsonl" })
    expect(fs.readFileSync(path.join(back.output, "data.jsonl"), "utf8")).toBe(fs.readFileSync(data, "utf8"))
    // the training workers' reader (python/anneal_worker/datasets.py, pyarrow) reads the same rows
    const py = "import json, sys\nfrom anneal_worker.datasets import read_dataset\nprint(json.dumps(read_dataset(sys.argv[1], ('instruction',), 't')[1]))"
    const res = await execa(pythonExecutable(), ["-c", py, pq.output], { env: { ...process.env, ...pythonEnvVars() } })
    expect(JSON.parse(res.stdout.trim().split("\n").at(-1)!)).toEqual(readJsonlFile(data))
    // the bytes of a Parquet output do not depend on the cut or the workers either
    const again = await runStep(format, { data }, { as: "parquet", shards: 3, tasks: 5, workers: 2 })
    expect(treeDigest(again.output)).toBe(treeDigest(pq.output))
  })

  it("reads shards pyarrow wrote (zstd, gzip, lz4; nested messages; extra int64 columns pass through)", async () => {
    const d = tempDir()
    const py = `
import sys, pyarrow as pa, pyarrow.parquet as pq
msgs = lambda i: [{"role": "user", "content": f"question {i} about rivers"}, {"role": "assistant", "content": f"answer {i}"}]
for s, codec in enumerate(["zstd", "gzip", "lz4"]):
    t = pa.table({"messages": [msgs(s * 2), msgs(s * 2 + 1)], "id": pa.array([s * 2, s * 2 + 1], pa.int64())})
    pq.write_table(t, f"{sys.argv[1]}/data/train-{s:05d}-of-00003.parquet", compression=codec)
`
    fs.mkdirSync(path.join(d, "data"))
    await execa(pythonExecutable(), ["-c", py, d], { env: { ...process.env, ...pythonEnvVars() } })
    const r = await runStep(clean, { data: d }, { output: { as: "jsonl" } })
    expect(r.rows).toEqual(Array.from({ length: 6 }, (_, i) => ({
      messages: [{ role: "user", content: `question ${i} about rivers` }, { role: "assistant", content: `answer ${i}` }],
      id: i
    })))
  })

  it("progress aggregates the shards: done of total, rows and rows/s", async () => {
    const { Effect, Schema } = await import("effect")
    const { runImplementation } = await import("../../../engine/step.ts")
    const def = (clean as unknown as { definition: any }).definition
    const events: Array<{ current: number; total?: number; unit?: string; phase?: string }> = []
    await Effect.runPromise(runImplementation(def, {
      step: "clean", key: "k", params: Schema.decodeUnknownSync(def.params)({ tasks: 4 }), inputs: { data }, output: tempDir(), resumeDir: tempDir(),
      gpus: [], cpus: 1, seed: 0, signal: new AbortController().signal, progress: (e: never) => events.push(e), metric: () => {}, log: () => {}
    } as never))
    expect(events[0]).toMatchObject({ current: 0, total: 4, unit: "shards" })
    expect(events.at(-1)).toMatchObject({ current: 4, total: 4, unit: "shards", phase: expect.stringMatching(/^clean: 800 rows, \d+ rows\/s$/) })
  })

  it("a corrupt, an empty or a differently shaped shard fails with one line naming it", async () => {
    const pq = await runStep(format, { data }, { as: "parquet", shards: 2 })
    const shards = path.join(pq.output, "data")
    const bad = (name: string, make: (file: string) => void) => {
      const d = tempDir()
      for (const f of fs.readdirSync(shards)) fs.copyFileSync(path.join(shards, f), path.join(d, f))
      make(path.join(d, name))
      return d
    }
    const corrupt = bad("train-00001-of-00002.parquet", (f) => fs.writeFileSync(f, fs.readFileSync(f).subarray(0, 300)))
    const empty = bad("train-00002-of-00002.parquet", (f) => fs.writeFileSync(f, ""))
    const texts = await runStep(format, { data: writeJsonl(path.join(tempDir(), "t.jsonl"), [{ text: "a text row here" }]) }, { as: "parquet" })
    const other = bad("train-00003-of-00003.parquet", (f) => fs.copyFileSync(path.join(texts.output, "data", "train-00000-of-00001.parquet"), f))
    for (const [d, name, why] of [
      [corrupt, "train-00001-of-00002.parquet", /not a readable Parquet file/],
      [empty, "train-00002-of-00002.parquet", /shard is empty/],
      [other, "train-00003-of-00003.parquet", /holds text rows, but train-00000-of-00002.parquet holds instruction rows/]
    ] as const) {
      for (const step of [clean, dedup]) {
        const msg = await errorOf(runStep(step, { data: d }, {}))
        expect(msg).toContain(name)
        expect(msg).toMatch(why)
        expect(msg.split("\n")).toHaveLength(1)
      }
    }
  })
})

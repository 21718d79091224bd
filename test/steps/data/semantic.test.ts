/**
 * The semantic steps as shard tasks: the embedding stage runs one Python server per worker process
 * (each loads torch and the model, a few seconds idle), so this file keeps to few runs and few workers.
 * The expected decisions are those of the single-process workers these steps replaced.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { execa } from "execa"
import { afterAll, describe, expect, it } from "vitest"
import { nodeBinary } from "../../../engine/executors/cluster-executor.ts"
import { pythonEnvVars, pythonExecutable } from "../../../engine/python.ts"
import { listingOf, reviewMarkdown } from "../../../steps/data/review.ts"
import { decontaminateSemantic, dedupSemantic } from "../../../steps/data/semantic.ts"
import { rng } from "./corpus.ts"
import { errorOf, paraphraseRows, readJsonlFile, runStep, tempDir, treeDigest, writeJsonl } from "./helpers.ts"

const pyDir = path.resolve(import.meta.dirname, "../../../steps/data/py")
const python = (code: string, args: ReadonlyArray<string> = []) =>
  execa(pythonExecutable(), ["-c", code, ...args], { env: { ...process.env, ...pythonEnvVars(), PYTHONPATH: `${pythonEnvVars().PYTHONPATH}:${pyDir}` } })

const dir = tempDir()
const rows = paraphraseRows
const data = writeJsonl(path.join(dir, "train.jsonl"), rows)

describe("dedup-semantic", () => {
  it("removes planted paraphrases, keeping the longer answer; the same bytes for 1, 3 and 8 tasks", async () => {
    const digests = new Set<string>()
    // at once: the runs in this process share one embedding server (one model load), as concurrent steps do
    const runs = await Promise.all([{ tasks: 1, workers: 1 }, { tasks: 3, workers: 1 }, { tasks: 8, workers: 2 }].map((x) => runStep(dedupSemantic, { data }, x)))
    for (const r of runs) {
      expect(r.rows).toEqual([rows[2], rows[3], rows[4], rows[5]])
      const removed = readJsonlFile(path.join(r.output, "removed.jsonl"))
      expect(removed.map((x) => [x.at, x.duplicateOf])).toEqual([["train.jsonl:1", "train.jsonl:3"], ["train.jsonl:2", "train.jsonl:5"]])
      // the cosines the single-process worker wrote
      expect(removed.map((x) => x.cosine)).toEqual([0.9718, 0.9416])
      expect(r.report).toMatchObject({ method: "semantic", input: 6, kept: 4, removed: 2, device: "cpu" })
      expect(JSON.parse(fs.readFileSync(path.join(r.output, "dataset.json"), "utf8"))).toEqual({ format: "instruction", rows: 4 })
      expect(r.metrics).toMatchObject({ rows_in: 6, rows_out: 4, removed: 2 })
      digests.add(treeDigest(r.output))
    }
    expect(digests.size).toBe(1)
  }, 300_000)

  it("greedy blocked search: keep-first order, same result for any block size", async () => {
    const res = await python(`
import numpy as np
from embed import greedy_dedup
rng = np.random.default_rng(0)
base = rng.normal(size=(40, 16)).astype(np.float32)
near = base[:10] + 0.05 * rng.normal(size=(10, 16)).astype(np.float32)
e = np.concatenate([base, near]); e /= np.linalg.norm(e, axis=1, keepdims=True)
a = greedy_dedup(e, np.arange(50), 0.9, block=4, kept_chunk=3)
b = greedy_dedup(e, np.arange(50), 0.9, block=1024)
assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
assert a[0][:40].all() and not a[0][40:].any(), a[0]
assert list(a[1][40:]) == list(range(10))
rev = greedy_dedup(e, np.arange(50)[::-1].copy(), 0.9, block=7)
assert rev[0][40:].all() and not rev[0][:10].any()
print("ok")
`)
    expect(res.stdout.trim()).toBe("ok")
  }, 60_000)

  it("the similarity stage's bounded memory: rows read from the pieces' files and kept rows in a file give the same decisions", async () => {
    const stage = tempDir()
    const res = await python(`
import os, sys, numpy as np
from embed import greedy_dedup
from semantic_shards import DIM, PieceRows
rng = np.random.default_rng(1)
e = rng.normal(size=(300, DIM)).astype(np.float32)
e[200:] = e[rng.integers(0, 200, 100)] + 0.2 * rng.normal(size=(100, DIM)).astype(np.float32)
e /= np.linalg.norm(e, axis=1, keepdims=True)
ids = ["00000", "00001", "00002"]
for i, (lo, hi) in zip(ids, [(0, 120), (120, 120), (120, 300)]):  # the middle piece is empty
    os.makedirs(os.path.join(sys.argv[1], i))
    e[lo:hi].tofile(os.path.join(sys.argv[1], i, "emb.f32"))
order = rng.permutation(300)
a = greedy_dedup(e, order, 0.8, block=32, kept_chunk=50)
kept = np.memmap(os.path.join(sys.argv[1], "kept.f32"), dtype="<f4", mode="w+", shape=(300, DIM))
b = greedy_dedup(PieceRows(sys.argv[1], ids), order, 0.8, block=32, kept_chunk=50, kept_emb=kept)
assert all((x == y).all() for x, y in zip(a, b))
print(int((~a[0]).sum()))
`, [stage])
    expect(Number(res.stdout.trim())).toBeGreaterThan(50) // the planted near-duplicates are found
  }, 60_000)
})

describe("decontaminate-semantic", () => {
  const bench = writeJsonl(path.join(dir, "bench.jsonl"), [
    { question: "A wheel of radius 0.5 m rotates about the x axis at a constant angular speed of 3 rad/s. What is the period of its rotation?", answer: "2.09 s" },
    { question: "Which city is the capital of France?", answer: "Paris" }
  ])
  const train = writeJsonl(path.join(dir, "leaky.jsonl"), [
    { instruction: "My teacher gave this as homework: a wheel of radius 0.5 m spins around the x axis at 3 rad/s. Find the period.", output: "T = 2π/3 = 2.09 s" },
    { instruction: "How many legs does a spider have?", output: "Eight." },
    { instruction: "A wheel of radius 0.5 m rotates about the y axis at a constant angular speed of 3 rad/s. What is the period of its rotation?", output: "It does not rotate." },
    { instruction: "What is the capital of France?", output: "Paris." }
  ])

  it("removes rows near a benchmark question and categorizes every pair; the same bytes for 1, 3 and 8 tasks", async () => {
    // at once: they share this process's embedding server (one model load); 8 tasks on 2 worker
    // processes, more tasks than rows (empty pieces too)
    const run = (tasks: number, workers = 1) =>
      runStep(decontaminateSemantic, { data: train, benchmarks: [bench] }, { benchmark: { answer: "answer" }, tasks, workers })
    const [one, r, eight] = await Promise.all([run(1), run(3), run(8, 2)])
    expect(treeDigest(r.output)).toBe(treeDigest(one.output))
    expect(treeDigest(eight.output)).toBe(treeDigest(one.output))
    expect(r.rows).toEqual([{ instruction: "How many legs does a spider have?", output: "Eight." }])
    const lines = fs.readFileSync(path.join(r.output, "flagged.jsonl"), "utf8").split("\n").filter((l) => l !== "")
    const flagged = lines.map((l) => JSON.parse(l))
    expect(flagged.map((p: any) => [p.train, p.item, p.category])).toEqual([
      ["leaky.jsonl:1", "bench.jsonl:1", "gray area"],
      ["leaky.jsonl:3", "bench.jsonl:1", "similar but different"],
      ["leaky.jsonl:4", "bench.jsonl:2", "gray area"]
    ])
    // written by Python as the n-gram step's lines are (compact, whole numbers without ".0")
    expect(lines).toEqual(flagged.map((p) => JSON.stringify(p)))
    expect(flagged.every((p: any) => p.score >= 0.8)).toBe(true)
    expect(r.report).toMatchObject({ flaggedPairs: 3, byCategory: { duplicate: 0, "gray area": 2, "similar but different": 1 }, pairsFile: "flagged.jsonl", examples: flagged })
    expect(r.report.pairs).toBeUndefined()
    expect(r.metrics).toMatchObject({ flagged_pairs: 3, "flagged.gray area": 2 })
    // review.md is laid out as the n-gram step writes it
    expect(fs.readFileSync(path.join(r.output, "review.md"), "utf8")).toBe(
      reviewMarkdown("Decontamination review (embedding cosine >= 0.8)", listingOf(flagged))
    )
  }, 300_000)

  it("the matching stage streams its pairs: with every row flagged it prints counts and `examples` pairs, and pairs.jsonl has one line a pair", async () => {
    // embeddings made up (no model): every row of two pieces at cosine 1 with both benchmark questions
    const stage = tempDir()
    const out = path.join(stage, "match")
    const res = await python(`
import json, os, sys
import numpy as np
from semantic_shards import DIM, decontaminate
stage, out, bench = sys.argv[1], sys.argv[2], sys.argv[3]
v = np.zeros(DIM, dtype="<f4"); v[0] = 1
ids = ["00000", "00001"]
for pid, n in zip(ids, [7000, 3000]):
    d = os.path.join(stage, pid); os.makedirs(d)
    np.tile(v, (n, 1)).tofile(os.path.join(d, "emb.f32"))
    json.dump({"at": [f"t.jsonl:{i + 1}" for i in range(n)]}, open(os.path.join(d, "rows.json"), "w"))
    open(os.path.join(d, "qa.jsonl"), "w").write("".join(json.dumps([f"question {i}", "x"]) + "\\n" for i in range(n)))
b = os.path.join(stage, "bench"); os.makedirs(b)
np.tile(v, (2, 1)).tofile(os.path.join(b, "bench.f32"))
cfg = os.path.join(stage, "config.json")
json.dump({"ids": ids, "benchmarks": [bench], "mappings": [{"answer": "answer"}], "benchDir": b, "threshold": 0.8,
           "remove": ["duplicate"], "duplicateSimilarity": 0.9, "examples": 4}, open(cfg, "w"))
decontaminate(stage, out, cfg)  # prints its result line
`, [stage, out, bench])
    const result = JSON.parse(res.stdout.trim().split("\n").pop()!)
    expect(result.flaggedPairs).toBe(20_000)
    expect(result.examples).toHaveLength(4)
    expect(Object.values(result.byCategory as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(20_000)
    const pairs = fs.readFileSync(path.join(out, "pairs.jsonl"), "utf8").split("\n").filter((l) => l !== "")
    expect(pairs).toHaveLength(20_000)
    expect(pairs.slice(0, 4).map((l) => JSON.parse(l))).toEqual(result.examples)
    expect(JSON.parse(pairs.at(-1)!)).toMatchObject({ train: "t.jsonl:3000", item: "bench.jsonl:2", score: 1 })
  }, 120_000)

  it("fails clearly on a missing benchmark file and a benchmark row without the question field", async () => {
    expect(await errorOf(runStep(decontaminateSemantic, { data: train, benchmarks: [] }))).toContain("needs at least one benchmark dataset")
    expect(await errorOf(runStep(decontaminateSemantic, { data: train, benchmarks: [path.join(dir, "nope.jsonl")] }))).toContain(
      "dataset not found"
    )
    const bad = writeJsonl(path.join(dir, "bad-bench.jsonl"), [{ prompt: "x" }])
    expect(await errorOf(runStep(decontaminateSemantic, { data: train, benchmarks: [bad] }))).toContain(
      "bad-bench.jsonl:1: field question: missing"
    )
  }, 180_000)
})

describe("the semantic steps' dataset reading", () => {
  it("fails on a malformed line or a wrong type naming file:line and field, before loading any model", async () => {
    const bad = writeJsonl(path.join(dir, "bad.jsonl"), [rows[0], { instruction: 3, output: "x" }, "{nope"])
    expect(await errorOf(runStep(dedupSemantic, { data: bad }))).toContain(`${bad}:2: field instruction: Expected string`)
    const empty = writeJsonl(path.join(dir, "empty.jsonl"), [])
    expect(await errorOf(runStep(dedupSemantic, { data: empty }))).toContain("dataset is empty")
  }, 60_000)

  it("skips and counts invalid lines with onInvalid: skip", async () => {
    const bad = writeJsonl(path.join(dir, "bad2.jsonl"), [rows[0], { instruction: 3, output: "x" }, "{nope", rows[1]])
    const res = await python(`
from data_io import RowReader
r = RowReader(${JSON.stringify(bad)}, "instruction", "skip")
print(len(list(r)), r.skipped, [(e["line"], e["field"]) for e in r.examples])
`)
    expect(res.stdout.trim()).toBe("2 2 [(2, 'instruction'), (3, '')]")
  }, 60_000)
})

describe("review categories agree between TS and Python", () => {
  it("py/review.py gives every fixture case its documented category", async () => {
    const fixture = path.join(import.meta.dirname, "fixtures", "review-cases.json")
    const res = await python(`
import json
from review import categorize
cases = json.load(open(${JSON.stringify(fixture)}))
print(json.dumps([categorize(c["trainQuestion"], c["trainAnswer"], c["benchQuestion"], c.get("benchAnswer"))["category"] for c in cases]))
`)
    const cases = JSON.parse(fs.readFileSync(fixture, "utf8")) as Array<{ category: string }>
    expect(JSON.parse(res.stdout)).toEqual(cases.map((c) => c.category))
  }, 60_000)
})

describe("the semantic stages killed mid fan-out", () => {
  const children: Array<ReturnType<typeof execa>> = []
  afterAll(() => {
    for (const c of children) c.kill("SIGKILL")
  })

  /** Short questions from a small vocabulary, one in 9 repeating an earlier one (something to remove). */
  const questions = (n: number): Array<Record<string, string>> => {
    const r = rng(13)
    const pick = (xs: ReadonlyArray<string>) => xs[Math.floor(r() * xs.length)]!
    const verbs = ["explain", "compare", "describe", "summarize", "list the uses of", "give an example of", "why do people study", "how does one measure"]
    const things = ["rivers", "volcanoes", "prime numbers", "sorting algorithms", "bread baking", "jazz harmony", "tides", "glaciers", "compilers", "bees", "chess openings", "solar panels", "bridges", "vaccines", "poetry meter", "coral reefs"]
    const out: Array<Record<string, string>> = []
    for (let i = 0; i < n; i++) {
      if (i % 9 === 4) out.push({ ...out[Math.floor(r() * out.length)]!, output: `answer ${i}` })
      else out.push({ instruction: `${pick(verbs)} ${pick(things)} to a ${pick(["child", "student", "farmer", "pilot", "chemist"])} in ${3 + Math.floor(r() * 9)} sentences`, output: `answer ${i}` })
    }
    return out
  }

  /** The children of a process, from /proc (cheap enough to read every few milliseconds). */
  const childrenOf = (pid: number): Array<number> => {
    try {
      return fs.readdirSync(`/proc/${pid}/task`).flatMap((t) => {
        try {
          return fs.readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ").map(Number).filter((n) => n > 0)
        } catch {
          return []
        }
      })
    } catch {
      return []
    }
  }
  /** Running (a zombie, exited but not yet reaped by whoever adopted it, counts as gone). */
  const alive = (pid: number): boolean => {
    try {
      return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"))
    } catch {
      return false
    }
  }
  const until = async (what: string, check: () => boolean, ms = 240_000): Promise<void> => {
    const deadline = Date.now() + ms
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 10))
    }
  }

  it("a worker, then the driver, killed with -9 while pieces embed: the worker's piece is retried alone, no process is left, the rerun embeds only unfinished pieces and equals a clean run", async () => {
    const big = writeJsonl(path.join(tempDir(), "questions.jsonl"), questions(640))
    const params = { tasks: 8, workers: 2 }
    const work = tempDir()
    const resume = path.join(work, "resume")
    fs.mkdirSync(resume)
    const embedDir = path.join(resume, "semantic-embed")
    const markers = () => (fs.existsSync(embedDir) ? fs.readdirSync(embedDir).filter((f) => f.endsWith(".done.json")) : [])
    const child = execa(nodeBinary(), ["--import", "tsx", path.join(import.meta.dirname, "run-step-main.ts"), "dedup-semantic", JSON.stringify({ data: big }), JSON.stringify(params), path.join(work, "out"), resume, "2"], { reject: false, buffer: false, stdin: "ignore" })
    children.push(child)
    let exited = false
    void child.finally(() => (exited = true))
    let stderr = ""
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString("utf8")))
    // a shard worker whose Python embedder has started (it is loading the model or embedding a piece): kill the worker
    let victim = 0
    let embedder = 0
    await until("a shard worker with its embedder", () => {
      if (exited) return true
      for (const w of childrenOf(child.pid!)) {
        const [e] = childrenOf(w)
        if (e !== undefined) [victim, embedder] = [w, e]
      }
      return victim > 0
    })
    expect(exited, stderr).toBe(false)
    process.kill(victim, "SIGKILL")
    await until("the retry", () => exited || /shard task \d+ failed \(the shard worker was killed by SIGKILL\); retrying it alone/.test(stderr))
    // then, at the first embedded piece, the driver with its workers and their embedders (as a lost machine)
    await until("an embedded piece", () => exited || markers().length > 0)
    const killed = [child.pid!, ...childrenOf(child.pid!).flatMap((w) => [w, ...childrenOf(w)])]
    for (const p of killed) process.kill(p, "SIGKILL")
    await child
    // the killed worker's embedder stopped by itself (it watches its parent), and nothing else is left
    await until("the processes to exit", () => ![embedder, ...killed].some(alive), 30_000)
    const before = new Map(markers().map((m) => [m, fs.statSync(path.join(embedDir, m)).mtimeMs]))
    expect(before.size, stderr).toBeGreaterThan(0)
    expect(before.size).toBeLessThan(8)
    expect(fs.existsSync(path.join(resume, "semantic-greedy"))).toBe(false)

    // rerun with the same resume dir (in this process, beside a clean run: one embedder serves both)
    const { Effect, Schema } = await import("effect")
    const { runImplementation } = await import("../../../engine/step.ts")
    const out = tempDir()
    const def = (dedupSemantic as unknown as { definition: any }).definition
    const [, fresh] = await Promise.all([
      Effect.runPromise(runImplementation(def, {
        step: "dedup-semantic", key: "k", params: Schema.decodeUnknownSync(def.params)({ ...params, workers: 1 }), inputs: { data: big }, output: out, resumeDir: resume,
        gpus: [], cpus: 1, seed: 0, signal: new AbortController().signal, progress: () => {}, metric: () => {}, log: () => {}
      } as never)),
      runStep(dedupSemantic, { data: big }, { tasks: 1 })
    ])
    for (const [m, mtime] of before) expect(fs.statSync(path.join(embedDir, m)).mtimeMs, m).toBe(mtime)
    expect(markers()).toHaveLength(8)
    expect(fresh.metrics.removed).toBeGreaterThan(0)
    expect(treeDigest(out)).toBe(treeDigest(fresh.output))
  }, 300_000)
})

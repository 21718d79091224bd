/**
 * MinHash dedup, anneal vs datasketch, side by side on one generated corpus with equal parameters
 * (word 5-grams, 112 hashes as 14 bands x 8 rows, verification at estimated Jaccard >= 0.8, keep the
 * first), on 1 and 2 cores; then n-gram decontamination throughput and semantic dedup time.
 *
 *   npx tsx bench/minhash-vs-datasketch.ts [--docs 100000] [--semantic-rows 25000] [--no-semantic]
 *
 * anneal runs the `dedup` step's implementation in-process (reading JSONL, signing on worker threads,
 * LSH, writing the kept rows); datasketch runs bench/datasketch_dedup.py (reading, MinHash.update_batch,
 * MinHashLSH query/insert, writing), its signatures on a multiprocessing pool for 2 cores. Timings are
 * wall-clock and include reading and writing on both sides. Throughput per core is also given as docs
 * per CPU-second (all threads and pool processes counted), which stays meaningful on a loaded machine
 * where wall-clock parallel speed-ups do not. Disagreements on the removed set are explained by the true
 * Jaccard of the pair the removing method matched (near the threshold, both are estimates).
 * Last line: `minhash speedup vs datasketch: Nx` (docs per CPU-second, 1 core each).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { pythonEnvVars, pythonExecutable } from "../engine/python.ts"
import { decontaminate } from "../steps/data/decontaminate.ts"
import { dedup } from "../steps/data/dedup.ts"
import { dedupSemantic } from "../steps/data/semantic.ts"
import { plantedCorpus, rng, shingleSet } from "../test/steps/data/corpus.ts"
import { readJsonlFile, runCommandStep, runStep, tempDir } from "../test/steps/data/helpers.ts"

const { values } = parseArgs({
  options: {
    docs: { type: "string", default: "100000" },
    "semantic-rows": { type: "string", default: "25000" },
    "no-semantic": { type: "boolean", default: false }
  }
})
const docsWanted = Number(values.docs)
const work = tempDir("anneal-bench-")
const fmt = (n: number) => Math.round(n).toLocaleString("en-US")
const row = (...cells: Array<string>) => console.log(cells.map((c, i) => (i === 0 ? c.padEnd(26) : c.padStart(20))).join(""))

// ---- corpus ------------------------------------------------------------------------------------------
// plantedCorpus(bases) yields ~1.4 docs per base: a third of them planted near-duplicates and copies
const { docs } = plantedCorpus(11, Math.ceil(docsWanted / 1.42))
const corpus = docs.slice(0, docsWanted)
const corpusFile = path.join(work, "corpus.jsonl")
fs.writeFileSync(corpusFile, corpus.map((text) => JSON.stringify({ text })).join("\n") + "\n")
console.log(`corpus: ${fmt(corpus.length)} docs, ${(fs.statSync(corpusFile).size / 1e6).toFixed(1)} MB; machine: ${os.availableParallelism()} cores, load ${os.loadavg()[0]!.toFixed(1)}`)

// ---- anneal ------------------------------------------------------------------------------------------
const lineOf = (at: string) => Number(at.split(":")[1]) - 1
const anneal = async (threads: number) => {
  const t0 = performance.now()
  const c0 = process.cpuUsage()
  const r = await runStep(dedup, { data: corpusFile }, { method: "minhash", keep: "first", threads })
  const seconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(c0)
  const list = readJsonlFile(path.join(r.output, "removed.jsonl"))
  const matchOf = new Map(list.map((x) => [lineOf(x.at), lineOf(x.duplicateOf)] as const))
  return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, removed: new Set(matchOf.keys()), matchOf }
}

// ---- datasketch --------------------------------------------------------------------------------------
const datasketch = async (procs: number) => {
  const res = await execa(pythonExecutable(), [path.join(import.meta.dirname, "datasketch_dedup.py"), corpusFile, path.join(work, `ds-${procs}`), String(procs)], {
    env: { ...process.env, ...pythonEnvVars() }
  })
  const out = JSON.parse(res.stdout.trim().split("\n").pop()!) as {
    seconds: number
    cpu_seconds: number
    removed: Array<number>
    matched: Array<number>
  }
  const matchOf = new Map(out.removed.map((r, i) => [r, out.matched[i]!] as const))
  return { seconds: out.seconds, cpuSeconds: out.cpu_seconds, removed: new Set(out.removed), matchOf }
}

const a1 = await anneal(1)
const a2 = await anneal(2)
const d1 = await datasketch(1)
const d2 = await datasketch(2)

console.log("\nMinHash dedup (5-grams, 112 hashes = 14 x 8, threshold 0.8, keep first)")
row("", "docs/s, 1 core", "docs/s, 2 cores", "docs/CPU-s, 1 core", "removed")
row("anneal dedup (minhash)", fmt(corpus.length / a1.seconds), fmt(corpus.length / a2.seconds), fmt(corpus.length / a1.cpuSeconds), fmt(a1.removed.size))
row("datasketch MinHashLSH", fmt(corpus.length / d1.seconds), fmt(corpus.length / d2.seconds), fmt(corpus.length / d1.cpuSeconds), fmt(d1.removed.size))
row("ratio", `${(d1.seconds / a1.seconds).toFixed(1)}x`, `${(d2.seconds / a2.seconds).toFixed(1)}x`, `${(d1.cpuSeconds / a1.cpuSeconds).toFixed(1)}x`, "")
const both = [...a1.removed].filter((i) => d1.removed.has(i)).length
const union = new Set([...a1.removed, ...d1.removed]).size
const agree = corpus.length - (union - both)
console.log(`agreement on the removed set: ${both} removed by both, ${a1.removed.size - both} only by anneal, ${d1.removed.size - both} only by datasketch; Jaccard ${(both / Math.max(union, 1)).toFixed(3)}, same decision on ${((agree / corpus.length) * 100).toFixed(2)}% of docs`)
// where they disagree, how similar was the pair the removing method matched, really?
const trueJ = (a: number, b: number): number => {
  const x = shingleSet(corpus[a]!, 5)
  const y = shingleSet(corpus[b]!, 5)
  let inter = 0
  for (const s of x) if (y.has(s)) inter++
  return inter / (x.size + y.size - inter)
}
const onlyBy = (m: Map<number, number>, other: Set<number>) => [...m].filter(([r]) => !other.has(r)).map(([r, k]) => trueJ(r, k))
const disagreements = [...onlyBy(a1.matchOf, d1.removed), ...onlyBy(d1.matchOf, a1.removed)]
const near = disagreements.filter((j) => j >= 0.7 && j < 0.9).length
console.log(`disagreements whose matched pair has a true Jaccard in [0.7, 0.9) (estimator noise around the 0.8 threshold): ${near} of ${disagreements.length}`)
const same = a1.removed.size === a2.removed.size && [...a1.removed].every((i) => a2.removed.has(i))
console.log(`anneal 1 vs 2 threads: ${same ? "identical" : "DIFFERENT"} removed sets`)

// ---- n-gram decontamination --------------------------------------------------------------------------
{
  const r = rng(5)
  const words = corpus.slice(0, 2000).flatMap((d) => d.split(" "))
  const items = Array.from({ length: 1000 }, (_, i) => {
    const len = 15 + Math.floor(r() * 25)
    const start = Math.floor(r() * (words.length - len))
    // half the items are spans of the corpus (leaks), half shuffled words (clean)
    const span = words.slice(start, start + len)
    return { question: (i % 2 === 0 ? span : span.sort(() => r() - 0.5)).join(" ") }
  })
  const benchFile = path.join(work, "bench.jsonl")
  fs.writeFileSync(benchFile, items.map((x) => JSON.stringify(x)).join("\n") + "\n")
  const t0 = performance.now()
  const res = await runStep(decontaminate, { data: corpusFile, benchmarks: [benchFile] }, {})
  const s = (performance.now() - t0) / 1000
  console.log(`\nn-gram decontamination (13-grams, 1,000 benchmark items): ${fmt(corpus.length / s)} docs/s on 1 core (${s.toFixed(1)} s, ${fmt(res.report.removed)} rows flagged)`)
}

// ---- semantic dedup ----------------------------------------------------------------------------------
if (!values["no-semantic"]) {
  const n = Number(values["semantic-rows"])
  const r = rng(9)
  const vocab = corpus.slice(0, 500).flatMap((d) => d.split(" "))
  const rows = Array.from({ length: n }, () => ({
    instruction: Array.from({ length: 8 + Math.floor(r() * 20) }, () => vocab[Math.floor(r() * vocab.length)]).join(" "),
    output: "answer"
  }))
  const f = path.join(work, "instructions.jsonl")
  fs.writeFileSync(f, rows.map((x) => JSON.stringify(x)).join("\n") + "\n")
  const t0 = performance.now()
  const res = await runCommandStep(dedupSemantic, { data: f }, { batchSize: 128 }, { cpus: 2 })
  const s = (performance.now() - t0) / 1000
  console.log(`semantic dedup (all-MiniLM-L6-v2, CPU, 2 threads, ${fmt(n)} rows): ${s.toFixed(1)} s including model load (${fmt(res.report.removed)} removed)`)
}

fs.rmSync(work, { recursive: true, force: true })
console.log(`\nper core (docs per CPU-second): anneal ${fmt(corpus.length / a1.cpuSeconds)} vs datasketch ${fmt(corpus.length / d1.cpuSeconds)}; wall clock 1 core ${(d1.seconds / a1.seconds).toFixed(1)}x, 2 cores ${(d2.seconds / a2.seconds).toFixed(1)}x`)
console.log(`minhash speedup vs datasketch: ${(d1.cpuSeconds / a1.cpuSeconds).toFixed(1)}x`)

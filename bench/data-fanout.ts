/**
 * Data steps fanned out on 1, 2 and 4 worker processes (local shard tasks): clean, exact dedup, MinHash
 * dedup and 13-gram decontamination over one generated text corpus with planted near-duplicates. Each
 * configuration's output must be byte-identical to the 1-worker run (checked). Reports wall seconds,
 * docs/s and, from the 1- and each N-worker time, the serial fraction by Amdahl's law
 * (s = (T_N/T_1 - 1/N) / (1 - 1/N)). On a machine with other load the wall times are noisy.
 *
 *   npx tsx bench/data-fanout.ts [--docs 100000] [--workers 1,2,4]
 *
 * Last line: `fan-out speedup at N workers: Nx` (clean + dedup + decontaminate, wall-clock).
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { clean } from "../steps/data/clean.ts"
import { decontaminate } from "../steps/data/decontaminate.ts"
import { dedup } from "../steps/data/dedup.ts"
import { plantedCorpus } from "../test/steps/data/corpus.ts"
import { runStep, tempDir, writeJsonl } from "../test/steps/data/helpers.ts"

const { values } = parseArgs({ options: { docs: { type: "string", default: "100000" }, workers: { type: "string", default: "1,2,4" } } })
const bases = Math.round(Number(values.docs) / 1.45)
const workerCounts = values.workers.split(",").map(Number)
const { docs } = plantedCorpus(5, bases)
const dir = tempDir("anneal-bench-fanout-")
const data = writeJsonl(path.join(dir, "corpus.jsonl"), docs.map((text) => ({ text })))
const bench = writeJsonl(path.join(dir, "bench.jsonl"), docs.slice(0, 50).map((d) => ({ question: d.split(" ").slice(0, 30).join(" ") })))
const mb = fs.statSync(data).size / 2 ** 20

const digest = (d: string): string => {
  const h = createHash("sha256")
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(d, rel)).sort()) {
      const r = path.join(rel, name)
      if (fs.statSync(path.join(d, r)).isDirectory()) walk(r)
      else h.update(r).update(fs.readFileSync(path.join(d, r)))
    }
  }
  walk("")
  return h.digest("hex")
}

const steps = [
  { name: "clean", run: (w: number) => runStep(clean, { data }, { minWords: 5, workers: w, tasks: 8 }, { rows: false }) },
  { name: "dedup exact", run: (w: number) => runStep(dedup, { data }, { method: "exact", workers: w, tasks: 8 }, { rows: false }) },
  { name: "dedup minhash", run: (w: number) => runStep(dedup, { data }, { method: "minhash", workers: w, tasks: 8 }, { rows: false }) },
  { name: "decontaminate 13-gram", run: (w: number) => runStep(decontaminate, { data, benchmarks: [bench] }, { workers: w, tasks: 8 }, { rows: false }) }
]
console.log(`${docs.length} docs, ${mb.toFixed(0)} MiB of JSONL; ${os.availableParallelism()} cores, load ${os.loadavg()[0]!.toFixed(1)}`)
const totals = new Map<number, number>()
for (const s of steps) {
  const times = new Map<number, number>()
  let reference: string | undefined
  for (const w of workerCounts) {
    const t0 = performance.now()
    const r = await s.run(w)
    const secs = (performance.now() - t0) / 1000
    const d = digest(r.output)
    reference ??= d
    if (d !== reference) throw new Error(`${s.name}: the output on ${w} workers differs from the 1-worker output`)
    times.set(w, secs)
    totals.set(w, (totals.get(w) ?? 0) + secs)
    fs.rmSync(r.output, { recursive: true, force: true })
  }
  const t1 = times.get(workerCounts[0]!)!
  const cols = workerCounts.map((w) => `${w}w ${times.get(w)!.toFixed(1)} s (${Math.round(docs.length / times.get(w)!)} docs/s)`).join("  ")
  // Amdahl's serial fraction from each count against the first (one worker); past the machine's cores
  // more workers only contend, so the figure at N <= cores is the one that describes the code
  const serial = workerCounts.slice(1).map((w) => `${w}w ${((times.get(w)! / t1 - 1 / w) / (1 - 1 / w)).toFixed(2)}`).join(", ")
  console.log(`${s.name.padEnd(22)} ${cols}  serial fraction ${serial || "-"}  (same bytes on every count)`)
}
fs.rmSync(dir, { recursive: true, force: true })
const last = workerCounts[workerCounts.length - 1]!
console.log(`fan-out speedup at ${last} workers: ${(totals.get(workerCounts[0]!)! / totals.get(last)!).toFixed(2)}x`)

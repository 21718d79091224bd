/**
 * Curation of real text, anneal vs datatrove: clean (Gopher quality rules, datatrove's defaults) +
 * MinHash dedup (word 5-grams, 14 bands x 8 rows, keep the first) + 13-gram decontamination against a
 * benchmark whose items are half spans of corpus documents (leaks) and half shuffled words.
 *
 *   npx tsx bench/curation-vs-datatrove.ts [--size-mb 5000] [--workers <cores>] [--parts 8]
 *
 * The corpus is made from Debian's text packages on this machine: the fortune databases
 * (apt-get install -y fortunes), man pages (troff markup stripped) and /usr/share/doc. A document is a
 * run of consecutive paragraphs of one file followed by a run from another; 8% of documents are
 * planted near-duplicates of an earlier one (1-3 word edits) and 3% exact copies. It is written as
 * --parts JSONL files (datatrove's tasks) and, concatenated in the same order, as one file (anneal's
 * input), so "first" means the same document on both sides.
 *
 * Three runs, each in its own process tree under /usr/bin/time (peak RSS of the largest process,
 * i.e. per worker): anneal in 1 process (workers 1), anneal shard-parallel (workers = --workers,
 * local worker processes), datatrove (LocalPipelineExecutor, same workers; bench/datatrove_curation.py).
 * Reported: wall seconds, docs/s, peak RSS per worker, and agreement of the final keep/drop decisions
 * (by document id) with datatrove's. Wall-clock figures depend on the machine's load (printed).
 * Last line: `curation throughput vs datatrove: Nx` (anneal shard-parallel docs/s / datatrove docs/s).
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import * as zlib from "node:zlib"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { pythonEnvVars, pythonExecutable } from "../engine/python.ts"
import { clean } from "../steps/data/clean.ts"
import { decontaminate } from "../steps/data/decontaminate.ts"
import { dedup } from "../steps/data/dedup.ts"
import { rng } from "../test/steps/data/corpus.ts"
import { runStep, tempDir } from "../test/steps/data/helpers.ts"

const { values } = parseArgs({
  options: {
    "size-mb": { type: "string", default: "5000" },
    workers: { type: "string", default: String(os.availableParallelism()) },
    parts: { type: "string", default: "8" },
    child: { type: "string" },
    corpus: { type: "string" },
    bench: { type: "string" },
    out: { type: "string" }
  }
})

// ---- child mode: one anneal pipeline run (the parent measures it under /usr/bin/time) ------------------
const dataFile = (dir: string) => (fs.existsSync(path.join(dir, "data.jsonl")) ? path.join(dir, "data.jsonl") : dir)
if (values.child !== undefined) {
  const workers = Number(values.child)
  const fanout = { workers, tasks: Math.max(8, workers) }
  const stages: Record<string, number> = {}
  const stageRss: Record<string, number> = {}
  const t0 = performance.now()
  let t = t0
  // the driver's peak RSS per stage (worker processes have their own, which /usr/bin/time reports)
  let peak = 0
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100)
  const lap = (name: string) => {
    const now = performance.now()
    stages[name] = (now - t) / 1000
    stageRss[name] = Math.round(Math.max(peak, process.memoryUsage().rss) / 1e6)
    peak = 0
    t = now
  }
  const c = await runStep(clean, { data: values.corpus! }, { fields: ["text"], gopher: {}, ...fanout }, { rows: false })
  lap("clean")
  const d = await runStep(dedup, { data: dataFile(c.output) }, { method: "minhash", keep: "first", fields: ["text"], ...fanout }, { rows: false })
  lap("minhash dedup")
  const x = await runStep(decontaminate, { data: dataFile(d.output), benchmarks: [values.bench!] }, { fields: ["text"], ...fanout }, { rows: false })
  lap("decontaminate")
  // the kept ids, streamed (reading the whole output at once would count in the peak RSS measured)
  const kept: Array<string> = []
  for await (const line of readline.createInterface({ input: fs.createReadStream(dataFile(x.output)) })) {
    if (line.length > 0) kept.push((JSON.parse(line) as { id: string }).id)
  }
  fs.writeFileSync(values.out!, kept.join("\n") + "\n")
  clearInterval(sampler)
  console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, stages, stageRss, kept: kept.length }))
  process.exit(0)
}

// ---- corpus ------------------------------------------------------------------------------------------
const sizeBytes = Number(values["size-mb"]) * 1e6
const workers = Number(values.workers)
const parts = Number(values.parts)
const work = tempDir("anneal-bench-curation-")
const fmt = (n: number) => Math.round(n).toLocaleString("en-US")
const r = rng(13)

const files = (dir: string): Array<string> => {
  if (!fs.existsSync(dir)) return []
  return (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as Array<fs.Dirent>)
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name))
    .sort()
}
const readText = (f: string): string | undefined => {
  try {
    let b = fs.readFileSync(f)
    if (f.endsWith(".gz")) b = zlib.gunzipSync(b)
    if (b.length === 0 || b.length > 4e6 || b.includes(0)) return undefined
    return b.toString("utf8")
  } catch {
    return undefined
  }
}
// troff to text: drop requests and comments, resolve the common escapes
const manText = (s: string): string =>
  s
    .split("\n")
    .filter((l) => !/^['.]\\"/.test(l) && !/^\.(TH|so|de|ds|nr|ig|if|ie|el|ft|in|ti|sp|br|PD|RS|RE|TP|IP|HP|PP|LP|P|SH|SS|ne|na|ad|nh|hy|fi|nf|EX|EE|UR|UE|MT|ME)\b/.test(l))
    .map((l) => (l.startsWith(".") ? l.replace(/^\.\w+\s*/, "") : l))
    .join("\n")
    .replace(/\\f(\[[^\]]*\]|\(..|.)/g, "")
    .replace(/\\\(em|\\\(en/g, "-")
    .replace(/\\\(..|\\\[[^\]]*\]/g, "")
    .replace(/\\[-e]/g, (m) => (m === "\\-" ? "-" : "\\"))
    .replace(/\\&|\\c|\\%|\\:/g, "")
    .replace(/\\ /g, " ")
const sources: Array<Array<string>> = []
const addParagraphs = (text: string, sep: RegExp) => {
  const ps = text
    .split(sep)
    .map((p) => p.trim())
    .filter((p) => p.length > 0)
  if (ps.length > 0) sources.push(ps)
}
for (const f of files("/usr/share/games/fortunes")) {
  if (f.endsWith(".dat") || f.endsWith(".u8")) continue
  const t = readText(f)
  if (t !== undefined) addParagraphs(t, /\n%\n/)
}
for (const f of files("/usr/share/man")) {
  if (!f.endsWith(".gz")) continue
  const t = readText(f)
  if (t !== undefined) addParagraphs(manText(t), /\n\s*\n/)
}
for (const f of files("/usr/share/doc")) {
  const t = readText(f)
  if (t !== undefined) addParagraphs(t, /\n\s*\n/)
}
const sourceBytes = sources.reduce((a, ps) => a + ps.reduce((b, p) => b + p.length, 0), 0)
if (sources.length === 0) throw new Error("no text found under /usr/share/games/fortunes, /usr/share/man or /usr/share/doc")

const run = (): string => {
  const ps = sources[Math.floor(r() * sources.length)]!
  const start = Math.floor(r() * ps.length)
  return ps.slice(start, start + 2 + Math.floor(r() * 8)).join("\n\n")
}
const edit = (text: string): string => {
  const ws = text.split(" ")
  for (let e = 1 + Math.floor(r() * 3); e > 0; e--) ws[Math.floor(r() * ws.length)] = "edited" + Math.floor(r() * 1000)
  return ws.join(" ")
}
const corpusFile = path.join(work, "corpus.jsonl")
const partsDir = path.join(work, "parts")
fs.mkdirSync(partsDir)
let written = 0
let n = 0
let planted = 0
const plantPool: Array<string> = [] // the documents duplicates are planted from (at most 20,000)
// streamed out in batches: part p holds the documents written while the total was in
// [p, p + 1) x size / parts (consecutive ranges, so the parts in order are the single file's order)
const whole = fs.openSync(corpusFile, "w")
let part = -1
let partFd = -1
let batch: Array<string> = []
const flush = () => {
  const chunk = batch.join("")
  fs.writeSync(whole, chunk)
  fs.writeSync(partFd, chunk)
  batch = []
}
while (written < sizeBytes) {
  const p = Math.min(parts - 1, Math.floor((written / sizeBytes) * parts))
  if (p !== part) {
    if (partFd !== -1) {
      flush()
      fs.closeSync(partFd)
    }
    part = p
    partFd = fs.openSync(path.join(partsDir, `part-${String(p).padStart(3, "0")}.jsonl`), "w")
  }
  const roll = r()
  let text: string
  if (roll < 0.08 && plantPool.length > 0) {
    text = edit(plantPool[Math.floor(r() * plantPool.length)]!)
    planted++
  } else if (roll < 0.11 && plantPool.length > 0) {
    text = plantPool[Math.floor(r() * plantPool.length)]!
    planted++
  } else {
    text = run() + "\n\n" + run()
    if (plantPool.length < 20000) plantPool.push(text)
    else plantPool[Math.floor(r() * plantPool.length)] = text
  }
  const line = JSON.stringify({ id: `d${n}`, text }) + "\n"
  batch.push(line)
  if (batch.length >= 1000) flush()
  written += Buffer.byteLength(line)
  n++
}
flush()
fs.closeSync(partFd)
fs.closeSync(whole)
// benchmark: 500 items, half a 30-word span of a corpus document (a leak), half shuffled words
const benchFile = path.join(work, "bench.jsonl")
{
  const items: Array<string> = []
  for (let i = 0; i < 500; i++) {
    const ws = plantPool[Math.floor(r() * plantPool.length)]!.split(/\s+/)
    const at = Math.floor(r() * Math.max(1, ws.length - 30))
    const span = ws.slice(at, at + 30)
    if (i % 2 === 1) span.sort(() => r() - 0.5)
    items.push(JSON.stringify({ question: span.join(" ") }))
  }
  fs.writeFileSync(benchFile, items.join("\n") + "\n")
}
console.log(`corpus: ${fmt(n)} docs, ${(written / 1e6).toFixed(0)} MB (${fmt(planted)} planted duplicates) from ${fmt(sources.length)} Debian text files (${(sourceBytes / 1e6).toFixed(0)} MB of paragraphs); ${parts} parts`)
console.log(`machine: ${os.availableParallelism()} cores, load ${os.loadavg()[0]!.toFixed(1)}; workers ${workers}`)

// ---- runs --------------------------------------------------------------------------------------------
interface Run {
  readonly seconds: number
  readonly stages: Record<string, number>
  /** the driver's peak RSS per stage, MB (anneal only) */
  readonly stageRss?: Record<string, number>
  readonly kept: Set<string>
  readonly rssMb: number
}
const timed = async (cmd: string, args: Array<string>, env: Record<string, string>, keptFile: string): Promise<Run> => {
  const rssFile = path.join(work, "rss-" + path.basename(keptFile))
  const res = await execa("/usr/bin/time", ["-f", "%M", "-o", rssFile, cmd, ...args], { env: { ...process.env, ...env } })
  const out = JSON.parse(res.stdout.trim().split("\n").pop()!) as { seconds: number; stages: Record<string, number>; stageRss?: Record<string, number> }
  const kept = new Set(fs.readFileSync(keptFile, "utf8").split("\n").filter((l) => l.length > 0))
  const rssMb = Number(fs.readFileSync(rssFile, "utf8").trim().split("\n").pop()) / 1024
  return { seconds: out.seconds, stages: out.stages, ...(out.stageRss === undefined ? {} : { stageRss: out.stageRss }), kept, rssMb }
}
const node = process.execPath
const annealRun = (w: number) => {
  const keptFile = path.join(work, `anneal-${w}.kept`)
  return timed(node, [...process.execArgv, import.meta.filename, "--child", String(w), "--corpus", corpusFile, "--bench", benchFile, "--out", keptFile], {}, keptFile)
}
const a1 = await annealRun(1)
const aN = await annealRun(workers)
const dtWork = path.join(work, "datatrove")
fs.mkdirSync(dtWork)
const dt = await timed(pythonExecutable(), [path.join(import.meta.dirname, "datatrove_curation.py"), partsDir, benchFile, dtWork, String(workers)], pythonEnvVars(), path.join(dtWork, "kept.txt"))

const row = (...cells: Array<string>) => console.log(cells.map((c, i) => (i === 0 ? c.padEnd(34) : c.padStart(18))).join(""))
console.log(`\nclean (Gopher) + MinHash dedup (5-grams, 14 x 8, keep first) + 13-gram decontamination, ${fmt(n)} docs`)
row("", "wall s", "docs/s", "peak RSS/worker", "kept")
for (const [name, x] of [["anneal, 1 process", a1], [`anneal, ${workers} workers`, aN], [`datatrove, ${workers} workers`, dt]] as const) {
  row(name, x.seconds.toFixed(1), fmt(n / x.seconds), `${x.rssMb.toFixed(0)} MB`, fmt(x.kept.size))
}
for (const [name, x] of [["anneal 1", a1], [`anneal ${workers}`, aN], ["datatrove", dt]] as const) {
  console.log(`  ${name} stages: ${Object.entries(x.stages).map(([k, s]) => `${k} ${s.toFixed(1)} s${x.stageRss?.[k] === undefined ? "" : ` (driver peak RSS ${x.stageRss[k]} MB)`}`).join(", ")}`)
}
const same = a1.kept.size === aN.kept.size && [...a1.kept].every((i) => aN.kept.has(i))
console.log(`anneal 1 process vs ${workers} workers: ${same ? "identical" : "DIFFERENT"} kept sets`)
const both = [...aN.kept].filter((i) => dt.kept.has(i)).length
const onlyA = aN.kept.size - both
const onlyD = dt.kept.size - both
console.log(`agreement with datatrove: ${fmt(both)} kept by both, ${fmt(onlyA)} kept only by anneal, ${fmt(onlyD)} only by datatrove; same keep/drop decision on ${(((n - onlyA - onlyD) / n) * 100).toFixed(2)}% of docs`)
console.log(`(datatrove runs with whitespace word splitting, as anneal, since its English tokenizer needs spaCy, absent here; it reads Parquet made from the same parts before its clock starts, since its JSONL reader needs orjson, also absent; its MinHash drops every bucket collision while anneal verifies candidates at estimated Jaccard >= 0.8)`)
fs.rmSync(work, { recursive: true, force: true })
console.log(`curation throughput vs datatrove: ${(dt.seconds / aN.seconds).toFixed(2)}x`)

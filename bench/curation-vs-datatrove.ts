/**
 * Curation of real text, anneal vs datatrove: clean (Gopher quality rules, datatrove's defaults) +
 * MinHash dedup (word 5-grams, 14 bands x 8 rows, keep the first) + 13-gram decontamination against a
 * benchmark whose items are half spans of corpus documents (leaks, taken from fortunes: see below) and
 * half shuffled words.
 *
 *   npx tsx bench/curation-vs-datatrove.ts [--size-mb 5000] [--workers <cores>] [--parts 8]
 *                                          [--runs 1,N,ray,datatrove]
 *
 * The corpus is made from Debian's text packages on this machine: the fortune databases
 * (apt-get install -y fortunes), man pages (troff markup stripped) and /usr/share/doc. A document is a
 * run of consecutive paragraphs of one file followed by a run from another; 8% of documents are
 * planted near-duplicates of an earlier one (1-3 word edits) and 3% exact copies. It is written as
 * --parts JSONL files (datatrove's tasks) and, concatenated in the same order, as one file (anneal's
 * input), so "first" means the same document on both sides.
 *
 * Four runs (--runs picks some, in the order given), each in its own process tree under /usr/bin/time
 * (peak RSS of the largest process, i.e. per worker): anneal in 1 process (`1`: workers 1), anneal
 * shard-parallel (`N`: workers = --workers, local worker processes), anneal on a one-node Ray cluster
 * (`ray`: the same pipeline with every stage's shard tasks handed to Ray as Ray tasks through the Ray
 * executor's shard runner, `shardJobs`; the head is started here with --workers logical CPUs, each task
 * takes one, and is stopped at the end, also on failure), datatrove (`datatrove`: LocalPipelineExecutor,
 * same workers; bench/datatrove_curation.py). On Ray the shard processes are the cluster's, not the
 * driver's children: their peak RSS is sampled from /proc (VmHWM, every second) and reported with the
 * driver's. Each run's figures print as it ends. Reported: wall seconds, docs/s, peak RSS per worker,
 * whether every anneal run kept the same set, and agreement of the final keep/drop decisions (by
 * document id) with datatrove's. Wall-clock figures depend on the machine's load (printed per run).
 * Then, per stage (clean, MinHash dedup, decontamination), of the docs that entered it on both sides,
 * how many both removed, only anneal, only datatrove (anneal's child writes the ids after clean and after
 * dedup; datatrove_curation.py writes its clean reasons, MinHash clusters and removals after its clock),
 * and why: the Gopher rule each side blames for a clean disagreement, and for each doc only datatrove's
 * MinHash removed the exact Jaccard of word 5-gram shingle sets with its datatrove cluster-mates (is it
 * an unverified bucket collision, a different choice of which copy to keep, or a pair anneal missed? the
 * missed pairs are put through anneal's dedup alone at threshold 0 for their MinHash estimate).
 * Last line: `curation throughput vs datatrove: Nx` (anneal shard-parallel docs/s / datatrove docs/s).
 * Intermediate outputs are deleted as soon as the next step has read them (a 5 GB corpus would
 * otherwise leave tens of GB per run under the temp dir). */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import * as zlib from "node:zlib"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { pythonEnvVars, pythonExecutable } from "../engine/python.ts"
import * as Schema from "effect/Schema"
import { clean } from "../steps/data/clean.ts"
import { simplifyWords } from "../steps/data/minhash/signature.ts"
import { GopherParams, gopherFailure } from "../steps/data/quality.ts"
import { decontaminate } from "../steps/data/decontaminate.ts"
import { dedup } from "../steps/data/dedup.ts"
import { makeRayBackend } from "../engine/executors/ray.ts"
import { rayShardRunner } from "../engine/executors/shard-jobs.ts"
import { setShardExecutor, shardCommand } from "../steps/data/fanout.ts"
import { rayCluster } from "../test/executors/ray-cluster.ts"
import { rng } from "../test/steps/data/corpus.ts"
import { runStep, tempDir } from "../test/steps/data/helpers.ts"

const { values } = parseArgs({
  options: {
    "size-mb": { type: "string", default: "5000" },
    workers: { type: "string", default: String(os.availableParallelism()) },
    parts: { type: "string", default: "8" },
    runs: { type: "string", default: "1,N,ray,datatrove" },
    child: { type: "string" },
    ray: { type: "string" },
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
  let t0 = performance.now()
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
  // on Ray: every stage's shard tasks go to the cluster as Ray tasks (one Ray job a stage), as under
  // `--executor ray` with `shardJobs: true`; the driver plans, waits and merges, as it does locally
  if (values.ray !== undefined) setShardExecutor(rayShardRunner(makeRayBackend({ address: values.ray, pollSeconds: 0.5 }), shardCommand, { pollSeconds: 0.5 }))
  // a step's output and resume directories, once the next step has read them (this child's TMPDIR holds
  // only its own); off the clock, as datatrove's side keeps its intermediate files
  const drop = (...dirs: Array<string>) => {
    const t1 = performance.now()
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
    for (const e of fs.readdirSync(os.tmpdir())) if (e.startsWith("anneal-resume-")) fs.rmSync(path.join(os.tmpdir(), e), { recursive: true, force: true })
    t0 += performance.now() - t1
    t += performance.now() - t1
  }
  // the ids a step let through, streamed to `file` (for the per-stage comparison), off the clock
  const ids = async (output: string, file: string) => {
    const t1 = performance.now()
    const out = fs.createWriteStream(file)
    for await (const line of readline.createInterface({ input: fs.createReadStream(dataFile(output)) })) {
      if (line.length > 0) out.write((JSON.parse(line) as { id: string }).id + "\n")
    }
    await new Promise((resolve) => out.end(resolve))
    t0 += performance.now() - t1
    t += performance.now() - t1
  }
  const c = await runStep(clean, { data: values.corpus! }, { fields: ["text"], gopher: {}, ...fanout }, { rows: false })
  lap("clean")
  drop()
  await ids(c.output, values.out! + ".clean")
  const d = await runStep(dedup, { data: dataFile(c.output) }, { method: "minhash", keep: "first", fields: ["text"], ...fanout }, { rows: false })
  lap("minhash dedup")
  drop(c.output)
  await ids(d.output, values.out! + ".dedup")
  const x = await runStep(decontaminate, { data: dataFile(d.output), benchmarks: [values.bench!] }, { fields: ["text"], ...fanout }, { rows: false })
  lap("decontaminate")
  drop(d.output)
  // the kept ids, streamed (reading the whole output at once would count in the peak RSS measured)
  const kept: Array<string> = []
  for await (const line of readline.createInterface({ input: fs.createReadStream(dataFile(x.output)) })) {
    if (line.length > 0) kept.push((JSON.parse(line) as { id: string }).id)
  }
  fs.writeFileSync(values.out!, kept.join("\n") + "\n")
  clearInterval(sampler)
  const metrics = { clean: c.metrics, dedup: d.metrics, decontaminate: x.metrics }
  console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, stages, stageRss, kept: kept.length, metrics }))
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
// the fortunes are sources [0, fortuneSources): the benchmark's leaks are taken from them (below)
const fortuneSources = sources.length
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

let lastSource = 0 // the source of the last run() (no draw of r(): the corpus is the same as before)
const run = (): string => {
  lastSource = Math.floor(r() * sources.length)
  const ps = sources[lastSource]!
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
// runs of fortunes that open a document, 40 words or more (at most 5,000; replaced in turn, without r())
const leakPool: Array<string> = []
let leakSeen = 0
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
    const first = run()
    if (lastSource < fortuneSources && first.split(/\s+/).length >= 40) leakPool[leakSeen++ % 5000] = first
    text = first + "\n\n" + run()
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
// benchmark: 500 items, half a 30-word span of a corpus document (a leak), half shuffled words. The
// leaks are spans of fortunes (the run a document opens with): spans of licence boilerplate, which the
// man pages and /usr/share/doc repeat in thousands of files, made most of the corpus "contaminated"
// (at 50 MB 5,081 of 6,937 rows, 62,689 flagged pairs, which the step keeps in memory for its review)
const benchFile = path.join(work, "bench.jsonl")
if (leakPool.length === 0) {
  fs.rmSync(work, { recursive: true, force: true })
  throw new Error("no document opens with 40 words of fortunes (apt-get install -y fortunes, or a larger --size-mb)")
}
{
  const items: Array<string> = []
  for (let i = 0; i < 500; i++) {
    const ws = leakPool[Math.floor(r() * leakPool.length)]!.split(/\s+/)
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
  readonly name: string
  readonly seconds: number
  readonly stages: Record<string, number>
  /** the driver's peak RSS per stage, MB (anneal only) */
  readonly stageRss?: Record<string, number>
  readonly kept: Set<string>
  /** peak RSS of the largest worker process, MB (on Ray: the larger of the driver and the shard processes) */
  readonly rssMb: number
  readonly note?: string
  /** each anneal step's metrics (rows removed, flagged pairs, ...) */
  readonly metrics?: Record<string, Record<string, number | string>>
  /** the ids clean and dedup let through (the per-stage comparison) */
  readonly after?: { readonly clean: Set<string>; readonly dedup: Set<string> }
  /** datatrove: each clean removal's GopherQualityFilter reason; each clustered doc's minhash cluster and whether it was removed */
  readonly dt?: { readonly cleanReasons: Map<string, string>; readonly clusters: Map<string, { readonly cluster: number; readonly removed: boolean }> }
}
const runs = values.runs.split(",").map((x) => x.trim())
for (const x of runs) if (!["1", "N", "ray", "datatrove"].includes(x)) throw new Error(`--runs: unknown run "${x}" (runs are 1, N, ray, datatrove)`)
const row = (...cells: Array<string>) => console.log(cells.map((c, i) => (i === 0 ? c.padEnd(34) : c.padStart(18))).join(""))
const show = (x: Run, loadBefore: number) => {
  const stages = Object.entries(x.stages).map(([k, s]) => `${k} ${s.toFixed(1)} s${x.stageRss?.[k] === undefined ? "" : ` (driver peak RSS ${x.stageRss[k]} MB)`}`).join(", ")
  console.log(`${x.name}: ${x.seconds.toFixed(1)} s, ${fmt(n / x.seconds)} docs/s, peak RSS/worker ${x.rssMb.toFixed(0)} MB, kept ${fmt(x.kept.size)}; load ${loadBefore.toFixed(1)} before, ${os.loadavg()[0]!.toFixed(1)} after`)
  console.log(`  stages: ${stages}${x.note === undefined ? "" : `\n  ${x.note}`}`)
  if (x.metrics !== undefined) console.log(`  removed: ${Object.entries(x.metrics).map(([k, m]) => `${k} ${fmt(Number(m.removed ?? 0))}`).join(", ")}; flagged pairs ${fmt(Number(x.metrics.decontaminate?.flagged_pairs ?? 0))}`)
}
const timed = async (name: string, cmd: string, args: Array<string>, env: Record<string, string>, keptFile: string): Promise<Run> => {
  const rssFile = path.join(work, "rss-" + path.basename(keptFile))
  const res = await execa("/usr/bin/time", ["-f", "%M", "-o", rssFile, cmd, ...args], { env: { ...process.env, ...env } })
  const out = JSON.parse(res.stdout.trim().split("\n").pop()!) as { seconds: number; stages: Record<string, number>; stageRss?: Record<string, number>; metrics?: Run["metrics"] }
  const kept = new Set(fs.readFileSync(keptFile, "utf8").split("\n").filter((l) => l.length > 0))
  const rssMb = Number(fs.readFileSync(rssFile, "utf8").trim().split("\n").pop()) / 1024
  const idSet = (f: string) => new Set(fs.readFileSync(f, "utf8").split("\n").filter((l) => l.length > 0))
  // anneal's child writes the ids after clean and after dedup beside its kept ids (datatrove's are read in datatroveRun)
  const after = fs.existsSync(keptFile + ".clean") ? { after: { clean: idSet(keptFile + ".clean"), dedup: idSet(keptFile + ".dedup") } } : {}
  return { name, seconds: out.seconds, stages: out.stages, ...(out.stageRss === undefined ? {} : { stageRss: out.stageRss }), ...(out.metrics === undefined ? {} : { metrics: out.metrics }), kept, rssMb, ...after }
}
const node = process.execPath
/** anneal's pipeline in a child process; its temp files (step outputs, resume directories) in a directory of its own, removed after */
const annealRun = async (name: string, w: number, ray?: string) => {
  const keptFile = path.join(work, `anneal-${ray === undefined ? w : "ray"}.kept`)
  const tmp = path.join(work, `tmp-${ray === undefined ? w : "ray"}`)
  fs.mkdirSync(tmp)
  try {
    return await timed(name, node, [...process.execArgv, import.meta.filename, "--child", String(w), "--corpus", corpusFile, "--bench", benchFile, "--out", keptFile, ...(ray === undefined ? [] : ["--ray", ray])], { TMPDIR: tmp }, keptFile)
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}
/** The Ray run: a head with `workers` CPUs started for it (untimed) and stopped after it, whatever happens. */
const rayRun = async (): Promise<Run> => {
  const cluster = rayCluster({ cpus: workers })
  try {
    const t0 = performance.now()
    const { address } = await cluster.start()
    console.log(`ray: one-node head at ${address}, ${workers} CPUs, started in ${((performance.now() - t0) / 1000).toFixed(0)} s (not timed)`)
    // the shard processes are Ray's children, not the driver's: their peak RSS (VmHWM) sampled from /proc
    const peaks = { shard: 0, ray: 0 }
    const sample = () => {
      for (const pid of cluster.processes()) {
        try {
          const hwm = Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024
          const shard = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("shard-main")
          if (shard) peaks.shard = Math.max(peaks.shard, hwm)
          else peaks.ray = Math.max(peaks.ray, hwm)
        } catch {
          // exited meanwhile
        }
      }
    }
    const sampler = setInterval(sample, 1000)
    let r: Run
    try {
      r = await annealRun(`anneal, Ray, ${workers} CPUs`, workers, address)
    } finally {
      clearInterval(sampler)
    }
    return {
      ...r,
      rssMb: Math.max(r.rssMb, peaks.shard),
      note: `peak RSS: driver ${r.rssMb.toFixed(0)} MB, shard processes ${peaks.shard.toFixed(0)} MB; Ray's own largest process (raylet, GCS, a Python task worker) ${peaks.ray.toFixed(0)} MB, not counted`
    }
  } finally {
    await cluster.stop()
  }
}
const datatroveRun = async (): Promise<Run> => {
  const dtWork = path.join(work, "datatrove")
  fs.mkdirSync(dtWork)
  try {
    const r = await timed(`datatrove, ${workers} workers`, pythonExecutable(), [path.join(import.meta.dirname, "datatrove_curation.py"), partsDir, benchFile, dtWork, String(workers)], pythonEnvVars(), path.join(dtWork, "kept.txt"))
    // what each stage removed (datatrove_curation.py's write_stages, after its clock)
    const tsv = (f: string) => fs.readFileSync(path.join(dtWork, f), "utf8").split("\n").filter((l) => l.length > 0).map((l) => l.split("\t"))
    const cleanReasons = new Map(tsv("clean-removed.tsv").map(([id, reason]) => [id!, reason!] as const))
    const clusters = new Map(tsv("dedup.tsv").map(([id, c, removed]) => [id!, { cluster: Number(c), removed: removed === "1" }] as const))
    const clean = new Set<string>()
    for (let i = 0; i < n; i++) if (!cleanReasons.has(`d${i}`)) clean.add(`d${i}`)
    const dedup = new Set(fs.readFileSync(path.join(dtWork, "after-dedup.txt"), "utf8").split("\n").filter((l) => l.length > 0))
    return { ...r, after: { clean, dedup }, dt: { cleanReasons, clusters } }
  } finally {
    // its kept ids are read; its intermediate files are GBs
    fs.rmSync(dtWork, { recursive: true, force: true })
  }
}
/**
 * Where the two sides' decisions part, stage by stage: of the docs that entered a stage on both sides,
 * which each removed there. Then the reasons: for clean, the Gopher rule each side blames (anneal's
 * gopherFailure at the defaults, datatrove's GopherQualityFilter reason); for MinHash, the exact
 * Jaccard of word 5-gram shingle sets (anneal's simplifyWords; and with numbers replaced by 0, as
 * datatrove's simplify_text does) between each doc only datatrove removed and the other members of its
 * datatrove cluster: the kept one, and the most similar one (of up to 300 nearest in corpus order).
 */
const perStage = async (a: Run, d: Run) => {
  const all = new Set(Array.from({ length: n }, (_, i) => `d${i}`))
  const stagesIo = [
    ["clean", all, all, a.after!.clean, d.after!.clean],
    ["minhash dedup", a.after!.clean, d.after!.clean, a.after!.dedup, d.after!.dedup],
    ["decontaminate", a.after!.dedup, d.after!.dedup, a.kept, d.kept]
  ] as const
  console.log(`\nper stage (${a.name} vs datatrove), of the docs that entered the stage on both sides:`)
  const cell = (...cs: Array<string>) => console.log(cs.map((c, i) => (i === 0 ? c.padEnd(16) : c.padStart(15))).join(""))
  cell("stage", "entered both", "removed both", "only anneal", "only datatrove", "entered one")
  const split: Record<string, { onlyA: Array<string>; onlyD: Array<string> }> = {}
  for (const [name, inA, inD, outA, outD] of stagesIo) {
    let entered = 0, both = 0
    const onlyA: Array<string> = [], onlyD: Array<string> = []
    for (const id of inA) {
      if (!inD.has(id)) continue
      entered++
      const ra = !outA.has(id), rd = !outD.has(id)
      if (ra && rd) both++
      else if (ra) onlyA.push(id)
      else if (rd) onlyD.push(id)
    }
    split[name] = { onlyA, onlyD }
    cell(name, fmt(entered), fmt(both), fmt(onlyA.length), fmt(onlyD.length), fmt(inA.size + inD.size - 2 * entered))
  }
  const clusters = d.dt!.clusters
  const members = new Map<number, Array<string>>()
  for (const [id, c] of clusters) members.set(c.cluster, [...(members.get(c.cluster) ?? []), id])
  const num = (id: string) => Number(id.slice(1))
  for (const ms of members.values()) ms.sort((x, y) => num(x) - num(y))
  // the docs to compare (only-datatrove dedup removals, at most 2,000, and their cluster-mates) and the clean disagreements
  const cleanSplit = split["clean"]!
  const sample = split["minhash dedup"]!.onlyD.slice(0, 2000)
  const near = (id: string): Array<string> => {
    const ms = members.get(clusters.get(id)!.cluster)!
    const at = ms.indexOf(id)
    return [...ms.slice(Math.max(0, at - 150), at), ...ms.slice(at + 1, at + 151)]
  }
  const need = new Set<string>([...cleanSplit.onlyA, ...cleanSplit.onlyD.slice(0, 50), ...sample])
  for (const id of sample) for (const m of [...near(id), ...members.get(clusters.get(id)!.cluster)!.filter((x) => !clusters.get(x)!.removed)]) need.add(m)
  const texts = new Map<string, string>()
  for await (const line of readline.createInterface({ input: fs.createReadStream(corpusFile) })) {
    const at = line.indexOf('"', 7) // {"id":"d123", ...
    if (line.length > 0 && need.has(line.slice(7, at))) {
      const row = JSON.parse(line) as { id: string; text: string }
      texts.set(row.id, row.text)
    }
  }
  // clean: the rule each side blames, grouped
  const gopherDefaults = Schema.decodeUnknownSync(GopherParams)({})
  const groups = new Map<string, Array<string>>()
  for (const id of cleanSplit.onlyA) {
    const k = `anneal ${gopherFailure(texts.get(id)!, gopherDefaults)} / datatrove keeps`
    groups.set(k, [...(groups.get(k) ?? []), id])
  }
  for (const id of cleanSplit.onlyD) {
    const k = `datatrove ${d.dt!.cleanReasons.get(id)} / anneal keeps`
    groups.set(k, [...(groups.get(k) ?? []), id])
  }
  console.log(`clean disagreements by rule: ${groups.size === 0 ? "none" : [...groups].sort((x, y) => y[1].length - x[1].length).map(([k, ids]) => `${k}: ${fmt(ids.length)} (e.g. ${ids.slice(0, 3).join(", ")})`).join("; ")}`)
  // MinHash: exact Jaccard of the docs only datatrove removed with their cluster-mates
  const shingleCache = new Map<string, Set<string>>()
  const shingles = (id: string, numbers: boolean): Set<string> => {
    const key = (numbers ? "0" : "") + id
    let set = shingleCache.get(key)
    if (set === undefined) {
      let t = texts.get(id)!
      if (numbers) t = t.replace(/\p{Nd}+([.,،٫⎖⎗⎘]\p{Nd}+)?/gu, "0")
      const ws = simplifyWords(t)
      set = new Set<string>()
      for (let i = 0; i + 5 <= ws.length; i++) set.add(ws.slice(i, i + 5).join(" "))
      if (ws.length < 5) set.add(ws.join(" "))
      shingleCache.set(key, set)
    }
    return set
  }
  const jaccard = (x: string, y: string, numbers = false) => {
    const sx = shingles(x, numbers), sy = shingles(y, numbers)
    let inter = 0
    for (const g of sx) if (sy.has(g)) inter++
    return inter / (sx.size + sy.size - inter)
  }
  const bucket = (js: Array<number>) => {
    const c = (lo: number, hi: number) => js.filter((j) => j >= lo && j < hi).length
    const sorted = [...js].sort((x, y) => x - y)
    return `>= 0.9: ${fmt(c(0.9, 2))}, 0.8-0.9: ${fmt(c(0.8, 0.9))}, 0.5-0.8: ${fmt(c(0.5, 0.8))}, < 0.5: ${fmt(c(0, 0.5))}; median ${(sorted[Math.floor(sorted.length / 2)] ?? 0).toFixed(2)}`
  }
  const withKept: Array<number> = [], best: Array<number> = [], bestNumbers: Array<number> = []
  const misses: Array<string> = []
  let keptLater = 0
  let otherKept = 0 // docs anneal kept while removing a >= 0.8 cluster-mate of theirs: the same duplicate, the other copy kept
  for (const id of sample) {
    const ms = members.get(clusters.get(id)!.cluster)!
    const kept = ms.find((x) => !clusters.get(x)!.removed)
    if (kept !== undefined) {
      withKept.push(jaccard(id, kept))
      if (num(kept) > num(id)) keptLater++
    }
    let b = 0, bn = 0
    let miss = "", removedMate = false
    for (const m of near(id)) {
      const j = jaccard(id, m)
      b = Math.max(b, j)
      bn = Math.max(bn, jaccard(id, m, true))
      if (j < 0.8 || !a.after!.clean.has(m)) continue
      // a mate at true Jaccard >= 0.8 that entered anneal's dedup: anneal removed it (kept this copy), or kept both (a miss)
      if (!a.after!.dedup.has(m)) removedMate = true
      else if (miss === "" || j > Number(miss.split(" ")[1])) miss = `${id}~${m} ${j.toFixed(2)}`
    }
    best.push(b)
    bestNumbers.push(bn)
    if (removedMate) otherKept++
    else if (miss !== "") misses.push(miss)
  }
  const nD = split["minhash dedup"]!.onlyD.length
  console.log(`minhash: ${fmt(nD)} docs only datatrove removed${sample.length < nD ? ` (the first ${fmt(sample.length)} compared)` : ""}; exact 5-gram Jaccard with the doc datatrove kept of their cluster: ${bucket(withKept)} (${fmt(keptLater)} of those kept docs come later in the corpus: datatrove keeps its union-find root, not the first)`)
  console.log(`  with their most similar cluster-mate: ${bucket(best)}; with numbers as 0 (datatrove's simplification): ${bucket(bestNumbers)}`)
  misses.sort((x, y) => Number(y.split(" ")[1]) - Number(x.split(" ")[1])) // the most similar first
  console.log(`  of those at >= 0.8: ${fmt(otherKept)} where anneal removed the (or a) >= 0.8 mate instead (same duplicate, other copy kept); ${fmt(misses.length)} where anneal kept both, i.e. missed a pair at true Jaccard >= 0.8 (highest ${Math.max(0, ...misses.map((m) => Number(m.split(" ")[1]))).toFixed(2)})${misses.length === 0 ? "" : ` (${misses.slice(0, 12).join(", ")}${misses.length > 12 ? ", ..." : ""})`}`)
  // each missed pair alone through anneal's dedup with threshold 0 (a doc's signature does not depend on
  // the others): it reports the pair's estimated Jaccard if they share a band. An estimate >= 0.8 would
  // mean the full run lost a pair it should merge (a bug); under 0.8, or no shared band, is MinHash's
  // estimate near its threshold (112 hashes: standard error ~0.04 at 0.8)
  const pairs = [...new Set(misses.map((m) => m.split(" ")[0]!.split("~").sort((p, q) => num(p) - num(q)).join("~")))]
  if (pairs.length > 0) {
    const probes: Array<string> = []
    for (const pair of pairs.slice(0, 12)) {
      const [x, y] = pair.split("~") as [string, string]
      const f = path.join(tempDir("anneal-bench-pair-"), "pair.jsonl")
      fs.writeFileSync(f, [x, y].map((id) => JSON.stringify({ id, text: texts.get(id) })).join("\n") + "\n")
      const r = await runStep(dedup, { data: f }, { method: "minhash", keep: "first", fields: ["text"], minhash: { threshold: 0 } })
      const removed = fs.existsSync(path.join(r.output, "removed.jsonl")) ? fs.readFileSync(path.join(r.output, "removed.jsonl"), "utf8").trim() : ""
      const est = /"jaccard":\s*([\d.]+)/.exec(removed)?.[1]
      probes.push(`${x}~${y} ${est === undefined ? "no band shared" : `estimate ${est}${Number(est) >= 0.8 ? " (>= 0.8: LOST IN THE FULL RUN)" : ""}`}`)
      fs.rmSync(path.dirname(f), { recursive: true, force: true })
      fs.rmSync(r.output, { recursive: true, force: true })
    }
    console.log(`  anneal's MinHash on those pairs alone (threshold 0)${pairs.length > 12 ? `, the first 12 of ${fmt(pairs.length)}` : ""}: ${probes.join("; ")}`)
  }
  const onlyA = split["minhash dedup"]!.onlyA
  const asRoot = onlyA.filter((id) => clusters.get(id)?.removed === false).length
  console.log(`  ${fmt(onlyA.length)} docs only anneal removed: ${fmt(asRoot)} of them are the doc datatrove kept of its cluster (a different choice of which to keep), ${fmt(onlyA.filter((id) => !clusters.has(id)).length)} in no datatrove cluster`)
}
const done = new Map<string, Run>()
// the corpus and whatever a run left are GBs: removed on failure or interruption too
const removeWork = () => fs.rmSync(work, { recursive: true, force: true })
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    removeWork()
    process.exit(130)
  })
}
try {
  for (const x of runs) {
    const load = os.loadavg()[0]!
    const r = x === "1" ? await annealRun("anneal, 1 process", 1)
      : x === "N" ? await annealRun(`anneal, ${workers} workers`, workers)
      : x === "ray" ? await rayRun()
      : await datatroveRun()
    done.set(x, r)
    show(r, load)
  }
} catch (e) {
  removeWork()
  throw e
}

console.log(`\nclean (Gopher) + MinHash dedup (5-grams, 14 x 8, keep first) + 13-gram decontamination, ${fmt(n)} docs, ${(written / 1e6).toFixed(0)} MB`)
row("", "wall s", "docs/s", "peak RSS/worker", "kept")
for (const x of done.values()) row(x.name, x.seconds.toFixed(1), fmt(n / x.seconds), `${x.rssMb.toFixed(0)} MB`, fmt(x.kept.size))
const sameSet = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((i) => b.has(i))
const anneals = ["1", "N", "ray"].filter((k) => done.has(k))
for (const k of anneals.slice(1)) console.log(`${done.get(anneals[0]!)!.name} vs ${done.get(k)!.name}: ${sameSet(done.get(anneals[0]!)!.kept, done.get(k)!.kept) ? "identical" : "DIFFERENT"} kept sets`)
const dt = done.get("datatrove")
const ours = done.get("N") ?? done.get("ray") ?? done.get("1")
if (dt !== undefined && ours !== undefined) {
  const both = [...ours.kept].filter((i) => dt.kept.has(i)).length
  const onlyA = ours.kept.size - both
  const onlyD = dt.kept.size - both
  console.log(`agreement with datatrove (${ours.name}): ${fmt(both)} kept by both, ${fmt(onlyA)} kept only by anneal, ${fmt(onlyD)} only by datatrove; same keep/drop decision on ${(((n - onlyA - onlyD) / n) * 100).toFixed(2)}% of docs`)
  console.log(`(datatrove runs with whitespace word splitting, as anneal, since its English tokenizer needs spaCy, absent here; it reads Parquet made from the same parts before its clock starts, since its JSONL reader needs orjson, also absent; its MinHash drops every bucket collision while anneal verifies candidates at estimated Jaccard >= 0.8)`)
  if (ours.after !== undefined && dt.after !== undefined && dt.dt !== undefined) await perStage(ours, dt)
}
removeWork()
const aN = done.get("N")
if (dt !== undefined && aN !== undefined) console.log(`curation throughput vs datatrove: ${(dt.seconds / aN.seconds).toFixed(2)}x`)
else console.log("curation throughput vs datatrove: not measured (needs the runs N and datatrove)")

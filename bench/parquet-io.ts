/**
 * Parquet I/O of the data steps (hyparquet / hyparquet-writer, pure JavaScript) against pyarrow (the
 * C++ Arrow library Hugging Face datasets uses) and against anneal's own JSONL, on one generated text
 * corpus: write all rows as one Snappy shard, then read them all back, row groups of 10,000 rows.
 *
 *   npx tsx bench/parquet-io.ts [--rows 200000]
 *
 * Figures are rows per CPU-second (this process's user+system time; Python's likewise), which stay
 * meaningful on a loaded machine, plus wall seconds and the peak RSS growth. Last line:
 * `parquet read vs pyarrow: Nx` (rows per CPU-second, 1 core each; below 1 means slower).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { pythonEnvVars, pythonExecutable } from "../engine/python.ts"
import { readFileLines } from "../steps/data/jsonl.ts"
import { ParquetShardWriter, parquetShardInfo, readParquetRows } from "../steps/data/parquet.ts"
import { DatasetWriter } from "../steps/data/writer.ts"
import { rng } from "../test/steps/data/corpus.ts"
import { tempDir } from "../test/steps/data/helpers.ts"

const { values } = parseArgs({ options: { rows: { type: "string", default: "200000" } } })
const n = Number(values.rows)
const r = rng(1)
const vocab = Array.from({ length: 20000 }, (_, i) => "w" + i.toString(36))
const rows = Array.from({ length: n }, () => ({ text: Array.from({ length: 40 + Math.floor(r() * 120) }, () => vocab[Math.floor(vocab.length * r() ** 2)]).join(" ") }))
const dir = tempDir("anneal-bench-pq-")

const measure = async (what: string, f: () => Promise<void> | void) => {
  const rss0 = process.memoryUsage().rss
  let peak = rss0
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20)
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await f()
  const wall = (performance.now() - t0) / 1000
  const c = process.cpuUsage(c0)
  clearInterval(timer)
  peak = Math.max(peak, process.memoryUsage().rss)
  const cpu = (c.user + c.system) / 1e6
  return { what, wall, cpu, perCpu: n / cpu, rssMb: (peak - rss0) / 2 ** 20 }
}

const pq = path.join(dir, "train-00000-of-00001.parquet")
const results = [
  await measure("anneal parquet write (hyparquet-writer)", async () => {
    const w = await ParquetShardWriter.open(pq, "text")
    for (const row of rows) w.write(row)
    w.close()
  }),
  await measure("anneal parquet read (hyparquet)", async () => {
    const info = await parquetShardInfo(pq)
    let k = 0
    for await (const _ of readParquetRows(pq, 0, info.rows, info.groups)) k++
    if (k !== n) throw new Error(`read ${k} rows of ${n}`)
  }),
  await measure("anneal jsonl write", () => {
    const w = new DatasetWriter(path.join(dir, "jsonl"), "text")
    for (const row of rows) w.write(row)
    w.close()
  }),
  await measure("anneal jsonl read (lines + JSON.parse)", async () => {
    let k = 0
    for await (const l of readFileLines(path.join(dir, "jsonl", "data.jsonl"))) {
      JSON.parse(l.text)
      k++
    }
    if (k !== n) throw new Error(`read ${k} rows of ${n}`)
  })
]
const py = `
import json, resource, sys, time, pyarrow as pa, pyarrow.parquet as pq
src, out = sys.argv[1], sys.argv[2]
texts = [json.loads(l)["text"] for l in open(src, encoding="utf-8")]
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
c0, t0 = cpu(), time.time()
pq.write_table(pa.table({"text": texts}), out, compression="snappy", row_group_size=10000)
w = (time.time() - t0, cpu() - c0)
c0, t0 = cpu(), time.time()
f = pq.ParquetFile(out); k = 0
for g in range(f.num_row_groups):
    k += len(f.read_row_group(g).to_pylist())
rd = (time.time() - t0, cpu() - c0)
print(json.dumps({"write": w, "read": rd, "rows": k}))
`
const res = await execa(pythonExecutable(), ["-c", py, path.join(dir, "jsonl", "data.jsonl"), path.join(dir, "pyarrow.parquet")], { env: { ...process.env, ...pythonEnvVars() } })
const p = JSON.parse(res.stdout.trim().split("\n").at(-1)!) as { write: [number, number]; read: [number, number]; rows: number }
results.push({ what: "pyarrow write (C++, snappy)", wall: p.write[0], cpu: p.write[1], perCpu: n / p.write[1], rssMb: NaN })
results.push({ what: "pyarrow read (to Python dicts)", wall: p.read[0], cpu: p.read[1], perCpu: n / p.read[1], rssMb: NaN })
const mb = fs.statSync(pq).size / 2 ** 20
console.log(`${n} text rows; anneal shard ${mb.toFixed(1)} MiB, pyarrow's ${(fs.statSync(path.join(dir, "pyarrow.parquet")).size / 2 ** 20).toFixed(1)} MiB, JSONL ${(fs.statSync(path.join(dir, "jsonl", "data.jsonl")).size / 2 ** 20).toFixed(1)} MiB`)
for (const x of results) {
  console.log(`${x.what.padEnd(42)} ${x.wall.toFixed(2).padStart(7)} s wall ${x.cpu.toFixed(2).padStart(7)} s cpu ${Math.round(x.perCpu).toString().padStart(9)} rows/cpu-s${Number.isNaN(x.rssMb) ? "" : `  peak RSS +${x.rssMb.toFixed(0)} MiB`}`)
}
fs.rmSync(dir, { recursive: true, force: true })
console.log(`parquet read vs pyarrow: ${(results[1]!.perCpu / results[5]!.perCpu).toFixed(2)}x`)

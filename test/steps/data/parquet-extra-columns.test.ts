/**
 * A row's fields beyond its format's (ids, urls, metadata) survive the data steps into Parquet: typed
 * as the input shard typed them when the input was Parquet, else from the values; a shard whose extra
 * columns differ from the others' is a one-line error naming it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { execa } from "execa"
import { describe, expect, it } from "vitest"
import { pythonEnvVars, pythonExecutable } from "../../../engine/python.ts"
import { clean } from "../../../steps/data/clean.ts"
import { decontaminate } from "../../../steps/data/decontaminate.ts"
import { dedup } from "../../../steps/data/dedup.ts"
import { format } from "../../../steps/data/format.ts"
import { errorOf, runStep, tempDir, writeJsonl } from "./helpers.ts"

const python = (code: string, ...args: Array<string>) => execa(pythonExecutable(), ["-c", code, ...args], { env: { ...process.env, ...pythonEnvVars() } })

/** Each Parquet shard of a dataset directory as pyarrow reads it: its column types and its rows. */
const readWithPyarrow = async (dirs: ReadonlyArray<string>) => {
  const py = `
import json, sys, glob, pyarrow.parquet as pq
out = []
for d in sys.argv[1:]:
    files = sorted(glob.glob(d + "/data/*.parquet"))
    t = pq.read_table(files)
    out.append({"types": {f.name: str(f.type) for f in t.schema}, "rows": t.to_pylist()})
print(json.dumps(out))
`
  const res = await python(py, ...dirs)
  return JSON.parse(res.stdout.trim().split("\n").at(-1)!) as Array<{ types: Record<string, string>; rows: Array<Record<string, unknown>> }>
}

describe("extra columns in Parquet output", () => {
  const rows = Array.from({ length: 40 }, (_, i) => ({
    instruction: i % 10 === 9 ? "ok" : `Question number ${i % 30} about the rivers of the world`,
    output: `Answer ${i} with enough words to pass the cleaning rules here`,
    id: 1000 + i,
    url: `https://example.org/${i}`
  }))
  const data = writeJsonl(path.join(tempDir(), "in.jsonl"), rows)

  it("an int and a string column survive clean + dedup (JSONL in, Parquet out, then Parquet in and out), for any cut", async () => {
    const cleaned = await runStep(clean, { data }, { minWords: 3, fields: ["instruction"], output: { as: "parquet", shards: 2 } })
    expect(cleaned.logs.join("\n")).not.toMatch(/do not keep/)
    const deduped = await runStep(dedup, { data: cleaned.output }, { keep: "first", tasks: 3 })
    const again = await runStep(dedup, { data: cleaned.output }, { keep: "first", tasks: 1 })
    for (const f of fs.readdirSync(path.join(deduped.output, "data"))) {
      expect(fs.readFileSync(path.join(again.output, "data", f))).toEqual(fs.readFileSync(path.join(deduped.output, "data", f)))
    }
    const converted = await runStep(format, { data: deduped.output }, { to: "messages" })
    const [c, d, m] = await readWithPyarrow([cleaned.output, deduped.output, converted.output])
    const kept = rows.filter((r) => r.instruction !== "ok") // clean drops the one-word questions
    expect(c!.types).toEqual({ instruction: "string", input: "string", output: "string", id: "int64", url: "string" })
    expect(c!.rows).toEqual(kept.map((r) => ({ ...r, input: null })))
    // dedup (Parquet in) keeps the first of each question: ids 1000..1029
    expect(d!.types).toEqual(c!.types)
    expect(d!.rows.map((r) => [r.id, r.url])).toEqual(kept.filter((r) => r.id < 1030).map((r) => [r.id, r.url]))
    // format converting the rows keeps their other fields too
    expect(m!.types).toMatchObject({ id: "int64", url: "string" })
    expect(m!.rows.map((r) => [r.id, r.url])).toEqual(d!.rows.map((r) => [r.id, r.url]))
  }, 60_000)

  it("keeps the input shard's column types (int32, string, a list) through decontaminate and format; a shard with other extra columns fails naming it", async () => {
    const d = tempDir()
    fs.mkdirSync(path.join(d, "data"))
    const py = `
import sys, pyarrow as pa, pyarrow.parquet as pq
for s in range(2):
    t = pa.table({"text": [f"document {s} {i} of the corpus with several words" for i in range(5)],
                  "rank": pa.array([s * 10 + i for i in range(5)], pa.int32()),
                  "source": [f"site-{i}" for i in range(5)],
                  "tags": pa.array([[i, i + 1] for i in range(5)], pa.list_(pa.int64()))})
    pq.write_table(t, f"{sys.argv[1]}/data/train-{s:05d}-of-00002.parquet")
`
    await python(py, d)
    const bench = writeJsonl(path.join(tempDir(), "bench.jsonl"), [{ question: "document 1 3 of the corpus with several words" }])
    const x = await runStep(decontaminate, { data: d, benchmarks: [bench] }, { n: 8 })
    const f = await runStep(format, { data: x.output }, { shards: 1 })
    const [a, b] = await readWithPyarrow([x.output, f.output])
    expect(a!.types).toEqual({ text: "string", rank: "int32", source: "string", tags: "list<element: int64>" })
    expect(a!.rows).toHaveLength(9)
    expect(a!.rows.map((r) => r.rank)).toEqual([0, 1, 2, 3, 4, 10, 11, 12, 14])
    expect(a!.rows[4]).toEqual({ text: "document 0 4 of the corpus with several words", rank: 4, source: "site-4", tags: [4, 5] })
    expect(b).toEqual(a)
    // a third shard whose extra column has another type
    const bad = path.join(d, "data", "train-00002-of-00002.parquet")
    await python(`
import sys, pyarrow as pa, pyarrow.parquet as pq
pq.write_table(pa.table({"text": ["one more document"], "rank": pa.array([1], pa.int64()), "source": ["x"], "tags": pa.array([[1]], pa.list_(pa.int64()))}), sys.argv[1])
`, bad)
    const msg = await errorOf(runStep(clean, { data: d }, {}))
    expect(msg).toContain("train-00002-of-00002.parquet")
    expect(msg).toMatch(/extra columns \{rank INT64, source BYTE_ARRAY, tags\}, but train-00000-of-00002.parquet has \{rank INT32, source BYTE_ARRAY, tags\}/)
    expect(msg.split("\n")).toHaveLength(1)
  }, 60_000)
})

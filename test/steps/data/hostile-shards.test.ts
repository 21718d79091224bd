/**
 * Issue 13's hostile inputs, for every data step rather than the two fanout.test.ts takes: a corrupt
 * Parquet shard (cut short, or damaged inside a row group behind an intact footer, which only the task
 * reading it meets), an empty one and one holding another row format each fail `clean`, `format`,
 * n-gram `decontaminate`, exact and MinHash `dedup` (3 tasks on 2 worker processes) and both semantic
 * steps with one line naming the shard. Through the CLI, such a shard leaves nothing half-written: no
 * artifact, no staging, no cached result, and once the shard is repaired the same command builds.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { clean } from "../../../steps/data/clean.ts"
import { decontaminate } from "../../../steps/data/decontaminate.ts"
import { dedup } from "../../../steps/data/dedup.ts"
import { format } from "../../../steps/data/format.ts"
import { ParquetShardWriter } from "../../../steps/data/parquet.ts"
import { decontaminateSemantic, dedupSemantic } from "../../../steps/data/semantic.ts"
import { cli, stepEvents, storeSnapshot, tempProject } from "../../helpers/project.ts"
import { errorOf, runStep, tempDir, writeJsonl } from "./helpers.ts"

const writeShard = async (file: string, format: "instruction" | "text", rows: ReadonlyArray<Record<string, string>>) => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const w = await ParquetShardWriter.open(file, format)
  for (const r of rows) w.write(r as never)
  w.close()
}

const question = (i: number) => ({ instruction: `Question number ${i % 40} asks about rivers, lakes and the sea in some detail`, input: "", output: `Answer ${i % 40} with several words of explanation` })

/** Three good instruction shards, the one named `bad` then made hostile by `make`. */
const shardsWith = async (bad: string, make: (file: string) => Promise<void> | void): Promise<string> => {
  const d = tempDir("anneal-shards-")
  for (let s = 0; s < 3; s++) await writeShard(path.join(d, `train-0000${s}-of-00003.parquet`), "instruction", Array.from({ length: 60 }, (_, i) => question(s * 60 + i)))
  await make(path.join(d, bad))
  return d
}

const hostile = [
  {
    what: "a corrupt shard",
    name: "train-00001-of-00003.parquet",
    make: (f: string) => fs.writeFileSync(f, fs.readFileSync(f).subarray(0, 300)),
    why: /not a readable Parquet file/
  },
  {
    // the footer is intact, so the shard is planned and handed to a worker, which meets the damage
    what: "a shard corrupt inside its row group",
    name: "train-00001-of-00003.parquet",
    make: (f: string) => {
      const b = fs.readFileSync(f)
      b.fill(0xff, 100, Math.floor(b.length / 2))
      fs.writeFileSync(f, b)
    },
    why: /cannot decode row group 0 of the Parquet shard/
  },
  { what: "an empty shard", name: "train-00002-of-00003.parquet", make: (f: string) => fs.writeFileSync(f, ""), why: /shard is empty/ },
  {
    what: "a shard of text rows among instruction rows",
    name: "train-00002-of-00003.parquet",
    make: (f: string) => writeShard(f, "text", [{ text: "a text row among instruction rows" }]),
    why: /holds text rows, but train-00000-of-00003.parquet holds instruction rows/
  }
] as const

describe("hostile shards (issue 13)", () => {
  const bench = writeJsonl(path.join(tempDir(), "bench.jsonl"), [{ question: "Which river is the longest in Africa?", answer: "The Nile" }])
  const fanout = { tasks: 3, workers: 2 }
  const steps: Array<{ name: string; step: { readonly definition: unknown }; inputs: Record<string, ReadonlyArray<string>>; params: object }> = [
    { name: "clean", step: clean, inputs: {}, params: fanout },
    { name: "format", step: format, inputs: {}, params: { to: "messages", ...fanout } },
    { name: "decontaminate", step: decontaminate, inputs: { benchmarks: [bench] }, params: { n: 5, ...fanout } },
    { name: "dedup exact", step: dedup, inputs: {}, params: { method: "exact", ...fanout } },
    { name: "dedup minhash", step: dedup, inputs: {}, params: { method: "minhash", ...fanout } },
    { name: "dedup-semantic", step: dedupSemantic, inputs: {}, params: { tasks: 3 } },
    { name: "decontaminate-semantic", step: decontaminateSemantic, inputs: { benchmarks: [bench] }, params: { benchmark: { answer: "answer" }, tasks: 3 } }
  ]

  for (const h of hostile) {
    it(`${h.what}: every data step fails with one line naming it`, async () => {
      const d = await shardsWith(h.name, h.make)
      const failures: Array<string> = []
      for (const s of steps) {
        const msg = await errorOf(runStep(s.step, { data: d, ...s.inputs }, s.params)).catch((e: Error) => `(no error: ${e.message})`)
        if (!msg.includes(h.name) || !h.why.test(msg) || msg.split("\n").length !== 1) failures.push(`${s.name}: ${JSON.stringify(msg)}`)
      }
      expect(failures).toEqual([])
    })
  }

  it("through the CLI: a corrupt shard in a source glob fails the step naming it, writes nothing, and the repaired shard builds", async () => {
    const p = tempProject("anneal-hostile-")
    for (let s = 0; s < 3; s++) await writeShard(p.file(`shards/part-${s}.parquet`), "instruction", Array.from({ length: 60 }, (_, i) => question(s * 60 + i)))
    const good = fs.readFileSync(p.file("shards/part-1.parquet"))
    fs.writeFileSync(p.file("shards/part-1.parquet"), good.subarray(0, 300))
    p.write("recipe.ts", `
import { recipe, source, clean, dedup } from "anneal"
export default recipe("hostile", () => {
  const cleaned = clean({ data: source.dataset("shards/*.parquet") }, { minWords: 3, workers: 2, tasks: 3 })
  dedup({ data: cleaned }, { method: "minhash", output: { as: "parquet", rowsPerShard: 50 } })
})
`)
    const before = storeSnapshot(p.store)
    const failed = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(failed.exitCode).not.toBe(0)
    const events = stepEvents(failed.events)
    expect(events.map((e) => [e.step, e.status])).toEqual([["clean", "failed"]])
    const error = (events[0] as { error?: string }).error ?? ""
    expect(error).toContain("part-1.parquet")
    expect(error).toMatch(/not a readable Parquet file/)
    expect(error.split("\n")).toHaveLength(1)
    // nothing half-written: no artifact, no staging left, no result recorded
    const after = JSON.parse(storeSnapshot(p.store)) as { artifacts: Array<string>; staging: Array<string>; rows: string }
    expect(after.artifacts.filter((a) => /^[0-9a-f]{64}$/.test(a)), before).toEqual([])
    expect(after.staging).toEqual([])
    expect(after.rows).toMatch(/results=0 /)
    const plan = await cli(["plan", p.file("recipe.ts"), "--json"])
    expect(plan.stdout).not.toContain('"status":"cached"')

    fs.writeFileSync(p.file("shards/part-1.parquet"), good)
    const repaired = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(repaired.exitCode, repaired.stderr).toBe(0)
    expect(stepEvents(repaired.events).map((e) => [e.step, e.status])).toEqual([["clean", "ran"], ["dedup", "ran"]])
  })
})

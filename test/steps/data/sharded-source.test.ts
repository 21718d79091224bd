/**
 * A recipe whose source is a glob of Parquet shards, through the CLI: the data steps fan out on
 * worker processes, the output is sharded Parquet, a rerun runs nothing, and a changed shard reruns.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { ParquetShardWriter } from "../../../steps/data/parquet.ts"
import { cli, ranSteps, statuses, tempProject } from "../../helpers/project.ts"

const writeShard = async (file: string, rows: ReadonlyArray<{ text: string }>) => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const w = await ParquetShardWriter.open(file, "text")
  for (const r of rows) w.write(r)
  w.close()
}

describe("sharded dataset sources", () => {
  it("source.dataset takes a glob of Parquet shards; clean and dedup fan out; a rerun is cached", async () => {
    const p = tempProject()
    const text = (i: number) => ({ text: `row ${i % 150} says something about the number ${i % 150} and more words` })
    for (let s = 0; s < 3; s++) await writeShard(p.file(`shards/part-${s}.parquet`), Array.from({ length: 100 }, (_, i) => text(s * 100 + i)))
    p.write("shards/README.txt", "not a shard: the glob leaves it out")
    p.write("recipe.ts", `
import { recipe, source, clean, dedup } from "anneal"
export default recipe("shards", () => {
  const raw = source.dataset("shards/*.parquet")
  const cleaned = clean({ data: raw }, { minWords: 3, workers: 2, tasks: 3 })
  dedup({ data: cleaned }, { method: "exact", output: { as: "parquet", rowsPerShard: 100 } })
})
`)
    const first = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(first.exitCode, first.stderr).toBe(0)
    expect(ranSteps(first.events)).toEqual(["clean", "dedup"])
    const done = first.events.find((e) => e.event === "step" && e.step === "dedup") as { output: string }
    const out = path.join(p.store, "artifacts", done.output)
    expect(JSON.parse(fs.readFileSync(path.join(out, "dataset.json"), "utf8"))).toEqual({
      format: "text", rows: 150, shards: ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    })
    const again = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(statuses(again.events)).toEqual({ clean: "cached", dedup: "cached" })
    await writeShard(p.file("shards/part-1.parquet"), [{ text: "a different shard with other words in it" }])
    const changed = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(ranSteps(changed.events)).toEqual(["clean", "dedup"])
  })
})

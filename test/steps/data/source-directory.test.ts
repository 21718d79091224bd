/**
 * Issue 13: "`source.dataset` accepts a directory or glob of shards". sharded-source.test.ts takes a
 * glob; here the source is a directory (the Hugging Face layout: data/train-0000N-of-0000M.parquet
 * under it, beside its README), through the CLI: the step reads every shard, a rerun is cached, and a
 * shard changed or added below the directory makes it run again.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { ParquetShardWriter } from "../../../steps/data/parquet.ts"
import { cli, ranSteps, statuses, stepEvents, tempProject } from "../../helpers/project.ts"

const writeShard = async (file: string, rows: ReadonlyArray<{ text: string }>) => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const w = await ParquetShardWriter.open(file, "text")
  for (const r of rows) w.write(r)
  w.close()
}

const text = (i: number) => ({ text: `row ${i} says something about the number ${i} and more words` })

describe("a directory of shards as a source", () => {
  it("reads every shard below it; a rerun is cached; a changed or added shard reruns", async () => {
    const p = tempProject("anneal-srcdir-")
    for (let s = 0; s < 3; s++) await writeShard(p.file(`corpus/data/train-0000${s}-of-00003.parquet`), Array.from({ length: 40 }, (_, i) => text(s * 40 + i)))
    p.write("corpus/README.md", "a dataset card, not a shard\n")
    p.write("recipe.ts", `
import { recipe, source, format } from "anneal"
export default recipe("srcdir", () => {
  format({ data: source.dataset("corpus") }, { as: "jsonl", tasks: 3 }, { id: "flat" })
})
`)
    const rowsOf = (events: Parameters<typeof stepEvents>[0]) => {
      const out = stepEvents(events).find((e) => e.step === "flat")!.output!
      return fs.readFileSync(path.join(p.store, "artifacts", out, "data.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { text: string })
    }
    const first = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(first.exitCode, first.stderr).toBe(0)
    expect(rowsOf(first.events)).toEqual(Array.from({ length: 120 }, (_, i) => text(i)))
    const again = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(statuses(again.events)).toEqual({ flat: "cached" })

    await writeShard(p.file("corpus/data/train-00001-of-00003.parquet"), [text(1000)])
    const changed = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(ranSteps(changed.events)).toEqual(["flat"])
    expect(rowsOf(changed.events).map((r) => r.text)).toContain(text(1000).text)

    await writeShard(p.file("corpus/data/train-00003-of-00003.parquet"), [text(2000)])
    const added = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(ranSteps(added.events)).toEqual(["flat"])
    expect(rowsOf(added.events).at(-1)).toEqual(text(2000))
  })
})

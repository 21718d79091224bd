/**
 * Bad input: each case gives a one-line error naming what is wrong, exit code 2, and leaves the store
 * exactly as it was (same artifacts, same recorded sessions and runs, nothing staged).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { chainData, chainRecipe } from "../helpers/chain-recipe.ts"
import { annealIndex, cli, storeSnapshot, tempProject } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"

const header = `import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Text, Schema } from ${JSON.stringify(annealIndex)}
const copy = defineStep({
  kind: "copy", version: 1,
  params: Schema.Struct({ times: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1))) }),
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  run: (ctx) => { fs.copyFileSync(ctx.inputs.data, path.join(ctx.output, "data.jsonl")) }
})
`

const cases: Array<{ name: string; recipe: string; error: RegExp }> = [
  {
    name: "an ill-typed param, naming the step and the param path",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: "two" } as any) })`,
    error: /step "copy" \(.*bad\.ts:\d+\) \(copy\): param times: Expected number/
  },
  {
    name: "an out-of-range param",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 0 }) })`,
    error: /step "copy".*param times: Expected a value greater than or equal to 1/
  },
  {
    name: "an unknown param",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 1, tims: 2 } as any) })`,
    error: /step "copy".*param tims: Expected no excess property/
  },
  {
    name: "a missing source file",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("nope.jsonl") }, { times: 1 }) })`,
    error: /source not found: .*nope\.jsonl/
  },
  {
    name: "duplicate step ids",
    recipe: header + `export default recipe("r", () => { const d = source.dataset("data.txt"); copy({ data: d }, { times: 1 }); copy({ data: d }, { times: 2 }) })`,
    error: /duplicate step id "copy".*pass \{ id: "\.\.\." \}/
  },
  {
    name: "a cycle",
    recipe: header + `export default recipe("r", () => { const d = source.dataset("data.txt"); copy({ data: d }, { times: 1 }, { id: "a", after: ["b"] }); copy({ data: d }, { times: 1 }, { id: "b", after: ["a"] }) })`,
    error: /the recipe has a cycle: (a -> b -> a|b -> a -> b)/
  },
  {
    name: "a recipe module that throws",
    recipe: header + `throw new Error("boom at import")\nexport default recipe("r", () => {})`,
    error: /recipe .*bad\.ts(:\d+)? failed to load: boom at import/
  },
  {
    name: "a recipe module that does not compile",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 1 }) ))`,
    error: /recipe .*bad\.ts:\d+:\d+ does not compile: Expected ";" but found "\)"/
  },
  {
    name: "a build function that throws",
    recipe: header + `export default recipe("r", () => { throw new Error("no models here") })`,
    error: /recipe .*bad\.ts:\d+ threw while building: no models here/
  },
  {
    name: "wrong wiring that slipped past the types",
    recipe: header + `export default recipe("r", () => { copy({ data: source.model("data.txt") as any }, { times: 1 }) })`,
    error: /step "copy".*input "data" wants a dataset, got a model/
  }
]

describe("bad input", () => {
  let p: TempProject
  let before: string

  beforeAll(async () => {
    // a store with real history, so "unchanged" means something
    p = tempProject()
    p.write("data.txt", chainData)
    p.write("good.ts", chainRecipe())
    const r = await cli(["run", p.file("good.ts"), "--json"])
    expect(r.exitCode, r.stderr).toBe(0)
    before = storeSnapshot(p.store)
  })

  for (const c of cases) {
    it(`${c.name}: exit 2, one line, store unchanged`, async () => {
      p.write("bad.ts", c.recipe)
      const r = await cli(["run", p.file("bad.ts"), "--store", p.store, "--json"])
      expect(r.exitCode).toBe(2)
      const lines = r.stderr.trim().split("\n")
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/^anneal: /)
      expect(lines[0]).toMatch(c.error)
      expect(r.stdout).toBe("")
      expect(storeSnapshot(p.store)).toBe(before)
    })
  }

  it("an unknown step id on the command line", async () => {
    const r = await cli(["run", p.file("good.ts"), "nosuch", "--json"])
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toMatch(/no step "nosuch" in .*good\.ts \(steps: upper, reverse, count, join\)/)
    expect(storeSnapshot(p.store)).toBe(before)
  })

  it("a bad flag value", async () => {
    const r = await cli(["run", p.file("good.ts"), "--jobs", "zero"])
    expect(r.exitCode).toBe(2)
    expect(r.stderr.trim()).toBe('anneal: --jobs must be a positive integer, got "zero"')
  })

  it("a step that needs a GPU on a machine without one fails fast unless --allow-cpu", async () => {
    const gpu = header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 1 }, { gpus: 1 }) })`
    p.write("gpu.ts", gpu)
    const r = await cli(["run", p.file("gpu.ts"), "--store", p.store, "--gpus", "none", "--json"])
    expect(r.exitCode).toBe(2)
    expect(r.stderr.trim()).toBe('anneal: step "copy" needs 1 GPU but none are available: pass --allow-cpu to run it on CPU, or --gpus to name devices')
    expect(storeSnapshot(p.store)).toBe(before)
    const ok = await cli(["run", p.file("gpu.ts"), "--store", p.store, "--gpus", "none", "--allow-cpu", "--json"])
    expect(ok.exitCode, ok.stderr).toBe(0)
  })

  it("a corrupt cache database", async () => {
    const q = tempProject()
    q.write("data.txt", chainData)
    q.write("good.ts", chainRecipe())
    fs.mkdirSync(q.store)
    const garbage = Buffer.from("this is not a sqlite database, just bytes ".repeat(200))
    fs.writeFileSync(path.join(q.store, "cache.db"), garbage)
    const r = await cli(["run", q.file("good.ts"), "--json"])
    expect(r.exitCode).toBe(2)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(/cache database .*cache\.db is corrupt .*move it away/)
    expect(fs.readFileSync(path.join(q.store, "cache.db")).equals(garbage)).toBe(true)
    expect(fs.readdirSync(path.join(q.store, "artifacts"))).toEqual([])
  })
})

/**
 * Seeds are params: every built-in kind that samples declares one, it is part of the key, and a recipe
 * sweeps seeds by calling a step once per seed (two seeds: two keys, both built; the same seed again:
 * cached). A kind that declares no seed gets none (no implicit 0).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { declaresSeed } from "../../engine/keys.ts"
import { lookupKind } from "../../engine/step.ts"
import "../../steps/index.ts"
import { annealIndex, cli, ranSteps, stepEvents, tempProject } from "../helpers/project.ts"

const recipe = (seeds: ReadonlyArray<number>) => `
import * as fs from "node:fs"
import * as path from "node:path"
import { dedup, defineStep, Port, recipe, seedParam, source, Schema, Text } from ${JSON.stringify(annealIndex)}

const draw = defineStep({
  kind: "draw", version: 1, params: Schema.Struct({ seed: seedParam() }),
  inputs: { data: Port.dataset(Text) }, output: Port.report(),
  run: (ctx) => { fs.writeFileSync(path.join(ctx.output, "report.json"), JSON.stringify({ seed: ctx.seed })) }
})
const plain = defineStep({
  kind: "plain", version: 1, params: Schema.Struct({}),
  inputs: { data: Port.dataset(Text) }, output: Port.report(),
  run: (ctx) => { fs.writeFileSync(path.join(ctx.output, "report.json"), JSON.stringify({ seed: ctx.seed ?? "none" })) }
})
export default recipe("seeds", () => {
  const data = source.dataset("rows.jsonl", Text)
  for (const seed of ${JSON.stringify(seeds)}) {
    draw({ data }, { seed }, { id: "draw-" + seed })
    dedup({ data }, { method: "minhash", minhash: { seed } }, { id: "minhash-" + seed })
  }
  plain({ data })
})
`

const keys = (events: Awaited<ReturnType<typeof cli>>["events"]) =>
  Object.fromEntries(stepEvents(events).map((e) => [e.step, e.key]))

describe("seeds are part of the key", () => {
  it("every built-in kind that samples declares a seed param, and none makes it execution-only", () => {
    for (const kind of ["pretrain", "sft", "sft-lora", "dpo", "dpo-lora", "eval", "merge"]) {
      const def = lookupKind(kind)!
      expect(declaresSeed(def), kind).toBe(true)
      expect(def.executionOnly ?? [], kind).not.toContain("seed")
    }
    // minhash's permutations: the seed sits in the minhash block of dedup's params, in the key like any param
    const dedupParams = Schema.decodeUnknownSync(lookupKind("dedup")!.params as Schema.Codec<any, unknown>)({ method: "minhash" })
    expect(dedupParams.minhash.seed).toBe(1)
  })

  it("a recipe sweeps seeds: two seeds give two keys, both built; the same seeds again are cached", async () => {
    const p = tempProject()
    p.write("rows.jsonl", ["alpha beta gamma delta epsilon zeta", "one two three four five six seven"].map((t) => JSON.stringify({ text: t })).join("\n") + "\n")
    p.write("recipe.ts", recipe([1, 2]))
    const first = await cli(["run", p.file("recipe.ts"), "--json"], { cwd: p.dir })
    expect(first.exitCode, first.stderr).toBe(0)
    expect(ranSteps(first.events)).toEqual(["draw-1", "draw-2", "minhash-1", "minhash-2", "plain"])
    const k1 = keys(first.events)
    expect(k1["draw-1"]).not.toBe(k1["draw-2"])
    expect(k1["minhash-1"]).not.toBe(k1["minhash-2"])

    const show = async (step: string) => {
      const r = await cli(["show", step, "--recipe", p.file("recipe.ts"), "--json"], { cwd: p.dir })
      const out = (JSON.parse(r.stdout) as { output: { path: string } }).output.path
      return JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8")) as { seed: unknown }
    }
    expect(await show("draw-2")).toEqual({ seed: 2 })
    expect(await show("plain")).toEqual({ seed: "none" })

    const again = await cli(["run", p.file("recipe.ts"), "--json"], { cwd: p.dir })
    expect(again.exitCode, again.stderr).toBe(0)
    expect(ranSteps(again.events)).toEqual([])
    expect(keys(again.events)).toEqual(k1)

    p.write("recipe.ts", recipe([1, 3]))
    const swept = await cli(["run", p.file("recipe.ts"), "--json"], { cwd: p.dir })
    expect(swept.exitCode, swept.stderr).toBe(0)
    expect(ranSteps(swept.events)).toEqual(["draw-3", "minhash-3"])
    expect(keys(swept.events)["draw-1"]).toBe(k1["draw-1"])
  }, 120_000)
})

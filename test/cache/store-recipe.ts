/**
 * A recipe for store tests: `split` writes many files (in ten sub-directories) from a source, `join`
 * reads them all back and writes one summary. `join` can be told to wait for a file to appear
 * (execution-only, so it does not change keys), which lets a test hold a run in the middle of a step
 * without sleeping. Plus the helpers every store test needs: clean-build comparison and tampering.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { hashTree } from "../../cache/hash.ts"
import type { EngineEvent } from "../../engine/events.ts"
import { annealIndex, cli, stepEvents, tempProject } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"

export interface StoreRecipeParams {
  readonly parts?: number
  readonly salt?: number
  /** path of a file `join` waits for before reading its input */
  readonly waitFor?: string
}

export const storeRecipe = (p: StoreRecipeParams = {}): string => `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Schema } from ${JSON.stringify(annealIndex)}

const filesUnder = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(path.join(dir, e.name)) : [path.join(dir, e.name)]).sort()

const split = defineStep({
  kind: "split", version: 1,
  params: Schema.Struct({ parts: Schema.Int, salt: Schema.Int }),
  inputs: { data: Port.files() }, output: Port.files(),
  run: (ctx) => {
    const text = fs.readFileSync(ctx.inputs.data, "utf8")
    for (let i = 0; i < ctx.params.parts; i++) {
      const d = path.join(ctx.output, "d" + (i % 10))
      fs.mkdirSync(d, { recursive: true })
      fs.writeFileSync(path.join(d, "part-" + i + ".txt"), ctx.params.salt + ":" + i + ":" + text)
    }
  }
})

const join = defineStep({
  kind: "join-all", version: 1,
  params: Schema.Struct({ waitFor: Schema.String }),
  executionOnly: ["waitFor"],
  inputs: { parts: Port.files() }, output: Port.files(),
  run: async (ctx) => {
    while (ctx.params.waitFor !== "" && !fs.existsSync(ctx.params.waitFor)) {
      if (ctx.signal.aborted) throw new Error("interrupted")
      ctx.progress({ current: 0, total: 1, unit: "waiting" })
      await new Promise((ok) => setTimeout(ok, 50))
    }
    const files = filesUnder(ctx.inputs.parts)
    const body = files.map((f) => path.relative(ctx.inputs.parts, f) + "=" + fs.readFileSync(f, "utf8")).join("|")
    fs.writeFileSync(path.join(ctx.output, "summary.txt"), files.length + " files|" + body.length + "|" + body.slice(0, 200))
  }
})

export default recipe("store", () => {
  const parts = split({ data: source.files("data.txt") }, { parts: ${p.parts ?? 30}, salt: ${p.salt ?? 1} }, { id: "split" })
  join({ parts }, { waitFor: ${JSON.stringify(p.waitFor ?? "")} }, { id: "join" })
})
`

/** A project holding the store recipe and its data. */
export const storeProject = (p: StoreRecipeParams = {}): TempProject => {
  const proj = tempProject("anneal-store-")
  proj.write("data.txt", "alpha beta gamma\n")
  proj.write("recipe.ts", storeRecipe(p))
  return proj
}

/** step id -> output hash of a successful run's events. */
export const outputsOf = (events: ReadonlyArray<EngineEvent>): Record<string, string> =>
  Object.fromEntries(stepEvents(events).flatMap((e) => (e.output === null ? [] : [[e.step, e.output]])))

/** Runs the recipe in a fresh store beside the project: what every incremental result must equal. */
export const cleanOutputs = async (proj: TempProject): Promise<Record<string, string>> => {
  const store = path.join(proj.dir, `clean-${Date.now()}`)
  const r = await cli(["run", proj.file("recipe.ts"), "--json", "--store", store])
  if (r.exitCode !== 0) throw new Error(`clean build failed: ${r.stderr}`)
  fs.rmSync(store, { recursive: true, force: true })
  return outputsOf(r.events)
}

/** Problems with what a run reports: outputs that differ from the clean build or whose content does not match their name. */
export const wrongOutputs = (store: string, events: ReadonlyArray<EngineEvent>, clean: Record<string, string>): Array<string> => {
  const wrong: Array<string> = []
  const got = outputsOf(events)
  for (const [step, hash] of Object.entries(clean)) {
    if (got[step] !== hash) wrong.push(`${step}: output ${got[step]?.slice(0, 12)} but a clean build gives ${hash.slice(0, 12)}`)
  }
  for (const [step, hash] of Object.entries(got)) {
    const dir = path.join(store, "artifacts", hash)
    const actual = fs.existsSync(dir) && fs.statSync(dir).isDirectory() ? hashTree(dir).hash : "absent"
    if (actual !== hash) wrong.push(`${step}: artifact ${hash.slice(0, 12)} holds content ${actual.slice(0, 12)}`)
  }
  return wrong
}

export const tamperKinds = ["flipped byte", "truncated", "extra file", "deleted file", "replaced by a file", "sidecar damaged"] as const
export type TamperKind = (typeof tamperKinds)[number]

const firstFile = (dir: string): string => {
  const d = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))[0]!
  const p = path.join(dir, d.name)
  return d.isDirectory() ? firstFile(p) : p
}

/** Damages an artifact the way a user, a disk or a crashed tool might. */
export const tamper = (store: string, hash: string, kind: TamperKind) => {
  const dir = path.join(store, "artifacts", hash)
  switch (kind) {
    case "flipped byte": {
      const f = firstFile(dir)
      fs.chmodSync(f, 0o644)
      const b = fs.readFileSync(f)
      b[0] = b[0]! ^ 1
      fs.writeFileSync(f, b)
      return
    }
    case "truncated": {
      const f = firstFile(dir)
      fs.chmodSync(f, 0o644)
      fs.truncateSync(f, 1)
      return
    }
    case "extra file":
      fs.writeFileSync(path.join(dir, "stray.txt"), "not part of it")
      return
    case "deleted file":
      fs.rmSync(firstFile(dir))
      return
    case "replaced by a file":
      fs.rmSync(dir, { recursive: true, force: true })
      fs.writeFileSync(dir, "a plain file")
      return
    case "sidecar damaged":
      fs.writeFileSync(dir + ".json", "{ truncated")
      return
  }
}

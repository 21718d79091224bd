/**
 * Custom steps through the public API: a command step (argument array, JSON-lines progress and metrics,
 * a failure with the program's own message), the warning when an implementation changes without a
 * version bump, and `exec-step` running a spec outside a run.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { annealIndex, cli, ranSteps, tempProject } from "../helpers/project.ts"

const recipe = (opts: { body?: string; version?: number; fail?: boolean } = {}) => `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Schema } from ${JSON.stringify(annealIndex)}

const measure = defineStep({
  kind: "measure", version: 1, params: Schema.Struct({ fail: Schema.Boolean }),
  inputs: { data: Port.files() }, output: Port.report(),
  command: (ctx) => ({ argv: ["python3", ${JSON.stringify(path.join(import.meta.dirname, "measure.py"))}, ctx.specPath] })
})
const shout = defineStep({
  kind: "shout", version: ${opts.version ?? 1}, params: Schema.Struct({}),
  inputs: { data: Port.files() }, output: Port.files(),
  run: (ctx) => { fs.writeFileSync(path.join(ctx.output, "out.txt"), ${opts.body ?? `fs.readFileSync(ctx.inputs.data, "utf8").toUpperCase()`}) }
})
export default recipe("custom", () => {
  const data = source.files("words.txt")
  measure({ data }, { fail: ${opts.fail ?? false} })
  shout({ data })
})
`

describe("custom steps", () => {
  it("a command step reports progress and metrics, and its failure message reaches the user", async () => {
    const p = tempProject()
    p.write("words.txt", "one two three\n")
    p.write("recipe.ts", recipe())
    const ok = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(ok.exitCode, ok.stderr).toBe(0)
    expect(ok.events.filter((e) => e.event === "progress" && e.step === "measure").length).toBeGreaterThan(0)
    expect(ok.events).toContainEqual({ event: "metric", step: "measure", name: "words", value: 3 })
    const show = JSON.parse((await cli(["show", "measure", "--recipe", p.file("recipe.ts"), "--json"])).stdout) as {
      output: { path: string }
      metrics: object
    }
    expect(JSON.parse(fs.readFileSync(path.join(show.output.path, "report.json"), "utf8"))).toEqual({ words: 3 })
    expect(show.metrics).toEqual({ words: 3 })

    p.write("recipe.ts", recipe({ fail: true }))
    const bad = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(bad.exitCode).toBe(1)
    const failed = bad.events.find((e) => e.event === "step" && e.step === "measure")
    expect(failed).toMatchObject({ status: "failed", output: null, error: "exit code 3: the input has too few words for this test" })
  })

  it("a failure stops new steps by default; --keep-going finishes independent branches", async () => {
    const p = tempProject()
    p.write("words.txt", "one two three\n")
    p.write("recipe.ts", recipe({ fail: true }))
    const stop = await cli(["run", p.file("recipe.ts"), "--jobs", "1", "--json"])
    expect(stop.exitCode).toBe(1)
    expect(stop.events).toContainEqual(expect.objectContaining({ event: "skipped", step: "shout" }))
    expect(stop.events.at(-1)).toMatchObject({ event: "run", failed: 1, skipped: 1, ran: 0 })
    const going = await cli(["run", p.file("recipe.ts"), "--jobs", "1", "--keep-going", "--json"])
    expect(going.exitCode).toBe(1)
    expect(ranSteps(going.events)).toEqual(["shout"])
    expect(going.events.at(-1)).toMatchObject({ event: "run", failed: 1, skipped: 0, ran: 1 })
  })

  it("warns when an implementation changed but its version did not, and a bump reruns", async () => {
    const p = tempProject()
    p.write("words.txt", "one two three\n")
    p.write("recipe.ts", recipe())
    expect((await cli(["run", p.file("recipe.ts"), "--json"])).exitCode).toBe(0)

    p.write("recipe.ts", recipe({ body: `fs.readFileSync(ctx.inputs.data, "utf8").toLowerCase()` }))
    const plan = await cli(["plan", p.file("recipe.ts")])
    expect(plan.stderr).toContain('warning: step "shout": the implementation of kind "shout" changed since it last ran, but its version is still 1')
    const same = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(ranSteps(same.events)).toEqual([])
    expect(same.events).toContainEqual(expect.objectContaining({ event: "log", level: "warn", message: expect.stringContaining("bump `version`") }))

    p.write("recipe.ts", recipe({ body: `fs.readFileSync(ctx.inputs.data, "utf8").toLowerCase()`, version: 2 }))
    const bumped = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(ranSteps(bumped.events)).toEqual(["shout"])
  })

  it("exec-step runs a recorded spec on its own, as a cluster node would", async () => {
    const p = tempProject()
    p.write("words.txt", "one two three\n")
    p.write("recipe.ts", recipe())
    const run = await cli(["run", p.file("recipe.ts"), "--json"])
    const started = run.events.find((e) => e.event === "started" && e.step === "measure") as { log: string }
    const spec = JSON.parse(fs.readFileSync(started.log.replace(/\.log$/, ".spec.json"), "utf8")) as Record<string, unknown>
    const output = p.file("out-again")
    p.write("spec.json", JSON.stringify({ ...spec, output, logPath: p.file("again.log") }))
    const r = await cli(["exec-step", p.file("spec.json")])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toContain('{"type":"metric","name":"words","value":3}')
    expect(JSON.parse(fs.readFileSync(path.join(output, "report.json"), "utf8"))).toEqual({ words: 3 })
  })
})

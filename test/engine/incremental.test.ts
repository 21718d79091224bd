/**
 * What a user notices about incremental runs: an unchanged recipe runs nothing, a param change reruns
 * exactly that step and its dependents (and plan says why), early cutoff stops propagation, --force
 * reruns one step, and show/logs/cache report what happened.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { chainData, chainRecipe } from "../helpers/chain-recipe.ts"
import { cli, ranSteps, statuses, tempProject } from "../helpers/project.ts"

const setup = () => {
  const p = tempProject()
  p.write("data.txt", chainData)
  p.write("recipe.ts", chainRecipe())
  return p
}

describe("incremental runs", () => {
  it("runs everything once, then nothing on an unchanged rerun", async () => {
    const p = setup()
    const first = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(first.exitCode, first.stderr).toBe(0)
    expect(ranSteps(first.events)).toEqual(["count", "join", "reverse", "upper"])
    const last = first.events.at(-1)!
    expect(last).toMatchObject({ event: "run", ran: 4, cached: 0, failed: 0 })

    const second = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(second.exitCode).toBe(0)
    expect(ranSteps(second.events)).toEqual([])
    expect(second.events.at(-1)).toMatchObject({ event: "run", ran: 0, cached: 4 })
    // each settled step reports the same artifact both times
    const out = (evs: typeof first.events) => Object.fromEntries(evs.flatMap((e) => (e.event === "step" ? [[e.step, e.output]] : [])))
    expect(out(second.events)).toEqual(out(first.events))
  })

  it("reruns exactly the changed step and its dependents, and plan explains why", async () => {
    const p = setup()
    expect((await cli(["run", p.file("recipe.ts"), "--json"])).exitCode).toBe(0)
    p.write("recipe.ts", chainRecipe({ suffix: "?" }))

    const plan = await cli(["plan", p.file("recipe.ts"), "--json"])
    expect(plan.exitCode, plan.stderr).toBe(0)
    const lines = plan.stdout.trim().split("\n").map((l) => JSON.parse(l) as { event: string; step: string; status: string; reasons: Array<string>; where: string })
    const byStep = Object.fromEntries(lines.filter((l) => l.event === "plan").map((l) => [l.step, l]))
    expect(byStep.upper!.status).toBe("stale")
    expect(byStep.upper!.reasons).toContain('params.suffix: "!" -> "?"')
    expect(byStep.upper).toMatchObject({ where: "local: 0 GPU, 1 CPU" })
    expect(byStep.reverse!.status).toBe("cached")
    expect(byStep.count!.status).toBe("waiting")
    expect(byStep.join!.status).toBe("waiting")

    const human = await cli(["plan", p.file("recipe.ts")])
    expect(human.stdout).toContain('- params.suffix: "!"')
    expect(human.stdout).toContain('+ params.suffix: "?"')

    const run = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(run.exitCode).toBe(0)
    // upper and everything that reads it rerun; the branch that does not (reverse) stays cached
    expect(ranSteps(run.events)).toEqual(["count", "join", "upper"])
    expect(statuses(run.events)).toMatchObject({ reverse: "cached" })
  })

  it("explains a changed input and a bumped implementation version", async () => {
    const p = setup()
    expect((await cli(["run", p.file("recipe.ts"), "--json"])).exitCode).toBe(0)
    p.write("data.txt", chainData + "delta\n")
    p.write("recipe.ts", chainRecipe({ countVersion: 2 }))
    const plan = await cli(["plan", p.file("recipe.ts"), "--json"])
    const lines = plan.stdout.trim().split("\n").map((l) => JSON.parse(l) as { event: string; step: string; reasons: Array<string> })
    const reasons = Object.fromEntries(lines.filter((l) => l.event === "plan").map((l) => [l.step, l.reasons.join("; ")]))
    expect(reasons.upper).toMatch(/^input data changed \([0-9a-f]{10}\.\. -> [0-9a-f]{10}\.\.\)$/)
    expect(reasons.count).toContain("implementation version 1 -> 2")
  })

  it("cuts off early when a rebuilt output is byte-identical", async () => {
    const p = setup()
    expect((await cli(["run", p.file("recipe.ts"), "--json"])).exitCode).toBe(0)
    p.write("recipe.ts", chainRecipe({ strip: true })) // the data has no spaces: same output
    const run = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(run.exitCode).toBe(0)
    expect(ranSteps(run.events)).toEqual(["upper"])
    expect(statuses(run.events)).toMatchObject({ count: "cached", join: "cached", reverse: "cached" })
  })

  it("--force reruns only the forced step when its output does not change", async () => {
    const p = setup()
    expect((await cli(["run", p.file("recipe.ts"), "--json"])).exitCode).toBe(0)
    const run = await cli(["run", p.file("recipe.ts"), "--force", "upper", "--json"])
    expect(run.exitCode).toBe(0)
    expect(ranSteps(run.events)).toEqual(["upper"])
  })

  it("restores an earlier result instantly when a param is changed back", async () => {
    const p = setup()
    expect((await cli(["run", p.file("recipe.ts"), "--json"])).exitCode).toBe(0)
    p.write("recipe.ts", chainRecipe({ reverseTimes: 2 }))
    expect(ranSteps((await cli(["run", p.file("recipe.ts"), "--json"])).events)).toEqual(["join", "reverse"])
    p.write("recipe.ts", chainRecipe({ reverseTimes: 1 }))
    const back = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(ranSteps(back.events)).toEqual([])
  })

  it("runs only the named steps and what they need", async () => {
    const p = setup()
    const run = await cli(["run", p.file("recipe.ts"), "count", "--json"])
    expect(run.exitCode).toBe(0)
    expect(ranSteps(run.events)).toEqual(["count", "upper"])
  })

  it("show, logs and cache report on what ran", async () => {
    const p = setup()
    expect((await cli(["run", p.file("recipe.ts"), "--json"])).exitCode).toBe(0)
    const show = await cli(["show", "count", "--recipe", p.file("recipe.ts"), "--json"])
    expect(show.exitCode, show.stderr).toBe(0)
    const data = JSON.parse(show.stdout) as { step: string; kind: string; key: string; output: { hash: string; path: string }; metrics: Record<string, number>; params: object }
    expect(data).toMatchObject({ step: "count", kind: "count", metrics: { lines: 3 } })
    expect(data.key).toMatch(/^[0-9a-f]{64}$/)
    expect(JSON.parse(fs.readFileSync(path.join(data.output.path, "report.json"), "utf8"))).toEqual({ lines: 3 })
    // the artifact describes itself beside itself
    const meta = JSON.parse(fs.readFileSync(data.output.path + ".json", "utf8")) as { step: string; key: string }
    expect(meta).toMatchObject({ step: "count", key: data.key })

    const logs = await cli(["logs", "count", "--recipe", p.file("recipe.ts")])
    expect(logs.exitCode).toBe(0)
    expect(logs.stdout).toContain("metric lines = 3")

    const ls = await cli(["cache", "ls", "--store", p.store, "--json"])
    expect(ls.stdout.trim().split("\n")).toHaveLength(4)
    const verify = await cli(["cache", "verify", "--store", p.store])
    expect(verify.exitCode, verify.stdout).toBe(0)
  })

  it("cache gc keeps what the latest state references and deletes the rest", async () => {
    const p = setup()
    expect((await cli(["run", p.file("recipe.ts"), "--json"])).exitCode).toBe(0)
    p.write("recipe.ts", chainRecipe({ suffix: "?" }))
    const second = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(second.exitCode).toBe(0)
    const gc = await cli(["cache", "gc", "--store", p.store, "--json"])
    expect(gc.exitCode, gc.stderr).toBe(0)
    const { deleted } = JSON.parse(gc.stdout) as { deleted: Array<string> }
    expect(deleted).toHaveLength(2) // the old upper and join outputs
    const again = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(ranSteps(again.events)).toEqual([])
    expect((await cli(["cache", "verify", "--store", p.store])).exitCode).toBe(0)
  })

  it("a corrupted artifact is reported by cache verify", async () => {
    const p = setup()
    const run = await cli(["run", p.file("recipe.ts"), "--json"])
    const out = run.events.find((e) => e.event === "step" && e.step === "reverse")
    const dir = path.join(p.store, "artifacts", (out as { output: string }).output)
    const file = path.join(dir, "data.jsonl")
    fs.chmodSync(file, 0o644)
    fs.appendFileSync(file, "tampered\n")
    const verify = await cli(["cache", "verify", "--store", p.store])
    expect(verify.exitCode).toBe(1)
    expect(verify.stdout).toContain("MISMATCH")
  })
})

/**
 * A crash at any moment loses nothing already finished, and two `anneal run`s on one store never build
 * the same step twice.
 */
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { Database } from "../../cache/sqlite.ts"
import { chainData, chainRecipe } from "../helpers/chain-recipe.ts"
import { cli, parseEvents, ranSteps, spawnCli, stepEvents, tempProject } from "../helpers/project.ts"

/** Everything the child printed so far, kept from its start (lines can arrive batched). */
const outputOf = (child: ReturnType<typeof spawnCli>) => {
  const seen = { text: "" }
  child.stdout!.on("data", (chunk: Buffer) => {
    seen.text += chunk.toString()
  })
  return seen
}

/** Resolves when the child has printed a line matching `test`. */
const waitForLine = async (seen: { text: string }, test: (line: string) => boolean): Promise<void> => {
  const deadline = Date.now() + 60_000
  while (!seen.text.split("\n").some(test)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting; got:\n${seen.text}`)
    await new Promise((ok) => setTimeout(ok, 50))
  }
}

const integrity = (store: string): string => {
  const db = new Database(path.join(store, "cache.db"), { readonly: true })
  try {
    return String(db.pragma("integrity_check", { simple: true }))
  } finally {
    db.close()
  }
}

const upperRuns = (store: string): Array<{ status: string; error: string | null }> => {
  const db = new Database(path.join(store, "cache.db"), { readonly: true })
  try {
    return db.prepare("SELECT status, error FROM runs WHERE step = 'upper' ORDER BY id").all() as Array<{ status: string; error: string | null }>
  } finally {
    db.close()
  }
}

describe("crash safety", () => {
  it("kill -9 while a step runs: the rerun completes, the store verifies, finished steps do not rerun", async () => {
    const p = tempProject()
    p.write("data.txt", chainData)
    p.write("recipe.ts", chainRecipe({ sleepUpper: 20 }))
    const child = spawnCli(["run", p.file("recipe.ts"), "--json", "--jobs", "2"])
    const seen = outputOf(child)
    // wait until upper is running and the independent branch (reverse) has finished
    await waitForLine(seen, (l) => l.includes('"event":"progress"') && l.includes('"step":"upper"'))
    await waitForLine(seen, (l) => l.includes('"event":"step"') && l.includes('"step":"reverse"'))
    child.kill("SIGKILL")
    const killed = await child
    expect(killed.signal).toBe("SIGKILL")
    const before = stepEvents(parseEvents(String(killed.stdout)))
    expect(before.map((e) => `${e.step}:${e.status}`)).toEqual(["reverse:ran"])

    p.write("recipe.ts", chainRecipe({ sleepUpper: 0 })) // sleep is execution-only: same keys
    const rerun = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(rerun.exitCode, rerun.stderr).toBe(0)
    expect(ranSteps(rerun.events)).toEqual(["count", "join", "upper"])
    expect(integrity(p.store)).toBe("ok")
    const verify = await cli(["cache", "verify", "--store", p.store])
    expect(verify.exitCode, verify.stdout).toBe(0)
    // the killed run's own record of upper says interrupted (not left "running"); the rerun's says ran
    expect(upperRuns(p.store)).toEqual([
      { status: "interrupted", error: "the anneal process died while this step ran" },
      { status: "ran", error: null }
    ])
  })

  it("Ctrl-C (SIGINT) interrupts cleanly: exit 1, the step recorded as interrupted, staging discarded", async () => {
    const p = tempProject()
    p.write("data.txt", chainData)
    p.write("recipe.ts", chainRecipe({ sleepUpper: 20 }))
    const child = spawnCli(["run", p.file("recipe.ts"), "--json"])
    await waitForLine(outputOf(child), (l) => l.includes('"event":"progress"') && l.includes('"step":"upper"'))
    child.kill("SIGINT")
    const r = await child
    expect(r.exitCode).toBe(1)
    const events = parseEvents(String(r.stdout))
    expect(stepEvents(events).find((e) => e.step === "upper")?.status).toBe("interrupted")
    expect(events.at(-1)).toMatchObject({ event: "run", interrupted: 1 })
    const fs = await import("node:fs")
    expect(fs.readdirSync(path.join(p.store, "staging"))).toEqual([])
  })
})

describe("two runs on one store", () => {
  it("build each step once and both finish", async () => {
    const p = tempProject()
    p.write("data.txt", chainData)
    p.write("recipe.ts", chainRecipe({ sleepUpper: 3 }))
    const [a, b] = await Promise.all([
      spawnCli(["run", p.file("recipe.ts"), "--json"]),
      spawnCli(["run", p.file("recipe.ts"), "--json"])
    ])
    expect(a.exitCode, String(a.stderr)).toBe(0)
    expect(b.exitCode, String(b.stderr)).toBe(0)
    const ea = parseEvents(String(a.stdout))
    const eb = parseEvents(String(b.stdout))
    const ran = [...ranSteps(ea), ...ranSteps(eb)].sort()
    expect(ran).toEqual(["count", "join", "reverse", "upper"])
    // both report the same artifact for every step
    const outputs = (evs: typeof ea) => Object.fromEntries(stepEvents(evs).map((e) => [e.step, e.output]))
    expect(outputs(ea)).toEqual(outputs(eb))
    // the one that waited said so
    expect([...ea, ...eb].some((e) => e.event === "waiting")).toBe(true)
    expect(integrity(p.store)).toBe("ok")
  })
})

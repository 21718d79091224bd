/**
 * gc concurrent with live runs: two param variants of one recipe are running (each held inside its
 * `join` step until the test creates a file), so the store's latest state references only the second
 * variant's inputs; `cache gc` must still leave the first variant's input alone, because its run leases
 * it. Once a run exits (or is killed), its leases go and gc may collect.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import type { EngineEvent } from "../../engine/events.ts"
import { cli, parseEvents, spawnCli } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"
import { cleanOutputs, outputsOf, storeProject, storeRecipe, wrongOutputs } from "./store-recipe.ts"

const live: Array<ReturnType<typeof spawnCli>> = []
afterEach(() => {
  for (const c of live.splice(0)) c.kill("SIGKILL")
})

/** Starts a run and resolves once its `join` step is running (waiting for its file), with split's output. */
const startHeld = async (p: TempProject) => {
  const child = spawnCli(["run", p.file("recipe.ts"), "--json"])
  live.push(child)
  let text = ""
  child.stdout!.on("data", (b: Buffer) => (text += b.toString()))
  let exited = false
  void child.finally(() => (exited = true))
  const events = () => parseEvents(text.slice(0, text.lastIndexOf("\n") + 1))
  while (!events().some((e) => e.event === "progress" && e.step === "join")) {
    if (exited) throw new Error(`run exited early: ${text}`)
    await new Promise((ok) => setTimeout(ok, 20))
  }
  const split = outputsOf(events()).split!
  return { child, split, events: async (): Promise<Array<EngineEvent>> => parseEvents(String((await child).stdout)) }
}

const variant = (p: TempProject, salt: number) => p.write("recipe.ts", storeRecipe({ salt, waitFor: p.file(`go-${salt}`) }))

describe("gc and live runs", () => {
  it("gc concurrent with two live variants of one recipe: no run loses an input", async () => {
    const p = storeProject()
    const clean = new Map<number, Record<string, string>>()
    for (const salt of [1, 2]) {
      p.write("recipe.ts", storeRecipe({ salt }))
      clean.set(salt, await cleanOutputs(p))
    }
    variant(p, 1)
    const a = await startHeld(p)
    variant(p, 2)
    const b = await startHeld(p)
    expect(a.split).not.toBe(b.split)

    const dry = await cli(["cache", "gc", "--dry-run", "--store", p.store])
    expect(dry.stdout).not.toContain(a.split.slice(0, 16))
    const gc = await cli(["cache", "gc", "--store", p.store])
    expect(gc.exitCode, gc.stderr).toBe(0)
    expect(gc.stdout).toContain("only because a live run uses them")
    expect(fs.existsSync(path.join(p.store, "artifacts", a.split))).toBe(true)

    p.write("go-1", "")
    p.write("go-2", "")
    const [ea, eb] = [await a.events(), await b.events()]
    expect((await a.child).exitCode, String((await a.child).stderr)).toBe(0)
    expect((await b.child).exitCode).toBe(0)
    expect(wrongOutputs(p.store, ea, clean.get(1)!)).toEqual([])
    expect(wrongOutputs(p.store, eb, clean.get(2)!)).toEqual([])

    // the runs have ended: their leases are gone, and variant 1's input is now garbage
    const after = await cli(["cache", "gc", "--store", p.store])
    expect(after.stdout).toContain(`deleted ${a.split.slice(0, 16)}`)
  }, 300_000)

  it("a run killed with -9 leaves leases that the next gc breaks", async () => {
    const p = storeProject()
    variant(p, 1)
    const a = await startHeld(p)
    variant(p, 2)
    expect((await cli(["run", p.file("recipe.ts"), "--json", "split"])).exitCode).toBe(0)
    a.child.kill("SIGKILL")
    await a.child
    const gc = await cli(["cache", "gc", "--store", p.store])
    expect(gc.exitCode, gc.stderr).toBe(0)
    expect(gc.stdout).toContain(`deleted ${a.split.slice(0, 16)}`)
  }, 300_000)
})

/**
 * What the expensive checks buy. Damage that leaves every file's stat as recorded (bit rot under the
 * filesystem; simulated here by recording the damaged file's stat in the manifest) passes the cheap
 * check, so a plain run trusts it; `run --verify` rehashes and rebuilds, and `cache verify` finds it.
 * `cache verify` also checks the database's references.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { cli } from "../helpers/project.ts"
import { withCacheDb } from "./cache-db.ts"
import { cleanOutputs, outputsOf, storeProject, wrongOutputs } from "./store-recipe.ts"

describe("deep checks", () => {
  it("damage with untouched stats: run --verify rebuilds it, cache verify reports it", async () => {
    const p = storeProject()
    const first = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(first.exitCode, first.stderr).toBe(0)
    const clean = await cleanOutputs(p)
    const split = outputsOf(first.events).split!
    const file = path.join(p.store, "artifacts", split, "d0", "part-0.txt")
    fs.chmodSync(file, 0o644)
    const bytes = fs.readFileSync(file)
    bytes[0] = bytes[0]! ^ 1
    fs.writeFileSync(file, bytes)
    fs.chmodSync(file, 0o444)
    // pretend the damage happened below the filesystem: the manifest records the file's current stat
    withCacheDb(p.store, (db) => {
      const row = db.prepare("SELECT manifest FROM artifacts WHERE hash = ?").get(split) as unknown as { manifest: string }
      const st = fs.statSync(file)
      const manifest = (JSON.parse(row.manifest) as Array<[string, number, string, number, number, number]>).map((e) =>
        e[0] === "d0/part-0.txt" ? [e[0], e[1], e[2], st.ino, st.mtimeMs, st.ctimeMs] : e)
      db.prepare("UPDATE artifacts SET manifest = ? WHERE hash = ?").run(JSON.stringify(manifest), split)
    })

    const verify = await cli(["cache", "verify", "--store", p.store])
    expect(verify.exitCode).toBe(1)
    expect(verify.stdout).toContain(split)
    const run = await cli(["run", p.file("recipe.ts"), "--json", "--verify"])
    expect(run.exitCode, run.stderr).toBe(0)
    expect(run.events.find((e) => e.event === "planned" && e.step === "split")).toMatchObject({ status: "stale" })
    expect(wrongOutputs(p.store, run.events, clean)).toEqual([])
    expect((await cli(["cache", "verify", "--store", p.store])).exitCode).toBe(0)
  }, 300_000)

  it("cache verify reports a result that names an unrecorded artifact; --repair drops it and the step rebuilds", async () => {
    const p = storeProject()
    const first = await cli(["run", p.file("recipe.ts"), "--json"])
    const join = outputsOf(first.events).join!
    withCacheDb(p.store, (db) => db.prepare("DELETE FROM artifacts WHERE hash = ?").run(join))
    const verify = await cli(["cache", "verify", "--store", p.store])
    expect(verify.exitCode).toBe(1)
    expect(verify.stdout).toContain(`names artifact ${join.slice(0, 12)}`)
    const repair = await cli(["cache", "verify", "--repair", "--store", p.store])
    expect(repair.exitCode, repair.stdout).toBe(0)
    const plan = await cli(["plan", p.file("recipe.ts"), "--json"])
    expect(plan.stdout).toMatch(/"step":"join","kind":"join-all","status":"stale"/)
    const run = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(run.exitCode).toBe(0)
    expect(outputsOf(run.events).join).toBe(join)
  }, 300_000)
})

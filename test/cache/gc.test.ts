/**
 * What `cache ls` and `cache gc` tell the user and do: ls names the steps that reference each artifact
 * and lists checkpoints; gc --dry-run lists exactly what gc then deletes (and deletes nothing itself);
 * checkpoints of keys that never finish go after --checkpoint-days without a write, finished ones go at
 * once, and one whose key a live run is building stays.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { cli, storeSnapshot } from "../helpers/project.ts"
import { withCacheDb } from "./cache-db.ts"
import { outputsOf, storeProject, storeRecipe } from "./store-recipe.ts"

const checkpoint = (store: string, key: string, daysOld: number) => {
  const dir = path.join(store, "resume", key)
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, "step-10.pt"), "x".repeat(1000))
  const t = Date.now() / 1000 - daysOld * 86400
  fs.utimesSync(path.join(dir, "step-10.pt"), t, t)
  fs.utimesSync(dir, t, t)
}

describe("cache ls and gc", () => {
  it("ls shows references and checkpoints; gc --dry-run lists what gc deletes; checkpoints follow the stated policy", async () => {
    const p = storeProject({ salt: 1 })
    const first = await cli(["run", p.file("recipe.ts"), "--json"])
    const old = outputsOf(first.events)
    p.write("recipe.ts", storeRecipe({ salt: 2 }))
    const second = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(second.exitCode, second.stderr).toBe(0)
    const cur = outputsOf(second.events)
    const finishedKey = (second.events.find((e) => e.event === "step" && e.step === "split") as { key: string }).key

    const idleOld = "a".repeat(64)
    const idleNew = "b".repeat(64)
    const building = "c".repeat(64)
    checkpoint(p.store, idleOld, 8)
    checkpoint(p.store, idleNew, 1)
    checkpoint(p.store, building, 30)
    checkpoint(p.store, finishedKey, 0)
    withCacheDb(p.store, (db) =>
      db.prepare("INSERT INTO locks (key, pid, host, step, recipe, acquired_at) VALUES (?, ?, ?, 'split', 'recipe.ts', ?)").run(building, process.pid, os.hostname(), Date.now() / 1000))

    const ls = await cli(["cache", "ls", "--store", p.store])
    expect(ls.exitCode, ls.stderr).toBe(0)
    expect(ls.stdout).toMatch(new RegExp(`${cur.split!.slice(0, 16)} .* recipe\\.ts:split`))
    expect(ls.stdout).toMatch(new RegExp(`${old.split!.slice(0, 16)} .* unreferenced`))
    expect(ls.stdout).toMatch(new RegExp(`checkpoint ${building.slice(0, 16)} .* building`))
    expect(ls.stdout).toMatch(new RegExp(`checkpoint ${finishedKey.slice(0, 16)} .* finished \\(step split\\)`))
    const lsJson = (await cli(["cache", "ls", "--store", p.store, "--json"])).stdout.trim().split("\n").map((l) => JSON.parse(l))
    expect(lsJson.find((r) => r.hash === cur.join)).toMatchObject({ steps: ["recipe.ts:join"], referenced: true })

    const before = storeSnapshot(p.store)
    const dry = await cli(["cache", "gc", "--dry-run", "--store", p.store])
    expect(dry.exitCode).toBe(0)
    const listed = dry.stdout.split("\n").filter((l) => l.startsWith("would delete ") && !l.includes("artifacts and")).map((l) => l.split(/\s+/)[2] === "checkpoint" ? `ck:${l.split(/\s+/)[3]}` : l.split(/\s+/)[2]).sort()
    const expected = [old.split!, old.join!].map((h) => h.slice(0, 16)).concat([idleOld, finishedKey].map((k) => `ck:${k.slice(0, 16)}`)).sort()
    expect(listed).toEqual(expected)
    expect(storeSnapshot(p.store)).toBe(before)
    expect(fs.readdirSync(path.join(p.store, "resume")).length).toBe(4)

    const gc = await cli(["cache", "gc", "--store", p.store])
    expect(gc.exitCode).toBe(0)
    const deleted = gc.stdout.split("\n").filter((l) => l.startsWith("deleted ") && !l.includes("artifacts and")).length
    expect(deleted).toBe(expected.length)
    expect(fs.readdirSync(path.join(p.store, "resume")).sort()).toEqual([idleNew, building].sort())
    expect(fs.existsSync(path.join(p.store, "artifacts", old.split!))).toBe(false)
    expect(fs.existsSync(path.join(p.store, "artifacts", cur.split!))).toBe(true)

    const zero = await cli(["cache", "gc", "--checkpoint-days", "0", "--store", p.store])
    expect(zero.exitCode).toBe(0)
    expect(fs.readdirSync(path.join(p.store, "resume"))).toEqual([building])

    const bad = await cli(["cache", "gc", "--checkpoint-days", "soon", "--store", p.store])
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr.trim().split("\n")).toHaveLength(1)
    expect(bad.stderr).toContain("--checkpoint-days")
  }, 300_000)
})

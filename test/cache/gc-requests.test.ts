/**
 * `cache gc` and generate's request cache (`requests/ab/<key>.json` in the store): entries unused for
 * --request-days (default 30) go, a cache hit counts as a use (request_store.py refreshes the entry's
 * mtime), a killed writer's temporary file goes with them, --dry-run deletes nothing, and while a
 * generate step is running nothing in the request cache is touched.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { projectRoot } from "../../engine/python.ts"
import { cli, storeSnapshot } from "../helpers/project.ts"
import { python } from "../steps/train/helpers.ts"
import { withCacheDb } from "./cache-db.ts"
import { storeProject } from "./store-recipe.ts"

const entry = (store: string, key: string, daysOld: number, name = `${key}.json`): string => {
  const file = path.join(store, "requests", key.slice(0, 2), name)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, JSON.stringify({ text: `answer ${key.slice(0, 4)}`, prompt_tokens: 3, completion_tokens: 2, finish_reason: "stop" }))
  const t = Date.now() / 1000 - daysOld * 86400
  fs.utimesSync(file, t, t)
  return file
}

const lock = (store: string, key: string) =>
  withCacheDb(store, (db) =>
    db.prepare("INSERT INTO locks (key, pid, host, step, recipe, acquired_at) VALUES (?, ?, ?, 'teacher', 'recipe.ts', ?)")
      .run(key, process.pid, os.hostname(), Date.now() / 1000))

const unlock = (store: string, key: string) => withCacheDb(store, (db) => db.prepare("DELETE FROM locks WHERE key = ?").run(key))

describe("cache gc and the generate request cache", () => {
  it("deletes entries unused for --request-days, keeps recently used ones (a hit counts), and none while a generate step runs", async () => {
    const p = storeProject({ salt: 3 })
    const run = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(run.exitCode, run.stderr).toBe(0)
    const splitKey = (run.events.find((e) => e.event === "step" && e.step === "split") as { key: string }).key

    const old = entry(p.store, "a1".repeat(32), 40)
    const recent = entry(p.store, "b2".repeat(32), 2)
    const hitKey = "c3".repeat(32)
    const hit = entry(p.store, hitKey, 40)
    const torn = entry(p.store, "a1".repeat(32), 40, ".tmp-x8k2")
    const foreign = entry(p.store, "d4".repeat(32), 40, "notes.txt")
    // a generate step reads the old entry `hit` from the cache: that is a use
    const got = await python(["-c", [
      "import json, sys",
      `sys.path.insert(0, ${JSON.stringify(path.join(projectRoot, "steps", "generate"))})`,
      "from request_store import RequestCache",
      `r = RequestCache(${JSON.stringify(path.join(p.store, "requests"))}).get(${JSON.stringify(hitKey)})`,
      "print(r.text)"
    ].join("\n")])
    expect(got.trim()).toBe("answer c3c3")

    // a live run building a key whose kind is not known yet may be a generate step: nothing goes
    const liveKey = "e5".repeat(32)
    lock(p.store, liveKey)
    const before = storeSnapshot(p.store)
    const held = await cli(["cache", "gc", "--store", p.store])
    expect(held.exitCode, held.stderr).toBe(0)
    expect(held.stdout).toContain("request cache: kept all 5 entries (step teacher of recipe.ts is running")
    expect(storeSnapshot(p.store)).toBe(before)
    unlock(p.store, liveKey)

    // a live run of another kind (the recipe's split step) does not hold the request cache
    lock(p.store, splitKey)
    const dry = await cli(["cache", "gc", "--dry-run", "--store", p.store, "--json"])
    expect(dry.exitCode, dry.stderr).toBe(0)
    expect(JSON.parse(dry.stdout.trim().split("\n").at(-1)!).requests).toMatchObject({ deleted: 2, kept: 3, skipped: null })
    expect(storeSnapshot(p.store)).toBe(before)

    const gc = await cli(["cache", "gc", "--store", p.store])
    expect(gc.exitCode, gc.stderr).toBe(0)
    expect(gc.stdout).toMatch(/request cache: deleted 2 entries unused for --request-days \(\d+B\), kept 3/)
    expect([old, torn].filter((f) => fs.existsSync(f))).toEqual([])
    expect([recent, hit, foreign].every((f) => fs.existsSync(f))).toBe(true)
    unlock(p.store, splitKey)

    const zero = await cli(["cache", "gc", "--request-days", "0", "--store", p.store])
    expect(zero.exitCode, zero.stderr).toBe(0)
    expect([recent, hit].filter((f) => fs.existsSync(f))).toEqual([])
    expect(fs.existsSync(foreign)).toBe(true)

    const bad = await cli(["cache", "gc", "--request-days", "soon", "--store", p.store])
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr.trim().split("\n")).toHaveLength(1)
    expect(bad.stderr).toContain("--request-days takes a number of days")
  }, 300_000)
})

/**
 * Presence stats read ahead on a worker thread (cache/preload.ts) while the recipe loads.
 *
 * - The worker reports, for the recipe's recorded outputs, the same stats the live filesystem gives.
 * - A check with stats read ahead passes on them when every signature matches, and otherwise answers
 *   what a live check answers (the damage is found, not vouched for).
 * - Through the CLI, with every signature out of the racy window (so the read-ahead is what the checks
 *   use): a null rerun reruns nothing; a flipped byte, a deleted file or an added file made before the
 *   run is found and rebuilt, and the outputs equal a clean build.
 * - A store the worker cannot read (no database, a database that is not SQLite) gives no read-ahead
 *   and changes nothing else.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { preloadPresence } from "../../cache/preload.ts"
import type { PathStat } from "../../cache/preload.ts"
import { Store } from "../../cache/store.ts"
import { cli, statuses } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"
import { withCacheDb } from "./cache-db.ts"
import { cleanOutputs, outputsOf, storeProject, tamper, wrongOutputs } from "./store-recipe.ts"

const projects: Array<TempProject> = []
afterEach(() => {
  for (const p of projects.splice(0)) fs.rmSync(p.dir, { recursive: true, force: true })
})

/** A built store recipe whose directory signatures are all trusted (recorded as if long after the commit). */
const built = async (): Promise<{ p: TempProject; outputs: Record<string, string> }> => {
  const p = storeProject({ parts: 12 })
  projects.push(p)
  const r = await cli(["run", p.file("recipe.ts"), "--json"])
  expect(r.exitCode, r.stderr).toBe(0)
  withCacheDb(p.store, (db) => {
    for (const row of db.prepare("SELECT hash, dirs FROM artifacts").all() as Array<{ hash: string; dirs: string }>) {
      const d = JSON.parse(row.dirs) as { at: number }
      db.prepare("UPDATE artifacts SET dirs = ? WHERE hash = ?").run(JSON.stringify({ ...d, at: Date.now() + 60_000 }), row.hash)
    }
  })
  return { p, outputs: outputsOf(r.events) }
}

const filesOf = (dir: string): Array<string> =>
  (fs.readdirSync(dir, { recursive: true }) as Array<string>).map((f) => path.join(dir, f))

describe("presence stats read ahead", () => {
  it("are the live stats of every directory and file of the recipe's recorded outputs", async () => {
    const { p, outputs } = await built()
    const pre = await preloadPresence(p.store, "recipe.ts").result
    expect(pre).toBeDefined()
    let compared = 0
    for (const hash of Object.values(outputs)) {
      const dir = path.join(p.store, "artifacts", hash)
      for (const f of [dir, ...filesOf(dir)]) {
        const live = fs.statSync(f)
        const seen = pre!.stat(f)
        expect(seen, f).toBeTruthy()
        expect([seen!.ino, seen!.size, seen!.mtimeMs, seen!.ctimeMs, seen!.isFile(), seen!.isDirectory()])
          .toEqual([live.ino, live.size, live.mtimeMs, live.ctimeMs, live.isFile(), live.isDirectory()])
        compared++
      }
    }
    expect(pre!.paths).toBe(compared)
    // another recipe of the same store has nothing recorded
    expect((await preloadPresence(p.store, "other.ts").result)?.paths ?? 0).toBe(0)
  }, 120_000)

  it("are what a check passes on when every signature matches, and never hide damage", async () => {
    const { p, outputs } = await built()
    const pre = await preloadPresence(p.store, "recipe.ts").result
    const read = new Set<string>()
    const recorded = { paths: pre!.paths, stat: (f: string): PathStat | null | undefined => (read.add(f), pre!.stat(f)) }
    const store = Store.open(p.store)
    try {
      const hashes = Object.values(outputs)
      store.useReadAhead(recorded)
      expect(store.withPrefetch(hashes, () => hashes.map((h) => store.has(h)))).toEqual([true, true])
      expect(read.size).toBe(pre!.paths)
      // damage read ahead is not vouched for: a truncated file's stats, a directory that lost a file,
      // send the check to the live filesystem, which finds what is wrong
      tamper(p.store, outputs.split!, "truncated")
      tamper(p.store, outputs.join!, "deleted file")
      store.useReadAhead(await preloadPresence(p.store, "recipe.ts").result)
      expect(store.withPrefetch(hashes, () => hashes.map((h) => store.has(h)))).toEqual([false, false])
      expect(store.problem(outputs.split!)).toMatch(/damaged/)
      expect(store.problem(outputs.join!)).toMatch(/damaged/)
    } finally {
      store.close()
    }
  }, 120_000)

  it("with signatures trusted, a null rerun reruns nothing and damage made before the run is rebuilt", async () => {
    const { p, outputs } = await built()
    const clean = await cleanOutputs(p)
    const again = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(again.exitCode, again.stderr).toBe(0)
    expect(statuses(again.events)).toEqual({ split: "cached", join: "cached" })
    for (const kind of ["flipped byte", "deleted file", "extra file"] as const) {
      tamper(p.store, outputs.split!, kind)
      const r = await cli(["run", p.file("recipe.ts"), "--json"])
      expect(r.exitCode, r.stderr).toBe(0)
      expect(statuses(r.events).split, kind).toBe("ran")
      expect(wrongOutputs(p.store, r.events, clean), kind).toEqual([])
    }
  }, 180_000)

  it("is skipped for a store without a database or with one that is not SQLite, changing nothing else", async () => {
    const { p } = await built()
    fs.renameSync(path.join(p.store, "cache.db"), path.join(p.store, "cache.db.away"))
    expect(await preloadPresence(p.store, "recipe.ts").result).toBeUndefined()
    fs.renameSync(path.join(p.store, "cache.db.away"), path.join(p.store, "cache.db"))
    for (const f of ["cache.db-wal", "cache.db-shm"]) fs.rmSync(path.join(p.store, f), { force: true })
    fs.writeFileSync(path.join(p.store, "cache.db"), "not a database, written by someone else\n".repeat(200))
    expect(await preloadPresence(p.store, "recipe.ts").result).toBeUndefined()
    const r = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(r.exitCode).not.toBe(0)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(/cache\.db/)
  }, 120_000)
})

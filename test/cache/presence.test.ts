/**
 * Presence checks that read no directory, group commit, and the store's format marker.
 *
 * - `has()` trusts an artifact's file list while every directory keeps the signature recorded at commit;
 *   a file added anywhere (even in an empty sub-directory, which holds no file the manifest names) or a
 *   directory swapped for a copy still makes it absent, and a row from before the signatures is checked
 *   by listing once and then recorded.
 * - Commits that flush together share fsync rounds, and every one of them is present afterwards.
 * - A store from before the format marker (same layout and hashes) is read as it is: a rerun restores
 *   every step; a store of a format this anneal does not know is refused with one line and exit 2,
 *   and nothing in it is written.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { Store } from "../../cache/store.ts"
import { openProject, planSteps } from "../../engine/plan.ts"
import { cli, statuses } from "../helpers/project.ts"
import { withCacheDb } from "./cache-db.ts"
import { outputsOf, storeProject, tamper, wrongOutputs } from "./store-recipe.ts"
import type { TamperKind } from "./store-recipe.ts"

const cleanups: Array<() => void> = []
afterEach(() => {
  for (const f of cleanups.splice(0)) f()
})
const openStore = (): Store => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-presence-"))
  const store = Store.open(root)
  cleanups.push(() => {
    store.close()
    fs.rmSync(root, { recursive: true, force: true })
  })
  return store
}

/** A staged output: files at the root and two levels down, and an empty sub-directory. */
const stage = (store: Store, salt: string): string => {
  const dir = store.newStaging(salt.padEnd(16, "0"))
  fs.mkdirSync(path.join(dir, "a", "b"), { recursive: true })
  fs.mkdirSync(path.join(dir, "empty"))
  fs.writeFileSync(path.join(dir, "top.txt"), `top ${salt}\n`)
  fs.writeFileSync(path.join(dir, "a", "mid.txt"), `mid ${salt}\n`)
  fs.writeFileSync(path.join(dir, "a", "b", "deep.txt"), `deep ${salt}\n`)
  return dir
}

/** The recorded directory signatures and when they were taken. */
const dirsOf = (store: Store, hash: string): { at: number; dirs: Array<[string, number, number, number]> } =>
  JSON.parse(store.db.artifact(hash)?.dirs ?? "null")

/** Pretends the signatures were recorded long after the directories last changed (out of the racy window). */
const age = (store: Store, hash: string) => {
  const d = dirsOf(store, hash)
  withCacheDb(store.root, (db) => db.prepare("UPDATE artifacts SET dirs = ? WHERE hash = ?").run(JSON.stringify({ ...d, at: Date.now() + 60_000 }), hash))
}

describe("presence checks from directory signatures", () => {
  it("records every directory at commit and still catches a file added in any of them", async () => {
    const store = openStore()
    const c = await store.commit(stage(store, "x"), "files", {})
    expect(dirsOf(store, c.hash).dirs.map((d) => d[0]).sort()).toEqual(["", "a", "a/b", "empty"])
    age(store, c.hash)
    expect(store.has(c.hash)).toBe(true)
    const art = store.artifactPath(c.hash)
    for (const where of ["empty", "a/b", ""]) {
      const stray = path.join(art, where, "stray.txt")
      fs.writeFileSync(stray, "not part of it")
      expect(store.has(c.hash)).toBe(false)
      expect(store.problem(c.hash)).toBe(`output artifact damaged (unexpected file ${path.posix.join(where, "stray.txt")})`)
      fs.rmSync(stray)
      // removing the stray file moved the directory's signature again: listed, found whole, recorded
      expect(store.has(c.hash)).toBe(true)
      age(store, c.hash)
    }
  })

  it("trusts unchanged signatures without listing, but not ones taken in the same clock tick as a change", async () => {
    const store = openStore()
    const c = await store.commit(stage(store, "t"), "files", {})
    // just committed: the directories changed moments before their signatures were taken, so a check
    // lists them and records again
    const committed = dirsOf(store, c.hash)
    // the record's time is in milliseconds: let the clock pass it, so a new record is told from the old
    while (Date.now() <= committed.at) { /* at most one millisecond */ }
    expect(store.has(c.hash)).toBe(true)
    expect(dirsOf(store, c.hash).at).toBeGreaterThanOrEqual(committed.at)
    expect(dirsOf(store, c.hash)).not.toEqual(committed)
    // out of that window a check stats and trusts them: the record is left as it is
    age(store, c.hash)
    const aged = dirsOf(store, c.hash)
    expect(store.has(c.hash)).toBe(true)
    expect(dirsOf(store, c.hash)).toEqual(aged)
  })

  it("catches a sub-directory swapped for a copy with the same files", async () => {
    const store = openStore()
    const c = await store.commit(stage(store, "y"), "files", {})
    age(store, c.hash)
    const art = store.artifactPath(c.hash)
    fs.cpSync(path.join(art, "a"), path.join(art, "a.copy"), { recursive: true })
    fs.writeFileSync(path.join(art, "a.copy", "b", "added.txt"), "extra")
    fs.renameSync(path.join(art, "a"), path.join(art, "a.old"))
    fs.renameSync(path.join(art, "a.copy"), path.join(art, "a"))
    fs.rmSync(path.join(art, "a.old"), { recursive: true, force: true })
    expect(store.has(c.hash)).toBe(false)
    expect(store.problem(c.hash)).toContain("unexpected file a/b/added.txt")
  })

  it("checks a row recorded without signatures by listing it once, then records them", async () => {
    const store = openStore()
    const c = await store.commit(stage(store, "z"), "files", {})
    const recorded = dirsOf(store, c.hash).dirs
    withCacheDb(store.root, (db) => db.prepare("UPDATE artifacts SET dirs = NULL WHERE hash = ?").run(c.hash))
    expect(store.has(c.hash)).toBe(true)
    expect(dirsOf(store, c.hash).dirs).toEqual(recorded)
    fs.writeFileSync(path.join(store.artifactPath(c.hash), "empty", "late.txt"), "x")
    withCacheDb(store.root, (db) => db.prepare("UPDATE artifacts SET dirs = NULL WHERE hash = ?").run(c.hash))
    expect(store.has(c.hash)).toBe(false)
  })
})

describe("the presence scan", () => {
  it("vouches, on its worker thread, for exactly the outputs whose stats are unchanged; the plan finds the rest", async () => {
    const p = storeProject({ parts: 12 })
    cleanups.push(() => fs.rmSync(p.dir, { recursive: true, force: true }))
    const first = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(first.exitCode, first.stderr).toBe(0)
    const out = outputsOf(first.events)
    const scanned = async (): Promise<ReadonlySet<string>> => {
      const scan = Store.scan(p.store, "recipe.ts")
      expect(scan).toBeDefined()
      try {
        const vouched = await scan!.finished()
        expect(scan!.error).toBeUndefined()
        return vouched
      } finally {
        scan!.close()
      }
    }
    // signatures taken moments after the directories changed are not trusted (the racy window): the
    // scan leaves those outputs to the plan, which lists them
    expect(await scanned()).toEqual(new Set())
    const aged = () => withCacheDb(p.store, (db) => db.prepare("UPDATE artifacts SET dirs = json_set(dirs, '$.at', ?)").run(Date.now() + 60_000))
    aged()
    expect(await scanned()).toEqual(new Set([out.split, out.join]))

    // a plan takes the scan's rows and verdicts (it is started before the recipe loads; here the test
    // waits for it, as a plan on a busy machine need not)
    const project = await openProject(p.file("recipe.ts"), { scan: true })
    try {
      await project.scan!.finished()
      const planned = planSteps(project, project.graph.steps)
      expect(planned.entries.map((e) => [e.step, e.status])).toEqual([["split", "cached"], ["join", "cached"]])
      expect(project.scan!.used).toEqual({ rows: true, verdicts: 2 })
    } finally {
      project.store.close()
    }

    // a file added to one output, a changed byte in the other: neither is vouched for, and a run (which
    // starts the scan while its recipe loads) rebuilds the damaged one, saying why
    const rerun = async (step: "split" | "join", kind: TamperKind, reason: string, expected: Record<string, string>) => {
      tamper(p.store, out[step]!, kind)
      aged()
      expect(await scanned()).toEqual(new Set(step === "split" ? [out.join] : [out.split]))
      const r = await cli(["run", p.file("recipe.ts"), "--json"], { env: { ANNEAL_PRESENCE_SCAN: "1" } })
      expect(r.exitCode, r.stderr).toBe(0)
      const planned = r.events.flatMap((e) => (e.event === "planned" && e.step === step ? e.reasons : []))
      expect(planned.join(" ")).toContain(reason)
      expect(statuses(r.events)).toEqual(expected)
      expect(wrongOutputs(p.store, r.events, out)).toEqual([])
    }
    await rerun("join", "extra file", "unexpected file stray.txt", { split: "cached", join: "ran" })
    await rerun("split", "flipped byte", "content changed", { split: "ran", join: "cached" })
  }, 120_000)
})

describe("group commit", () => {
  it("commits flushing together share fsync rounds, and every one is present afterwards", async () => {
    const store = openStore()
    const n = 8
    const committed = await Promise.all(Array.from({ length: n }, (_, i) => store.commit(stage(store, `g${i}`), "files", {})))
    expect(new Set(committed.map((c) => c.hash)).size).toBe(n)
    for (const c of committed) expect(store.has(c.hash)).toBe(true)
    // alone, each commit takes two rounds (its files and directories, then the artifacts directory)
    expect(store.flusher.rounds).toBeLessThan(2 * n)
  })
})

describe("store format", () => {
  it("reads a store from before the format marker as it is, and refuses an unknown format with one line", async () => {
    const p = storeProject({ parts: 5 })
    cleanups.push(() => fs.rmSync(p.dir, { recursive: true, force: true }))
    const first = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(first.exitCode, first.stderr).toBe(0)
    const marker = path.join(p.store, "store.json")
    expect(JSON.parse(fs.readFileSync(marker, "utf8"))).toEqual({ format: 1, hash: "sha256" })

    // what an older anneal left: no marker, no directory signatures
    fs.rmSync(marker)
    withCacheDb(p.store, (db) => db.prepare("UPDATE artifacts SET dirs = NULL").run())
    const again = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(again.exitCode, again.stderr).toBe(0)
    expect(statuses(again.events)).toEqual({ split: "cached", join: "cached" })
    expect(fs.existsSync(marker)).toBe(true)

    fs.writeFileSync(marker, JSON.stringify({ format: 2, hash: "blake3" }) + "\n")
    const db = path.join(p.store, "cache.db")
    const before = fs.statSync(db).mtimeMs
    const logs = fs.readdirSync(path.join(p.store, "logs"))
    const refused = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr.trim().split("\n")).toHaveLength(1)
    expect(refused.stderr).toContain(`store ${p.store} has format 2 (blake3 hashes); this anneal reads format 1 (sha256)`)
    expect(fs.statSync(db).mtimeMs).toBe(before)
    expect(fs.readdirSync(path.join(p.store, "logs"))).toEqual(logs)
  }, 240_000)
})

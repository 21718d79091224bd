/**
 * A plan leases every output it found present in one row of `lease_sets` (schema migration 4), not one
 * `leases` row each. gc must honour such a set while its holder lives, break it once the holder is dead
 * (kill -9 leaves it behind), and a run's end must release it.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { Store } from "../../cache/store.ts"
import { withCacheDb } from "./cache-db.ts"

const roots: Array<string> = []
afterEach(() => {
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true })
})

/** A store holding `n` committed one-file artifacts that nothing references (gc would take them all). */
const storeWith = async (n: number) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-lease-sets-"))
  roots.push(root)
  const store = Store.open(path.join(root, ".anneal"))
  const hashes: Array<string> = []
  for (let i = 0; i < n; i++) {
    const staging = store.newStaging(String(i).padStart(64, "0"))
    fs.writeFileSync(path.join(staging, "out"), `artifact ${i}\n`)
    hashes.push((await store.commit(staging, "file", {})).hash)
  }
  store.close()
  return { root: path.join(root, ".anneal"), hashes }
}

describe("lease sets", () => {
  it("a live holder's set keeps gc away from exactly its artifacts; the holder's close releases it", async () => {
    const { root, hashes } = await storeWith(3)
    const holder = Store.open(root)
    holder.beginRun()
    holder.deferLeases()
    expect(holder.has(hashes[0]!)).toBe(true)
    expect(holder.has(hashes[1]!)).toBe(true)
    expect(holder.confirmLeases()).toEqual([])
    expect(withCacheDb(root, (db) => db.prepare("SELECT COUNT(*) AS n FROM leases").get())).toEqual({ n: 0 })

    const gc = Store.open(root)
    try {
      expect(gc.remove(hashes[0]!)).toBe(false)
      expect(gc.remove(hashes[1]!)).toBe(false)
      expect(gc.remove(hashes[2]!)).toBe(true)
      holder.close()
      expect(gc.remove(hashes[0]!)).toBe(true)
      expect(fs.existsSync(path.join(root, "artifacts", hashes[0]!))).toBe(false)
    } finally {
      gc.close()
    }
  })

  it("the set of a holder that died is broken by the next check, and the artifact can go", async () => {
    const { root, hashes } = await storeWith(2)
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!
    withCacheDb(root, (db) =>
      db.prepare("INSERT INTO lease_sets (owner, pid, host, acquired_at, hashes) VALUES (?, ?, ?, ?, ?)")
        .run("dead-owner", dead, os.hostname(), Date.now() / 1000, JSON.stringify(hashes)))
    const gc = Store.open(root)
    try {
      expect(gc.db.leased(hashes[0]!)).toBe(false)
      expect(withCacheDb(root, (db) => db.prepare("SELECT COUNT(*) AS n FROM lease_sets").get())).toEqual({ n: 0 })
      expect(gc.remove(hashes[1]!)).toBe(true)
    } finally {
      gc.close()
    }
  })
})

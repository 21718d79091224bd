/**
 * The cache database's group commit (`CacheDb.batched`): the writes asked for in one turn of the event
 * loop commit in one transaction, each under its own savepoint, so one that throws is undone alone and
 * only its caller hears of it; one that runs in a later turn is in a later transaction; and a transaction
 * that cannot run fails every call in it, leaving none of their rows.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { CacheDb } from "../../cache/db.ts"
import { withCacheDb } from "./cache-db.ts"

const dirs: Array<string> = []
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

const openDb = (): { db: CacheDb; dir: string } => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-db-batch-"))
  dirs.push(dir)
  return { db: new CacheDb(path.join(dir, "cache.db")), dir }
}

const results = (dir: string): Array<string> =>
  withCacheDb(dir, (d) => (d.prepare("SELECT key FROM results ORDER BY key").all() as Array<{ key: string }>).map((r) => r.key))

describe("batched database writes", () => {
  it("commit together, and a call that throws is undone alone", async () => {
    const { db, dir } = openDb()
    try {
      const settled = await Promise.allSettled([
        db.batched(() => db.putResult("a", "h".repeat(64), 1, 1)),
        db.batched(() => {
          db.putResult("b", "h".repeat(64), 2, 1)
          throw new Error("step b's record failed")
        }),
        db.batched(() => {
          db.putResult("c", "h".repeat(64), 3, 1)
          return "c recorded"
        })
      ])
      expect(settled.map((s) => s.status)).toEqual(["fulfilled", "rejected", "fulfilled"])
      expect((settled[1] as PromiseRejectedResult).reason).toMatchObject({ message: "step b's record failed" })
      expect((settled[2] as PromiseFulfilledResult<string>).value).toBe("c recorded")
      expect(results(dir)).toEqual(["a", "c"])
      // a call in a later turn is its own transaction: it sees what the first one committed
      expect(await db.batched(() => db.result("a")?.output)).toBe("h".repeat(64))
    } finally {
      db.close()
    }
  })

  it("fail together when their transaction cannot run, leaving nothing of any of them", async () => {
    const { db, dir } = openDb()
    const pending = [
      db.batched(() => db.putResult("x", "h".repeat(64), 1, 1)),
      db.batched(() => db.putResult("y", "h".repeat(64), 2, 1))
    ]
    // the database is gone before the turn ends (a run torn down): neither call may report success
    db.close()
    const settled = await Promise.allSettled(pending)
    expect(settled.map((s) => s.status)).toEqual(["rejected", "rejected"])
    expect(String((settled[0] as PromiseRejectedResult).reason.message)).toMatch(/cache database .*cache\.db: transaction failed/)
    expect(results(dir)).toEqual([])
  })
})

/**
 * The cache database stays on the driver's disk when the store is shared (cache/db-location.ts): beside
 * a store on a local disk, elsewhere when ANNEAL_DB_DIR says so or the store is on a network filesystem.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { databasePath, networkFilesystem } from "../../cache/db-location.ts"
import { Store } from "../../cache/store.ts"

describe("where the cache database lives", () => {
  it("beside a store on a local disk", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-dbloc-"))
    expect(networkFilesystem(root)).toBeUndefined()
    expect(databasePath(root, {})).toBe(path.join(root, "cache.db"))
  })

  it("in ANNEAL_DB_DIR, keyed by the store's real path, and the store works from there", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-dbloc-"))
    const local = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-dbloc-local-"))
    const other = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-dbloc-"))
    const a = databasePath(root, { ANNEAL_DB_DIR: local })
    expect(path.dirname(path.dirname(a))).toBe(local)
    expect(databasePath(path.join(root, "."), { ANNEAL_DB_DIR: local })).toBe(a)
    expect(databasePath(other, { ANNEAL_DB_DIR: local })).not.toBe(a)

    const saved = process.env.ANNEAL_DB_DIR
    process.env.ANNEAL_DB_DIR = local
    try {
      const store = Store.open(root)
      store.db.close()
    } finally {
      if (saved === undefined) delete process.env.ANNEAL_DB_DIR
      else process.env.ANNEAL_DB_DIR = saved
    }
    expect(fs.existsSync(a)).toBe(true)
    expect(fs.existsSync(path.join(root, "cache.db"))).toBe(false)
  })
})

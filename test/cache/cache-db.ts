/** Direct access to a store's cache database, for tests that simulate what no command would write. */
import * as path from "node:path"
import { DatabaseSync } from "node:sqlite"

export const withCacheDb = <A>(store: string, f: (db: DatabaseSync) => A): A => {
  const db = new DatabaseSync(path.join(store, "cache.db"))
  try {
    db.exec("PRAGMA busy_timeout = 10000")
    return f(db)
  } finally {
    db.close()
  }
}

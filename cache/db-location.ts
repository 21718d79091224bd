/**
 * Where a store's SQLite database lives. Beside the store (`<store>/cache.db`) when the store is on a
 * local disk; on the driver's local disk when the store is on a network filesystem (NFS, Lustre, GPFS,
 * CephFS, SMB, BeeGFS...), as on a cluster whose nodes share the store: SQLite's WAL needs shared memory
 * and POSIX locks that such filesystems do not give reliably across hosts, and every commit would pay a
 * network round trip per fsync. The local copy is keyed by the store's real path:
 *
 *   $ANNEAL_CACHE_DIR/db/<sha256(realpath of store), 16 hex>/cache.db   (default ~/.cache/anneal)
 *
 * `ANNEAL_DB_DIR` puts it in a directory of one's choosing instead (for any store). Only the driver
 * opens the database: cluster jobs read their inputs and write their outputs as files in the store.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** statfs f_type of filesystems shared over a network (linux/magic.h and the vendors' headers). */
const networkFilesystems = new Map<number, string>([
  [0x6969, "nfs"],
  [0xff534d42, "cifs"],
  [0xfe534d42, "smb2"],
  [0x517b, "smb"],
  [0x0bd00bd0, "lustre"],
  [0x47504653, "gpfs"],
  [0x00c36400, "ceph"],
  [0x19830326, "beegfs"],
  [0x013111a8, "ibrix"],
  [0x564c, "ncp"],
  [0x7461636f, "ocfs2"],
  [0x01161970, "gfs2"],
  [0x6b414653, "afs"],
  [0x5346414f, "afs"]
])

/** The network filesystem a path is on, if it is on one. */
export const networkFilesystem = (dir: string): string | undefined => {
  try {
    return networkFilesystems.get(Number(fs.statfsSync(dir).type))
  } catch {
    return undefined
  }
}

/** The path of the store's database (see the module's comment). */
export const databasePath = (root: string, env: NodeJS.ProcessEnv = process.env): string => {
  const local = (base: string) => {
    const id = createHash("sha256").update(fs.realpathSync(root)).digest("hex").slice(0, 16)
    const dir = path.join(base, id)
    fs.mkdirSync(dir, { recursive: true })
    return path.join(dir, "cache.db")
  }
  if (env.ANNEAL_DB_DIR !== undefined && env.ANNEAL_DB_DIR !== "") return local(path.resolve(env.ANNEAL_DB_DIR))
  if (networkFilesystem(root) === undefined) return path.join(root, "cache.db")
  const cache = env.ANNEAL_CACHE_DIR !== undefined && env.ANNEAL_CACHE_DIR !== "" ? env.ANNEAL_CACHE_DIR : path.join(os.homedir(), ".cache", "anneal")
  return local(path.join(cache, "db"))
}

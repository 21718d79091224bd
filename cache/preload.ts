/**
 * Presence checks read ahead on a worker thread, as git's preload-index lstat()s the index's files on
 * threads before `git status` compares them. A cached rerun checks every step's output against its
 * manifest (store.ts `check`: one stat per directory and per file); for 10,000 steps those 20,000
 * stats were a fifth of the run, on the main thread, after the recipe had loaded. Here a worker opens
 * the database, reads the paths of the recipe's recorded outputs and stats them while the main thread
 * is still importing and building the recipe; the checks then compare against those stats.
 *
 * Nothing is decided here: the worker only reports what it saw. A check that passes on these stats
 * alone is a pass; any other outcome (a moved signature, a missing file, a directory to list) is checked
 * again on the live filesystem, as without a read-ahead. A stat taken a moment before the check vouches
 * no less than one taken during it: both can be overtaken by a change the next instant, which the next
 * run's check sees. Leases are taken after planning either way (store.ts `confirmLeases`), so a gc that
 * removed an artifact in between is found as before.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { databasePath } from "./db-location.ts"

/** What the worker saw of one path: enough for checkManifest's comparisons (manifest.ts). */
export interface PathStat {
  readonly ino: number
  readonly size: number
  readonly mtimeMs: number
  readonly ctimeMs: number
  isFile(): boolean
  isDirectory(): boolean
}

export interface Prestats {
  /** the path's stat as the worker saw it; null when it was missing; undefined when not read ahead */
  readonly stat: (p: string) => PathStat | null | undefined
  readonly paths: number
}

export interface Preload {
  /** the stats, or undefined when nothing could be read ahead (new store, other schema, no worker) */
  readonly result: Promise<Prestats | undefined>
}

const FIELDS = 5 // ino, size, mtimeMs, ctimeMs, type (0 missing, 1 file, 2 directory, 3 other)

// CommonJS evaluated in the worker (no loader there, from the sources as from the compiled package).
// The rows' layout is manifest.ts's: a manifest entry starts with its relative path, a directory
// signature too, and `dirs` is {"at", "dirs"}.
const workerSource = `
const { parentPort, workerData } = require("node:worker_threads")
// node:sqlite warns that it is experimental; this thread's warnings would reach the user's terminal
process.emitWarning = () => {}
const fs = require("node:fs")
const path = require("node:path")
const { DatabaseSync } = require("node:sqlite")
let db
try {
  db = new DatabaseSync(workerData.db)
  db.exec("PRAGMA query_only = 1")
  const rows = db.prepare("SELECT a.hash AS hash, a.manifest AS manifest, a.dirs AS dirs FROM steps s JOIN artifacts a ON a.hash = s.output WHERE s.recipe = ?").all(workerData.recipe)
  db.close()
  db = undefined
  const paths = []
  const seen = new Set()
  for (const r of rows) {
    if (seen.has(r.hash) || r.manifest === null) continue
    seen.add(r.hash)
    const dir = path.join(workerData.artifacts, r.hash)
    paths.push(dir)
    try {
      const d = r.dirs === null ? undefined : JSON.parse(r.dirs)
      if (d !== undefined && Array.isArray(d.dirs)) for (const sig of d.dirs) if (sig[0] !== "") paths.push(path.join(dir, sig[0]))
      for (const e of JSON.parse(r.manifest)) paths.push(path.join(dir, e[0]))
    } catch {}
  }
  const out = new Float64Array(paths.length * ${FIELDS})
  for (let i = 0; i < paths.length; i++) {
    const st = fs.statSync(paths[i], { throwIfNoEntry: false })
    const o = i * ${FIELDS}
    if (st === undefined) continue
    out[o] = st.ino
    out[o + 1] = st.size
    out[o + 2] = st.mtimeMs
    out[o + 3] = st.ctimeMs
    out[o + 4] = st.isFile() ? 1 : st.isDirectory() ? 2 : 3
  }
  parentPort.postMessage({ paths, stats: out }, [out.buffer])
} catch (e) {
  try { db?.close() } catch {}
  parentPort.postMessage({ error: String(e && e.message || e) })
}
`

const none: Preload = { result: Promise.resolve(undefined) }

/**
 * Starts reading ahead the stats of `recipe`'s recorded outputs in the store at `root`. Never fails: a
 * store without a database, a database this worker cannot read, or a worker that cannot start gives
 * no stats, and the checks stat as they always did.
 */
export const preloadPresence = (root: string, recipe: string): Preload => {
  let db: string
  try {
    if (!fs.existsSync(path.join(root, "artifacts"))) return none
    db = databasePath(root)
    if (!fs.existsSync(db)) return none
  } catch {
    return none
  }
  const result = import("node:worker_threads").then(({ Worker }) => new Promise<Prestats | undefined>((resolve) => {
    let w: import("node:worker_threads").Worker
    try {
      w = new Worker(workerSource, { eval: true, workerData: { db, recipe, artifacts: path.join(root, "artifacts") } })
    } catch {
      return resolve(undefined)
    }
    // the run never waits on this thread to exit
    w.unref()
    w.once("message", (m: { paths?: Array<string>; stats?: Float64Array; error?: string }) => {
      void w.terminate()
      resolve(m.paths === undefined || m.stats === undefined ? undefined : prestats(m.paths, m.stats))
    })
    w.once("error", () => resolve(undefined))
    w.once("exit", () => resolve(undefined))
  }), () => undefined)
  return { result }
}

const prestats = (paths: ReadonlyArray<string>, stats: Float64Array): Prestats => {
  const index = new Map<string, number>()
  for (let i = 0; i < paths.length; i++) index.set(paths[i]!, i)
  return {
    paths: paths.length,
    stat: (p) => {
      const i = index.get(p)
      if (i === undefined) return undefined
      const o = i * FIELDS
      const type = stats[o + 4]!
      if (type === 0) return null
      return {
        ino: stats[o]!,
        size: stats[o + 1]!,
        mtimeMs: stats[o + 2]!,
        ctimeMs: stats[o + 3]!,
        isFile: () => type === 1,
        isDirectory: () => type === 2
      }
    }
  }
}

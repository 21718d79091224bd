/**
 * The content-addressed store. Layout under the store root (default `.anneal/` in the project):
 *
 *   cache.db                    the SQLite cache (cache/db.ts)
 *   artifacts/<hash>/           immutable artifact directories, named by their Merkle hash
 *   artifacts/<hash>.json       the artifact's self-description (params, inputs, versions, devices)
 *   staging/<key>-<pid>-<n>/    where a running step writes; never read by anyone else
 *   resume/<key>/               checkpoints of an interrupted step, reused by a rerun of the same key
 *   logs/<session>/<step>.log   each run's stdout/stderr
 *
 * Commit protocol: hash the staging tree, fsync every file, make files read-only, rename the directory
 * to artifacts/<hash> (atomic on one filesystem), fsync the parent, and only then record it in SQLite.
 * A crash before the rename leaves only staging (swept later); a crash after it leaves a complete
 * artifact the database does not know yet, which a rerun finds identical and adopts.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { CacheDb, isAlive } from "./db.ts"
import * as os from "node:os"
import { hashFile, hashTree, listFiles } from "../engine/hash.ts"
import { CacheError, SourceError } from "../engine/errors.ts"

export interface Committed {
  readonly hash: string
  readonly path: string
  readonly bytes: number
  readonly files: number
  /** false when an identical artifact was already in the store */
  readonly created: boolean
}

const fsyncPath = (p: string) => {
  const fd = fs.openSync(p, "r")
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

let stagingCounter = 0

export class Store {
  readonly db: CacheDb
  readonly artifactsDir: string
  readonly stagingDir: string
  readonly resumeRoot: string
  readonly logsDir: string

  private constructor(readonly root: string, db: CacheDb) {
    this.db = db
    this.artifactsDir = path.join(root, "artifacts")
    this.stagingDir = path.join(root, "staging")
    this.resumeRoot = path.join(root, "resume")
    this.logsDir = path.join(root, "logs")
  }

  /** Opens (creating if needed) a store; a corrupt database is a CacheError. */
  static open(root: string): Store {
    try {
      for (const d of ["", "artifacts", "staging", "resume", "logs"]) fs.mkdirSync(path.join(root, d), { recursive: true })
    } catch (e) {
      throw new CacheError({ message: `cannot create the store at ${root}: ${(e as Error).message}`, path: root, cause: e })
    }
    return new Store(root, new CacheDb(path.join(root, "cache.db")))
  }

  close() {
    this.db.close()
  }

  artifactPath(hash: string): string {
    return path.join(this.artifactsDir, hash)
  }

  /** True when the artifact directory is present (the database may be ahead of a deleted directory). */
  has(hash: string): boolean {
    return fs.existsSync(this.artifactPath(hash))
  }

  resumeDir(key: string): string {
    return path.join(this.resumeRoot, key)
  }

  newStaging(key: string): string {
    const dir = path.join(this.stagingDir, `${key.slice(0, 16)}-${process.pid}-${++stagingCounter}`)
    fs.rmSync(dir, { recursive: true, force: true })
    fs.mkdirSync(dir, { recursive: true })
    return dir
  }

  discard(staging: string) {
    fs.rmSync(staging, { recursive: true, force: true })
  }

  /** Moves a finished staging directory into the store under its content hash. */
  commit(staging: string, kind: string, describe: Record<string, unknown>): Committed {
    const tree = hashTree(staging)
    for (const e of tree.entries) {
      const f = path.join(staging, e.rel)
      fsyncPath(f)
      fs.chmodSync(f, 0o444)
    }
    const target = this.artifactPath(tree.hash)
    let created = true
    if (fs.existsSync(target)) {
      // identical content already stored: early cutoff in its purest form
      created = false
      fs.rmSync(staging, { recursive: true, force: true })
    } else {
      fsyncPath(staging)
      fs.renameSync(staging, target)
      fsyncPath(this.artifactsDir)
    }
    const sidecar = target + ".json"
    if (!fs.existsSync(sidecar)) {
      const tmp = `${sidecar}.${process.pid}.tmp`
      fs.writeFileSync(tmp, JSON.stringify({ hash: tree.hash, kind, bytes: tree.bytes, files: tree.entries.length, ...describe }, null, 2) + "\n")
      fs.renameSync(tmp, sidecar)
    }
    return { hash: tree.hash, path: target, bytes: tree.bytes, files: tree.entries.length, created }
  }

  /** Removes staging directories left by processes that died (kill -9 mid-step). */
  sweepStaging() {
    for (const name of fs.readdirSync(this.stagingDir)) {
      const pid = Number(name.split("-")[1])
      if (!Number.isInteger(pid) || !isAlive(pid, os.hostname())) {
        fs.rmSync(path.join(this.stagingDir, name), { recursive: true, force: true })
      }
    }
  }

  logPath(session: number, step: string): string {
    const dir = path.join(this.logsDir, String(session))
    fs.mkdirSync(dir, { recursive: true })
    return path.join(dir, step.replace(/[/:]/g, "_") + ".log")
  }

  /** Content hash of a source file or directory, using the (path, size, mtime, inode) cache. */
  hashSource(p: string): { hash: string; bytes: number } {
    if (!fs.existsSync(p)) throw new SourceError({ message: `source not found: ${p}`, path: p })
    try {
      const tree = hashTree(p, (file, st) => {
        const mtime = String(st.mtimeMs)
        const cached = this.db.fileStat(file, st.size, mtime, String(st.ino))
        if (cached !== undefined) return cached
        const h = hashFile(file)
        this.db.putFileStat(file, st.size, mtime, String(st.ino), h)
        return h
      })
      return { hash: tree.hash, bytes: tree.bytes }
    } catch (e) {
      if (e instanceof CacheError) throw e
      throw new SourceError({ message: `cannot read source ${p}: ${(e as Error).message}`, path: p, cause: e })
    }
  }

  /** Rehashes every artifact; returns the ones whose content no longer matches their name. */
  verify(onProgress?: (done: number, total: number) => void): Array<{ hash: string; problem: string }> {
    const bad: Array<{ hash: string; problem: string }> = []
    const known = this.db.artifacts()
    const onDisk = new Set(fs.readdirSync(this.artifactsDir).filter((n) => !n.endsWith(".json") && !n.endsWith(".tmp")))
    let done = 0
    for (const a of known) {
      onProgress?.(done++, known.length)
      if (!onDisk.has(a.hash)) {
        bad.push({ hash: a.hash, problem: "missing from the store" })
        continue
      }
      onDisk.delete(a.hash)
      const actual = hashTree(this.artifactPath(a.hash)).hash
      if (actual !== a.hash) bad.push({ hash: a.hash, problem: `content hashes to ${actual.slice(0, 12)}` })
    }
    for (const orphan of onDisk) {
      const actual = hashTree(this.artifactPath(orphan)).hash
      if (actual !== orphan) bad.push({ hash: orphan, problem: `unrecorded and content hashes to ${actual.slice(0, 12)}` })
    }
    return bad
  }

  /** Deletes an artifact directory (files are read-only; directories are not) and its records. */
  remove(hash: string) {
    const dir = this.artifactPath(hash)
    if (fs.existsSync(dir)) {
      for (const rel of listFiles(dir)) fs.chmodSync(path.join(dir, rel), 0o644)
      fs.rmSync(dir, { recursive: true, force: true })
    }
    fs.rmSync(dir + ".json", { force: true })
    this.db.forgetArtifact(hash)
  }

  /** Bytes held by artifacts, from the database (cheap; `verify` is the expensive check). */
  bytes(): number {
    return this.db.artifacts().reduce((s, a) => s + a.bytes, 0)
  }
}

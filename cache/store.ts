/**
 * The content-addressed store. Layout under the store root (default `.anneal/` in the project):
 *
 *   store.json                     the store's format and artifact hash (cache/format.ts)
 *   cache.db                       the SQLite cache (cache/db.ts)
 *   artifacts/<hash>/              immutable artifact directories, named by their Merkle hash
 *   artifacts/<hash>.json          the artifact's self-description (params, inputs, versions, devices)
 *   staging/<key>-<pid>-<n>@<host>/ where a running step writes; never read by anyone else
 *   resume/<key>/                  checkpoints of an interrupted step, reused by a rerun of the same key
 *   logs/<session>/<step>.log      each run's stdout/stderr
 *   trash/                         artifacts being deleted (moved here atomically first); swept on open
 *   quarantine/<hash>-<time>/      copies that did not match their name, kept for a look until `cache gc`
 *
 * Commit protocol: hash the staging tree, fsync every file, make files read-only, lease the hash (so
 * gc leaves it alone), rename the directory to artifacts/<hash> (atomic on one filesystem), fsync the
 * parent, and record the artifact with its manifest (cache/manifest.ts). A crash before the rename leaves
 * only staging (swept later); a crash after it leaves a complete artifact that a rerun rehashes and adopts.
 *
 * "Present" means recorded in the database *and* matching the recorded manifest (one stat per file), so
 * a half-deleted, truncated, extended or rewritten artifact is never restored: its step reruns instead.
 * Deletion is the commit in reverse: forget the rows and move the directory into trash/ in one
 * transaction (so no run can lease it half-way), then delete it at leisure.
 */
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { CacheDb } from "./db.ts"
import type { ArtifactCheckRecord } from "./db.ts"
import { databasePath } from "./db-location.ts"
import { HEARTBEAT_S, thisHost } from "./liveness.ts"
import { checkManifest, dirSignaturesOf, dirsJson, parseDirs, parseManifest } from "./manifest.ts"
import type { Check, DirSignature, ManifestEntry } from "./manifest.ts"
import { canonicalJson, hashFile, hashFilesOffThread, hashTree, hashTreeOffThread, listFiles, listTree, merkle, sha256 } from "./hash.ts"
import type { FileEntry, HashedFile } from "./hash.ts"
import { PresenceScan } from "./presence-scan.ts"
import * as Effect from "effect/Effect"
import { CacheError, SourceError, storeTry, storeTryPromise } from "./errors.ts"
import type { StoreFailure } from "./errors.ts"
import { GroupFlusher } from "./flush.ts"
import { checkStoreFormat } from "./format.ts"

export interface Committed {
  readonly hash: string
  readonly path: string
  readonly bytes: number
  readonly files: number
  /** false when an identical artifact was already in the store */
  readonly created: boolean
}

const rmQuietly = (p: string) => {
  try {
    fs.rmSync(p, { recursive: true, force: true })
  } catch {
    // another process sweeping the same entry; whoever is last finishes it
  }
}

let counter = 0

/** An artifact's name: its content hash, in hex. */
const contentHash = /^[0-9a-f]{64}$/

/** A new empty directory at `dir`: one mkdir when nothing is there, else whatever was there is replaced. */
const makeFreshDir = (dir: string) => {
  try {
    fs.mkdirSync(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST" && (e as NodeJS.ErrnoException).code !== "ENOENT") throw e
    fs.rmSync(dir, { recursive: true, force: true })
    fs.mkdirSync(dir, { recursive: true })
  }
}

export class Store {
  readonly db: CacheDb
  readonly artifactsDir: string
  readonly stagingDir: string
  readonly resumeRoot: string
  readonly logsDir: string
  readonly trashDir: string
  readonly quarantineDir: string
  /** this Store's lease owner token: leases are released by owner when the run ends */
  private readonly owner = randomUUID()
  private readonly leasedHere = new Set<string>()
  private readonly problems = new Map<string, string>()
  /** artifacts found present while leases are deferred (planning): leased together by confirmLeases */
  private pending: Set<string> | undefined
  private leasing = false
  /** rehash content instead of trusting stats (run --verify) */
  private deep = false
  private heartbeatTimer: NodeJS.Timeout | undefined
  /** the session log directories this Store has made */
  private readonly logDirs = new Set<string>()
  /** artifact rows read ahead in one query (`withPrefetch`), each used by the next check of its hash only */
  private prefetched = new Map<string, ArtifactCheckRecord>()
  /** the presence scan's verdicts, inside `withPrefetch` only */
  private scan: PresenceScan | undefined
  /** the commits' fsyncs, shared by commits that flush close together (group commit) */
  readonly flusher: GroupFlusher

  private constructor(readonly root: string, db: CacheDb) {
    this.db = db
    this.artifactsDir = path.join(root, "artifacts")
    this.stagingDir = path.join(root, "staging")
    this.resumeRoot = path.join(root, "resume")
    this.logsDir = path.join(root, "logs")
    this.trashDir = path.join(root, "trash")
    this.quarantineDir = path.join(root, "quarantine")
    this.flusher = new GroupFlusher(root)
  }

  /** Opens (creating if needed) a store; a corrupt database is a CacheError. Sweeps the trash. */
  static open(root: string): Store {
    try {
      fs.mkdirSync(root, { recursive: true })
    } catch (e) {
      throw new CacheError({ message: `cannot create the store at ${root}: ${(e as Error).message}`, path: root, cause: e })
    }
    checkStoreFormat(root)
    try {
      for (const d of ["artifacts", "staging", "resume", "logs", "trash", "quarantine"]) fs.mkdirSync(path.join(root, d), { recursive: true })
    } catch (e) {
      throw new CacheError({ message: `cannot create the store at ${root}: ${(e as Error).message}`, path: root, cause: e })
    }
    // beside the store, or on this machine's disk when the store is on a network filesystem (db-location.ts)
    const store = new Store(root, new CacheDb(databasePath(root)))
    store.sweepTrash()
    return store
  }

  /**
   * Starts the presence scan (presence-scan.ts) of what the store at `root` records for `recipe`, before
   * the store is opened (while the recipe loads). Undefined when there is no store or database yet.
   */
  static scan(root: string, recipe: string): PresenceScan | undefined {
    try {
      if (!fs.existsSync(path.join(root, "artifacts"))) return undefined
      checkStoreFormat(root) // a store of another format is refused when it is opened: nothing to scan
      return PresenceScan.start(databasePath(root), path.join(root, "artifacts"), recipe)
    } catch {
      return undefined
    }
  }

  /** `open` as an Effect: a store that cannot be opened is a CacheError in the error channel. */
  static make(root: string): Effect.Effect<Store, CacheError> {
    return storeTry(() => Store.open(root)) as Effect.Effect<Store, CacheError>
  }

  /** Calls of this store (and its database) as an Effect, their CacheError or SourceError in the error channel. */
  attempt<A>(f: (store: this) => A): Effect.Effect<A, StoreFailure> {
    return storeTry(() => f(this))
  }

  /**
   * `commit` as an Effect. Whatever stops the commit is in the error channel: the database's
   * CacheError, or a file-system error (no space, a file the step left unreadable, a symlink) as a
   * CacheError with the error's own message and the staging path.
   */
  commitEffect(staging: string, kind: string, describe: Record<string, unknown>, alsoRecord?: (committed: Committed) => void): Effect.Effect<Committed, StoreFailure> {
    return storeTryPromise(() => this.commit(staging, kind, describe, alsoRecord), (e) =>
      new CacheError({ message: e instanceof Error ? e.message : String(e), path: staging, cause: e }))
  }

  /** `hashSourceOffThread` as an Effect: a missing or unreadable source is a SourceError in the error channel. */
  hashSourceEffect(p: string): Effect.Effect<{ readonly hash: string }, StoreFailure> {
    return storeTryPromise(() => this.hashSourceOffThread(p))
  }

  /**
   * Marks this store as used by a live run: its process heartbeats (so other hosts can tell it is alive),
   * every artifact it asks about is leased before it is checked, and `verify` makes every check rehash.
   */
  beginRun(options: { verify?: boolean } = {}) {
    this.leasing = true
    this.deep = options.verify === true
    const startedAt = Date.now() / 1000
    this.db.heartbeat(startedAt)
    this.heartbeatTimer = setInterval(() => {
      try {
        this.db.heartbeat(startedAt)
      } catch {
        // a missed beat only matters to other hosts, after many of them
      }
    }, HEARTBEAT_S * 1000)
    this.heartbeatTimer.unref()
  }

  /** Releases this store's leases (and heartbeat) and closes the database. */
  close() {
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer)
    try {
      this.db.releaseLeases(this.owner)
      if (this.leasing) this.db.endProcess()
    } catch {
      // a broken database: dead leases are broken by the next run anyway
    }
    this.db.close()
  }

  artifactPath(hash: string): string {
    // a content hash (hex) is joined as it is: path.join's normalising was a tenth of a presence check
    return contentHash.test(hash) ? this.artifactsDir + path.sep + hash : path.join(this.artifactsDir, hash)
  }

  /** Leases an artifact for this store's lifetime: gc will not delete it while this process lives. */
  lease(hash: string) {
    if (this.leasedHere.has(hash)) return
    this.db.lease(hash, this.owner)
    this.leasedHere.add(hash)
  }

  /**
   * Whether the artifact can be used: recorded, and its files match the recorded manifest (stat only;
   * rehashed under run --verify). In a run, the artifact is leased first, so gc cannot take it after
   * the check. `problem(hash)` says what was wrong.
   */
  has(hash: string): boolean {
    if (this.leasing && this.pending === undefined) this.lease(hash)
    const c = this.check(hash, this.deep)
    if (c.ok) this.problems.delete(hash)
    else this.problems.set(hash, c.problem)
    if (c.ok && this.leasing) this.pending?.add(hash)
    return c.ok
  }

  /** Until confirmLeases, `has()` checks without leasing (planning thousands of steps: no write each). */
  deferLeases() {
    this.pending = new Set()
  }

  /**
   * Leases every artifact `has()` found present since deferLeases, in one transaction, and returns those
   * that gc removed in the meantime (their rows are gone): whoever planned with them must plan again.
   */
  confirmLeases(): Array<string> {
    const hashes = [...(this.pending ?? [])].filter((h) => !this.leasedHere.has(h))
    this.pending = undefined
    if (hashes.length === 0) return []
    const lost = this.db.transaction(() => this.db.leaseMany(hashes, this.owner))
    for (const h of hashes) this.leasedHere.add(h)
    return lost
  }

  /** Why the last `has(hash)` said no, as a plan reason. */
  problem(hash: string): string | undefined {
    const p = this.problems.get(hash)
    if (p === undefined) return undefined
    return p === "missing from the store" || p === "not recorded in the cache database"
      ? "output missing from the store (deleted or garbage-collected)"
      : `output artifact damaged (${p})`
  }

  /**
   * Runs `f` with the rows of the artifacts it is about to check already read (planning reads them
   * with the step records: CacheDb.stepRecordsWithOutputs), and with the presence scan's verdicts when
   * there is one. Each row or verdict serves the first check of its hash inside `f` only; any other
   * check reads the database and stats the files itself.
   */
  withPrefetch<A>(rows: Map<string, ArtifactCheckRecord>, f: () => A, scan?: PresenceScan): A {
    this.prefetched = rows // taken over, not copied: each row is used up by its check
    this.scan = scan
    try {
      return f()
    } finally {
      this.prefetched = new Map()
      this.scan = undefined
    }
  }

  /** Checks an artifact against its recorded manifest; `deep` rehashes every file. */
  check(hash: string, deep: boolean): Check {
    // the presence scan found it unchanged by the same stats, a moment ago (presence-scan.ts)
    if (!deep && this.scan?.vouches(hash) === true) {
      this.prefetched.delete(hash)
      return { ok: true }
    }
    const ahead = this.prefetched.get(hash)
    if (ahead !== undefined) this.prefetched.delete(hash)
    const rec = ahead ?? this.db.artifact(hash)
    if (rec === undefined) return { ok: false, problem: "not recorded in the cache database" }
    const dir = this.artifactPath(hash)
    const manifest = rec.manifest === null ? undefined : parseManifest(rec.manifest)
    if (manifest === undefined) {
      // recorded before manifests existed: trust a directory, or rehash when asked to
      if (!fs.existsSync(dir)) return { ok: false, problem: "missing from the store" }
      if (!fs.statSync(dir).isDirectory()) return { ok: false, problem: "replaced by a plain file" }
      if (!deep) return { ok: true }
      const actual = hashTree(dir).hash
      return actual === hash ? { ok: true } : { ok: false, problem: `content hashes to ${actual.slice(0, 12)}` }
    }
    const dirs = parseDirs(rec.dirs)
    const c = checkManifest(dir, manifest, deep, dirs)
    if (c.ok) this.refresh(hash, c, dirs)
    return c
  }

  /** Records what a passing check learnt: new file signatures, and the directories' when it listed them. */
  private refresh(hash: string, c: Check & { ok: true }, recordedDirs: ReadonlyArray<DirSignature> | undefined) {
    if (c.refreshed === undefined && c.dirs === undefined) return
    this.db.transaction(() => {
      if (c.refreshed !== undefined) this.db.setManifest(hash, JSON.stringify(c.refreshed))
      // the recorded directory signatures still hold when only a file's stat moved
      const dirs = c.dirs ?? recordedDirs
      if (dirs !== undefined) this.db.setDirs(hash, dirsJson(dirs))
    })
  }

  resumeDir(key: string): string {
    return path.join(this.resumeRoot, key)
  }

  /** A fresh staging directory, named with pid and host so a sweep never judges another host's pid. */
  newStaging(key: string): string {
    const dir = this.stagingName(key)
    // one mkdir: the name is this process's own (a leftover is only possible from an earlier process
    // with the same pid, on the same host), and staging/ exists unless someone removed it
    makeFreshDir(dir)
    return dir
  }

  /** `newStaging` with its mkdir on libuv's threads (an executed step's prepare: see writeSidecarAsync). */
  async newStagingAsync(key: string): Promise<string> {
    const dir = this.stagingName(key)
    try {
      await fs.promises.mkdir(dir)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code !== "EEXIST" && code !== "ENOENT") throw e
      makeFreshDir(dir)
    }
    return dir
  }

  private stagingName(key: string): string {
    return path.join(this.stagingDir, `${key.slice(0, 16)}-${process.pid}-${++counter}@${thisHost()}`)
  }

  discard(staging: string) {
    fs.rmSync(staging, { recursive: true, force: true })
  }

  /**
   * Moves a finished staging directory into the store under its content hash and records it. When a
   * copy with that name is already there, it is kept only if it matches (its manifest, or a rehash when
   * it has none); a copy that does not match its name is quarantined and replaced.
   *
   * The reading is off the event loop: the worker pool (cache/hash.ts) hashes the files and
   * makes them read-only. The flushes go through the store's group flusher (cache/flush.ts): the files
   * and directories of every commit that flushes while another round is in flight share the next
   * round, which is one `syncfs` of the store's file system (`sync -f`, a child, so nothing here
   * blocks) when it holds many paths, else one fsync per path in parallel on libuv's threads: 100,000
   * small files cost one flush, and steps committing together share their artifacts directory's
   * fsync. Every byte is on disk before the rename makes the artifact visible, and the rename before
   * the database records it.
   */
  async commit(staging: string, kind: string, describe: Record<string, unknown>, alsoRecord?: (committed: Committed) => void): Promise<Committed> {
    return this.place(staging, await hashTreeOffThread(staging, { readOnly: true }), kind, describe, alsoRecord)
  }

  /**
   * `commit` for files whose sha256 the caller already took as it wrote them (a remote restore hashes
   * each blob as it streams in), so the commit does not read them a second time. Each file's entry holds
   * its stat after it was written and made read-only (chmod 0444): the staging tree must be exactly
   * those files, each still with that inode, size, mtime and ctime; anything else (a file added, removed,
   * rewritten or replaced since) and the whole tree is hashed as `commit` does. The manifest is still the
   * truth: the artifact's name is the merkle hash of these entries.
   */
  async commitVerified(
    staging: string,
    kind: string,
    describe: Record<string, unknown>,
    known: ReadonlyArray<FileEntry & { readonly ino: number; readonly mtimeMs: number; readonly ctimeMs: number }>
  ): Promise<Committed> {
    const listed = fs.statSync(staging).isDirectory() ? listTree(staging) : undefined
    const byRel = new Map(known.map((k) => [k.rel, k] as const))
    const same = listed !== undefined && listed.files.length === known.length && listed.files.every((rel) => {
      const k = byRel.get(rel)
      if (k === undefined) return false
      const st = fs.lstatSync(`${staging}/${rel}`)
      return st.isFile() && (st.mode & 0o222) === 0 && st.size === k.size && st.ino === k.ino && st.mtimeMs === k.mtimeMs && st.ctimeMs === k.ctimeMs
    })
    if (!same) return this.commit(staging, kind, describe)
    const entries = listed.files.map((rel) => byRel.get(rel)!)
    const tree = {
      hash: merkle(entries),
      entries: entries.map(({ rel, size, hash }) => ({ rel, size, hash })),
      bytes: entries.reduce((n, e) => n + e.size, 0),
      stats: entries,
      dirs: listed.dirs.map((d) => d[0])
    }
    return this.place(staging, tree, kind, describe)
  }

  /** The commit once the staging tree is hashed: flush, rename into place, record. */
  private async place(
    staging: string,
    tree: { readonly hash: string; readonly entries: ReadonlyArray<FileEntry>; readonly bytes: number; readonly stats: ReadonlyArray<HashedFile>; readonly dirs: ReadonlyArray<string> },
    kind: string,
    describe: Record<string, unknown>,
    alsoRecord?: (committed: Committed) => void
  ): Promise<Committed> {
    // relative paths are "/"-joined and normal already: concatenation, not path.join, for 100,000 of them
    await this.flusher.flush([...tree.entries.map((e) => `${staging}/${e.rel}`), ...tree.dirs.map((d) => (d === "" ? staging : `${staging}/${d}`))])
    const placed = this.moveIntoPlace(staging, tree, tree.stats)
    if (placed.created) await this.flusher.flush([this.artifactsDir])
    // taken once in place: the rename moved the root's ctime
    const dirs = placed.created ? dirSignaturesOf(this.artifactPath(tree.hash), tree.dirs) : undefined
    return this.record(tree, kind, describe, placed, dirs, alsoRecord)
  }

  /**
   * The commit after hashing and flushing (staging is already fsynced; `commit` fsyncs the artifacts
   * directory after the rename, off the event loop): rename into place, or adopt an identical copy.
   */
  private moveIntoPlace(
    staging: string,
    tree: { readonly hash: string; readonly entries: ReadonlyArray<FileEntry> },
    /** each entry's stat as the hashing workers left it (same order as the entries) */
    stats: ReadonlyArray<HashedFile>
  ): { readonly created: boolean; readonly manifest: ReadonlyArray<ManifestEntry> } {
    const target = this.artifactPath(tree.hash)
    this.lease(tree.hash)
    let created = false
    let manifest: ReadonlyArray<ManifestEntry> | undefined
    for (let attempt = 0; manifest === undefined; attempt++) {
      if (fs.existsSync(target) || isLink(target)) {
        manifest = this.matchingCopy(target, tree.hash, tree.entries)
        if (manifest !== undefined) {
          // identical content already stored: early cutoff in its purest form
          fs.rmSync(staging, { recursive: true, force: true })
          break
        }
        this.moveAside(target, this.quarantineDir, `${tree.hash}-${Date.now()}`)
      }
      try {
        fs.renameSync(staging, target)
        created = true
        // renaming the directory leaves its files' inode, mtime and ctime as the workers saw them
        manifest = tree.entries.map((e, i) => {
          const st = stats[i]!
          return [e.rel, e.size, e.hash, st.ino, st.mtimeMs, st.ctimeMs] as const
        })
      } catch (e) {
        // another process renamed the same content into place first: compare with its copy
        const code = (e as NodeJS.ErrnoException).code
        if (attempt > 3 || (code !== "ENOTEMPTY" && code !== "EEXIST")) throw e
      }
    }
    return { created, manifest }
  }

  /**
   * Writes a placed artifact's sidecar, then records it (its row and manifest) in one transaction with
   * what the caller records about it (`alsoRecord`: the run, the key's result, the step), so the
   * database never holds one without the other.
   */
  private async record(
    tree: { readonly hash: string; readonly entries: ReadonlyArray<FileEntry>; readonly bytes: number },
    kind: string,
    describe: Record<string, unknown>,
    { created, manifest }: { readonly created: boolean; readonly manifest: ReadonlyArray<ManifestEntry> },
    dirs: ReadonlyArray<DirSignature> | undefined,
    alsoRecord?: (committed: Committed) => void
  ): Promise<Committed> {
    const committed: Committed = { hash: tree.hash, path: this.artifactPath(tree.hash), bytes: tree.bytes, files: tree.entries.length, created }
    // off the event loop: a file made in artifacts/ waits behind the journal while other commits'
    // fsyncs run, and a synchronous write there held up every other step (a third of an executed no-op step)
    await this.writeSidecarAsync(tree.hash, { hash: tree.hash, kind, bytes: tree.bytes, files: tree.entries.length, ...describe }, created)
    // in one transaction with the commits that end in the same turn (CacheDb.batched)
    await this.db.batched(() => {
      this.db.putArtifact({
        hash: tree.hash, kind, bytes: tree.bytes, files: tree.entries.length, manifest: JSON.stringify(manifest),
        dirs: dirs === undefined ? undefined : dirsJson(dirs)
      })
      alsoRecord?.(committed)
    })
    return committed
  }

  /** The manifest of an existing copy if it holds exactly `entries`, else undefined. */
  private matchingCopy(target: string, hash: string, entries: ReadonlyArray<{ rel: string; size: number; hash: string }>): ReadonlyArray<ManifestEntry> | undefined {
    const rec = this.db.artifact(hash)
    const recorded = rec === undefined || rec.manifest === null ? undefined : parseManifest(rec.manifest)
    if (recorded !== undefined) {
      const c = checkManifest(target, recorded, this.deep, parseDirs(rec?.dirs))
      if (c.ok) return c.refreshed ?? recorded
    }
    // no trustworthy record of this copy: every file is rehashed against what we just committed
    const unsigned: Array<ManifestEntry> = entries.map((e) => [e.rel, e.size, e.hash, -1, -1, -1])
    const c = checkManifest(target, unsigned, true)
    return c.ok ? c.refreshed : undefined
  }

  /** Writes artifacts/<hash>.json unless a valid one is there (a damaged one is replaced): `cache verify --repair`. */
  writeSidecar(hash: string, content: Record<string, unknown>) {
    if (this.sidecarProblem(hash) === undefined) return
    const { sidecar, tmp, text } = this.sidecarFile(hash, content)
    fs.rmSync(sidecar, { recursive: true, force: true })
    fs.writeFileSync(tmp, text)
    fs.renameSync(tmp, sidecar)
  }

  /**
   * `writeSidecar` with its file operations on libuv's threads, for a commit. `fresh`: the artifact was
   * just renamed into place, so no valid sidecar can be there (remove() deletes both).
   */
  async writeSidecarAsync(hash: string, content: Record<string, unknown>, fresh = false) {
    if (!fresh && this.sidecarProblem(hash) === undefined) return
    const { sidecar, tmp, text } = this.sidecarFile(hash, content)
    if (!fresh) await fs.promises.rm(sidecar, { recursive: true, force: true })
    await fs.promises.writeFile(tmp, text)
    await fs.promises.rename(tmp, sidecar)
  }

  /** A sidecar's path, the temporary name it is written under first (unique in this process) and its text. */
  private sidecarFile(hash: string, content: Record<string, unknown>) {
    const sidecar = this.artifactPath(hash) + ".json"
    return { sidecar, tmp: `${sidecar}.${process.pid}.${++counter}.tmp`, text: JSON.stringify(content, null, 2) + "\n" }
  }

  /** What is wrong with an artifact's sidecar, if anything. */
  sidecarProblem(hash: string): string | undefined {
    let text: string
    try {
      text = fs.readFileSync(this.artifactPath(hash) + ".json", "utf8")
    } catch {
      return "sidecar .json missing or unreadable"
    }
    try {
      const j = JSON.parse(text) as { hash?: unknown }
      return j.hash === hash ? undefined : `sidecar .json names ${String(j.hash).slice(0, 12)}`
    } catch {
      return "sidecar .json is not valid JSON"
    }
  }

  /** Moves a store entry out of artifacts/ (one rename); returns where it went. */
  private moveAside(from: string, toDir: string, name: string): string {
    const to = path.join(toDir, `${name}-${process.pid}-${++counter}`)
    fs.renameSync(from, to)
    return to
  }

  /**
   * Deletes an artifact crash-safely: in one transaction, unless a live run leases it, forget its rows
   * and move its directory into trash/; then delete it. Returns false when a lease kept it.
   */
  remove(hash: string, options: { to?: "trash" | "quarantine" } = {}): boolean {
    const dir = this.artifactPath(hash)
    const toDir = options.to === "quarantine" ? this.quarantineDir : this.trashDir
    const moved = this.db.transaction(() => {
      if (this.db.leased(hash)) return undefined
      this.db.forgetArtifact(hash)
      const to = fs.existsSync(dir) || isLink(dir) ? this.moveAside(dir, toDir, hash) : null
      fs.rmSync(dir + ".json", { recursive: true, force: true })
      return to
    })
    if (moved === undefined) return false
    if (moved !== null && toDir === this.trashDir) rmQuietly(moved)
    return true
  }

  /** Quarantines an artifact (verify --repair): forgotten, moved aside for a look, rebuilt by the next run. */
  quarantine(hash: string): boolean {
    return this.remove(hash, { to: "quarantine" })
  }

  /** Deletes whatever a crashed deletion left in trash/. */
  sweepTrash() {
    for (const name of safeReaddir(this.trashDir)) rmQuietly(path.join(this.trashDir, name))
  }

  /**
   * Removes staging directories left by processes that died (kill -9 mid-step). A directory of another
   * host's process is judged by that process's heartbeat, never by this host's process table.
   */
  sweepStaging() {
    for (const name of safeReaddir(this.stagingDir)) {
      // the key part may be any name without "@" (a remote restore's is `remote-<hash>`)
      const m = /^[^@]*-(\d+)-\d+(?:@(.+))?$/.exec(name)
      const p = path.join(this.stagingDir, name)
      if (m === null) {
        rmQuietly(p)
        continue
      }
      let since: number
      try {
        since = fs.statSync(p).mtimeMs / 1000
      } catch {
        continue
      }
      if (!this.db.alive(Number(m[1]), m[2] ?? "", since)) rmQuietly(p)
    }
  }

  logPath(session: number, step: string): string {
    const dir = path.join(this.logsDir, String(session))
    // made once per session, not once per step (a directory operation is a journal write each)
    if (!this.logDirs.has(dir)) {
      fs.mkdirSync(dir, { recursive: true })
      this.logDirs.add(dir)
    }
    return path.join(dir, step.replace(/[/:]/g, "_") + ".log")
  }

  /** Content hash of a source file or directory, using the (path, size, mtime, inode) cache (not under --verify). */
  hashSource(p: string): { hash: string; bytes: number } {
    const matched = fs.existsSync(p) ? undefined : globMatches(p)
    if (!fs.existsSync(p) && (matched === undefined || matched.length === 0)) {
      throw new SourceError({ message: matched === undefined ? `source not found: ${p}` : `source ${p}: the glob matches no file`, path: p })
    }
    try {
      const hashOne = (one: string) => hashTree(one, (file, st) => {
        const mtime = String(st.mtimeMs)
        const cached = this.deep ? undefined : this.db.fileStat(file, st.size, mtime, String(st.ino))
        if (cached !== undefined) return cached
        const h = hashFile(file)
        this.db.putFileStat(file, st.size, mtime, String(st.ino), h)
        return h
      })
      if (matched !== undefined) {
        // a glob of dataset shards (steps/data/jsonl.ts datasetFiles reads the same files): the matched
        // names and their contents
        const trees = matched.map((f) => [path.basename(f), hashOne(f)] as const)
        return { hash: sha256(canonicalJson(trees.map(([n, t]) => [n, t.hash]))), bytes: trees.reduce((a, [, t]) => a + t.bytes, 0) }
      }
      const tree = hashOne(p)
      return { hash: tree.hash, bytes: tree.bytes }
    } catch (e) {
      if (e instanceof CacheError) throw e
      throw new SourceError({ message: `cannot read source ${p}: ${(e as Error).message}`, path: p, cause: e })
    }
  }

  /**
   * `hashSource` with the reading on the hashing workers (cache/hash.ts): the walk, the stats and the
   * stat cache stay here; the files the cache does not vouch for are read and hashed off the event loop,
   * on every core, so the live view keeps moving while a new multi-GB source is hashed. The same hash
   * as `hashSource` (a test holds them equal). A file is put in the stat cache only when it did not
   * change while it was read.
   */
  async hashSourceOffThread(p: string): Promise<{ hash: string; bytes: number }> {
    const matched = fs.existsSync(p) ? undefined : globMatches(p)
    if (!fs.existsSync(p) && (matched === undefined || matched.length === 0)) {
      throw new SourceError({ message: matched === undefined ? `source not found: ${p}` : `source ${p}: the glob matches no file`, path: p })
    }
    const hashOne = async (one: string) => {
      const files = fs.statSync(one).isDirectory()
        ? listFiles(one).map((rel) => ({ rel, abs: path.join(one, rel) }))
        : [{ rel: path.basename(one), abs: one }]
      const stats = files.map(({ abs }) => fs.statSync(abs))
      const hashes: Array<string | undefined> = files.map(({ abs }, i) =>
        this.deep ? undefined : this.db.fileStat(abs, stats[i]!.size, String(stats[i]!.mtimeMs), String(stats[i]!.ino)))
      const todo = hashes.flatMap((h, i) => (h === undefined ? [i] : []))
      const fresh = await hashFilesOffThread(todo.map((i) => ({ abs: files[i]!.abs, size: stats[i]!.size })))
      this.db.transaction(() => {
        todo.forEach((i, k) => {
          const st = stats[i]!
          const got = fresh[k]!
          hashes[i] = got.hash
          if (got.size === st.size && got.mtimeMs === st.mtimeMs && got.ino === st.ino) {
            this.db.putFileStat(files[i]!.abs, st.size, String(st.mtimeMs), String(st.ino), got.hash)
          }
        })
      })
      const entries = files.map(({ rel }, i) => ({ rel, size: stats[i]!.size, hash: hashes[i]! }))
      return { hash: merkle(entries), bytes: stats.reduce((a, st) => a + st.size, 0) }
    }
    try {
      if (matched !== undefined) {
        const trees = await Promise.all(matched.map(async (f) => [path.basename(f), await hashOne(f)] as const))
        return { hash: sha256(canonicalJson(trees.map(([n, t]) => [n, t.hash]))), bytes: trees.reduce((a, [, t]) => a + t.bytes, 0) }
      }
      return await hashOne(p)
    } catch (e) {
      if (e instanceof CacheError) throw e
      throw new SourceError({ message: `cannot read source ${p}: ${(e as Error).message}`, path: p, cause: e })
    }
  }

  /** Bytes held by artifacts, from the database (cheap; `cache verify` is the expensive check). */
  bytes(): number {
    return this.db.artifactBytes()
  }
}

/**
 * The files a dataset glob source names (wildcards in its last component only, as steps/data/jsonl.ts
 * reads them), or undefined when the path has no wildcard.
 */
const globMatches = (p: string): Array<string> | undefined => {
  const base = path.basename(p)
  if (!/[*?[]/.test(base)) return undefined
  const re = new RegExp("^" + base.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$")
  let names: Array<string>
  try {
    names = fs.readdirSync(path.dirname(p))
  } catch {
    return []
  }
  return names.filter((n) => re.test(n) && /\.(jsonl(\.gz)?|parquet)$/.test(n)).sort().map((n) => path.join(path.dirname(p), n))
    .filter((f) => fs.statSync(f).isFile())
}

const isLink = (p: string): boolean => {
  try {
    return fs.lstatSync(p).isSymbolicLink()
  } catch {
    return false
  }
}

export const safeReaddir = (dir: string): Array<string> => {
  try {
    return fs.readdirSync(dir)
  } catch {
    return []
  }
}

/**
 * The cache database: SQLite (node:sqlite, through ./sqlite.ts) in WAL mode (readers never block the one writer; a crash mid-write
 * rolls back). Every call from outside code is wrapped so a broken or foreign file becomes a CacheError
 * with the path and a way out, never a stack trace.
 *
 * node:sqlite is synchronous, which suits the engine: each call is a few microseconds, and the
 * 10,000-step null rerun stays far under a second because lookups are prepared statements.
 */
import * as Effect from "effect/Effect"
import { Database } from "./sqlite.ts"
import { CacheError } from "./errors.ts"
import { holderAlive, thisHost } from "./liveness.ts"
import { migrations } from "./schema.ts"

export interface StepRecord {
  readonly recipe: string
  readonly step: string
  readonly kind: string
  readonly key: string
  readonly trace: string
  readonly output: string
  readonly run_id: number | null
  readonly built_session: number
  readonly changed_session: number
  readonly seconds: number
  readonly fingerprint: string | null
}

export interface RunRecord {
  readonly id: number
  readonly session_id: number
  readonly recipe: string
  readonly step: string
  readonly kind: string
  readonly key: string
  readonly status: "running" | "ran" | "failed" | "interrupted"
  readonly started_at: number
  readonly ended_at: number | null
  readonly seconds: number | null
  readonly output: string | null
  readonly metrics: string
  readonly log_path: string | null
  readonly trace: string
  readonly error: string | null
  readonly pid: number
  readonly gpus: string
  readonly host: string
}

export interface ArtifactRecord {
  readonly hash: string
  readonly kind: string
  readonly bytes: number
  readonly files: number
  readonly created_at: number
  readonly used_at: number
  /** JSON manifest (cache/manifest.ts); null for artifacts recorded before manifests existed */
  readonly manifest: string | null
  /** JSON directory signatures (cache/manifest.ts); null until first recorded */
  readonly dirs: string | null
}

/** The columns of an artifact's row that a presence check reads. */
export type ArtifactCheckRecord = Pick<ArtifactRecord, "hash" | "manifest" | "dirs">

/**
 * A recipe's step records with their outputs' manifest rows, one row each, as arrays (StepRecordRow):
 * what a plan reads (CacheDb.stepRecordsWithOutputs), and what the presence scan reads for it on its
 * worker thread (presence-scan.ts) while the recipe loads.
 */
export const STEP_RECORDS_WITH_OUTPUTS = `SELECT s.step, s.kind, s.key, s.trace, s.output, s.run_id, s.built_session,
    s.changed_session, s.seconds, s.fingerprint, a.hash IS NOT NULL, a.manifest, a.dirs
  FROM steps s LEFT JOIN artifacts a ON a.hash = s.output WHERE s.recipe = ?`

/**
 * A row of STEP_RECORDS_WITH_OUTPUTS. The recipe (the query's parameter) and the artifact's hash (the
 * output, when `recorded`) are not read back: 20,000 strings fewer in a plan of 10,000 steps.
 */
export type StepRecordRow = readonly [
  step: string, kind: string, key: string, trace: string, output: string, run_id: number | null,
  built_session: number, changed_session: number, seconds: number, fingerprint: string | null,
  recorded: number, manifest: string | null, dirs: string | null
]

export interface RecordsWithOutputs {
  /** step id -> its record */
  readonly records: Map<string, StepRecord>
  /** output hash -> its manifest row (none for an output no longer recorded) */
  readonly outputs: Map<string, ArtifactCheckRecord>
}

export const recordsWithOutputs = (recipe: string, rows: ReadonlyArray<StepRecordRow>): RecordsWithOutputs => {
  const records = new Map<string, StepRecord>()
  const outputs = new Map<string, ArtifactCheckRecord>()
  // indexed, not destructured: unoptimised array destructuring calls an iterator per column
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!
    const output = r[4]
    records.set(r[0], {
      recipe, step: r[0], kind: r[1], key: r[2], trace: r[3], output, run_id: r[5],
      built_session: r[6], changed_session: r[7], seconds: r[8], fingerprint: r[9]
    })
    if (r[10] === 1) outputs.set(output, { hash: output, manifest: r[11], dirs: r[12] })
  }
  return { records, outputs }
}

export interface LeaseRecord {
  readonly hash: string
  readonly owner: string
  readonly pid: number
  readonly host: string
  readonly acquired_at: number
}

/** Who holds a row of lease_sets (its hashes are not read back). */
interface LeaseSetHolder {
  readonly id: number
  readonly owner: string
  readonly pid: number
  readonly host: string
  readonly acquired_at: number
}

export interface LockHolder {
  readonly key: string
  readonly pid: number
  readonly host: string
  readonly step: string
  readonly recipe: string
  readonly acquired_at: number
}

const now = () => Date.now() / 1000

/**
 * Turns on WAL (kept in the file, so once per database). The switch takes an exclusive lock, and SQLite
 * answers "database is locked" at once instead of waiting when other processes opened the new file at
 * the same moment (two runs started together on a fresh store): retried here for the busy timeout.
 */
const walMode = (db: Database) => {
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      db.pragma("journal_mode = WAL")
      return
    } catch (e) {
      if (!/locked|busy/i.test(e instanceof Error ? e.message : String(e)) || Date.now() > deadline) throw e
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5 + Math.random() * 20)
    }
  }
}

export class CacheDb {
  private readonly db: Database
  private readonly stmts: ReturnType<CacheDb["prepare"]>

  constructor(readonly file: string) {
    this.db = this.guard("open", () => {
      const db = new Database(file, { timeout: 10_000 })
      walMode(db)
      db.pragma("synchronous = NORMAL")
      db.pragma("foreign_keys = ON")
      // SQLite's page cache defaults to 2 MB, less than a 10,000-step recipe's rows and their outputs'
      // manifests (~19 MB): a null rerun's one joined read then fetched 18,500 pages with a read(2) each,
      // most of them several times. It grows only as pages are read.
      db.pragma("cache_size = -65536")
      return db
    })
    this.guard("migrate", () => this.migrate())
    this.stmts = this.guard("prepare", () => this.prepare())
  }

  /**
   * Calls of this database as an Effect: what they fail with (always a CacheError: `guard`) is in the
   * error channel; anything else thrown inside `f` is a bug, a defect.
   */
  attempt<A>(f: (db: this) => A): Effect.Effect<A, CacheError> {
    return Effect.suspend(() => {
      try {
        return Effect.succeed(f(this))
      } catch (e) {
        return e instanceof CacheError ? Effect.fail(e) : Effect.die(e)
      }
    })
  }

  /** Runs f, turning any SQLite error into a CacheError naming the database file. */
  guard<A>(what: string, f: () => A): A {
    try {
      return f()
    } catch (e) {
      if (e instanceof CacheError) throw e
      const msg = e instanceof Error ? e.message : String(e)
      const corrupt = /not a database|malformed|corrupt/i.test(msg)
      throw new CacheError({
        message: corrupt
          ? `cache database ${this.file} is corrupt (${msg}); move it away to start a fresh cache (artifacts in the store stay valid)`
          : `cache database ${this.file}: ${what} failed: ${msg}`,
        path: this.file,
        cause: e
      })
    }
  }

  private migrate() {
    this.db.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    const schemaVersion = (): number => {
      const row = this.db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined
      const version = row === undefined ? 0 : Number(row.value)
      if (version > migrations.length) {
        throw new CacheError({
          message: `cache database ${this.file} has schema version ${version}, newer than this anneal understands (${migrations.length}): upgrade anneal`,
          path: this.file
        })
      }
      return version
    }
    if (schemaVersion() === migrations.length) return
    this.db.transaction(() => {
      // read again under the write lock: two runs opening a new store at once both found it unmigrated,
      // and the second, once the first had migrated, ran the migrations again ("table already exists")
      const version = schemaVersion()
      if (version === migrations.length) return
      for (let v = version; v < migrations.length; v++) this.db.exec(migrations[v]!)
      this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)").run(String(migrations.length))
    }).immediate()
  }

  private prepare() {
    const db = this.db
    return {
      startSession: db.prepare("INSERT INTO sessions (recipe, started_at, status, pid, argv, host) VALUES (?, ?, 'running', ?, ?, ?)"),
      endSession: db.prepare("UPDATE sessions SET ended_at = ?, status = ? WHERE id = ?"),
      startRun: db.prepare(
        "INSERT INTO runs (session_id, recipe, step, kind, key, status, started_at, log_path, trace, pid, gpus, host) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)"
      ),
      finishRun: db.prepare(
        "UPDATE runs SET status = ?, ended_at = ?, seconds = ?, output = ?, metrics = ?, error = ? WHERE id = ?"
      ),
      result: db.prepare("SELECT output, seconds, run_id FROM results WHERE key = ?"),
      putResult: db.prepare(
        "INSERT OR REPLACE INTO results (key, output, run_id, seconds, created_at) VALUES (?, ?, ?, ?, ?)"
      ),
      stepRecord: db.prepare("SELECT * FROM steps WHERE recipe = ? AND step = ?"),
      stepRecords: db.prepare("SELECT * FROM steps WHERE recipe = ?"),
      putStep: db.prepare(`INSERT INTO steps (recipe, step, kind, key, trace, output, run_id, built_session, changed_session, seconds, fingerprint)
        VALUES (@recipe, @step, @kind, @key, @trace, @output, @run_id, @built_session, @changed_session, @seconds, @fingerprint)
        ON CONFLICT (recipe, step) DO UPDATE SET kind = excluded.kind, key = excluded.key, trace = excluded.trace,
          output = excluded.output, run_id = excluded.run_id, built_session = excluded.built_session,
          changed_session = excluded.changed_session, seconds = excluded.seconds, fingerprint = excluded.fingerprint`),
      putArtifact: db.prepare(`INSERT INTO artifacts (hash, kind, bytes, files, created_at, used_at, manifest, dirs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (hash) DO UPDATE SET used_at = excluded.used_at, manifest = coalesce(excluded.manifest, manifest),
          dirs = CASE WHEN excluded.manifest IS NULL THEN dirs ELSE excluded.dirs END`),
      setManifest: db.prepare("UPDATE artifacts SET manifest = ? WHERE hash = ?"),
      setDirs: db.prepare("UPDATE artifacts SET dirs = ? WHERE hash = ?"),
      touchArtifact: db.prepare("UPDATE artifacts SET used_at = ? WHERE hash = ?"),
      artifact: db.prepare("SELECT * FROM artifacts WHERE hash = ?"),
      artifacts: db.prepare("SELECT * FROM artifacts ORDER BY used_at DESC"),
      stepRecordsWithOutputs: db.prepare(STEP_RECORDS_WITH_OUTPUTS, { arrays: true }),
      artifactBytes: db.prepare("SELECT COALESCE(SUM(bytes), 0) AS bytes FROM artifacts"),
      deleteArtifact: db.prepare("DELETE FROM artifacts WHERE hash = ?"),
      deleteResultsFor: db.prepare("DELETE FROM results WHERE output = ?"),
      fileStat: db.prepare("SELECT hash FROM file_stats WHERE path = ? AND size = ? AND mtime_ns = ? AND ino = ?"),
      putFileStat: db.prepare("INSERT OR REPLACE INTO file_stats (path, size, mtime_ns, ino, hash) VALUES (?, ?, ?, ?, ?)"),
      lock: db.prepare("SELECT * FROM locks WHERE key = ?"),
      insertLock: db.prepare("INSERT INTO locks (key, pid, host, step, recipe, acquired_at) VALUES (?, ?, ?, ?, ?, ?)"),
      deleteLock: db.prepare("DELETE FROM locks WHERE key = ? AND pid = ? AND host = ?"),
      deleteLockAny: db.prepare("DELETE FROM locks WHERE key = ?"),
      allLocks: db.prepare("SELECT * FROM locks"),
      runningRuns: db.prepare("SELECT id, pid, host, started_at FROM runs WHERE status = 'running'"),
      markCrashed: db.prepare(
        "UPDATE runs SET status = 'interrupted', ended_at = ?, error = 'the anneal process died while this step ran' WHERE id = ?"
      ),
      lastRun: db.prepare("SELECT * FROM runs WHERE recipe = ? AND step = ? ORDER BY id DESC LIMIT 1"),
      lastRunOfKey: db.prepare("SELECT * FROM runs WHERE key = ? ORDER BY id DESC LIMIT 1"),
      run: db.prepare("SELECT * FROM runs WHERE id = ?"),
      referenced: db.prepare("SELECT DISTINCT output FROM steps"),
      stepOutputs: db.prepare("SELECT recipe, step, output FROM steps ORDER BY recipe, step"),
      danglingResults: db.prepare("SELECT key, output FROM results WHERE output NOT IN (SELECT hash FROM artifacts)"),
      deleteResult: db.prepare("DELETE FROM results WHERE key = ?"),
      lastRunWithOutput: db.prepare("SELECT * FROM runs WHERE output = ? ORDER BY id DESC LIMIT 1"),
      heartbeat: db.prepare(`INSERT INTO processes (pid, host, started_at, heartbeat_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (pid, host) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`),
      processRow: db.prepare("SELECT heartbeat_at FROM processes WHERE pid = ? AND host = ?"),
      allProcesses: db.prepare("SELECT pid, host, heartbeat_at FROM processes"),
      deleteProcess: db.prepare("DELETE FROM processes WHERE pid = ? AND host = ?"),
      lease: db.prepare("INSERT OR IGNORE INTO leases (hash, owner, pid, host, acquired_at) VALUES (?, ?, ?, ?, ?)"),
      leaseSet: db.prepare("INSERT INTO lease_sets (owner, pid, host, acquired_at, hashes) VALUES (?, ?, ?, ?, ?)"),
      // hashes are hex, so the quoted hash is found in a set's JSON text only as that element
      leaseSetsOf: db.prepare("SELECT id, owner, pid, host, acquired_at FROM lease_sets WHERE instr(hashes, ?) > 0"),
      allLeaseSets: db.prepare("SELECT id, owner, pid, host, acquired_at FROM lease_sets"),
      deleteLeaseSet: db.prepare("DELETE FROM lease_sets WHERE id = ?"),
      releaseOwnerSets: db.prepare("DELETE FROM lease_sets WHERE owner = ?"),
      unrecorded: db.prepare("SELECT value AS hash FROM json_each(?) WHERE value NOT IN (SELECT hash FROM artifacts)"),
      leasesOf: db.prepare("SELECT * FROM leases WHERE hash = ?"),
      allLeases: db.prepare("SELECT * FROM leases"),
      deleteLease: db.prepare("DELETE FROM leases WHERE hash = ? AND owner = ?"),
      releaseOwner: db.prepare("DELETE FROM leases WHERE owner = ?"),
      recipes: db.prepare("SELECT recipe, COUNT(*) AS steps, MAX(built_session) AS session FROM steps GROUP BY recipe")
    }
  }

  close() {
    try {
      this.db.close()
    } catch {
      // closing twice or after a failed open is harmless
    }
  }

  transaction<A>(f: () => A): A {
    return this.guard("transaction", () => this.db.transaction(f).immediate())
  }

  /** calls waiting for the next shared transaction (`batched`) */
  private batch: Array<{ readonly f: () => unknown; readonly done: (r: { ok: true; value: unknown } | { ok: false; error: unknown }) => void }> = []

  /**
   * `f` in a transaction shared with the other `batched` calls made in the same turn of the event loop
   * (group commit, as the store's flushes): steps whose commits end together record in one write of the
   * pages they share (the runs, results and steps tables' last pages, their indexes) instead of one each.
   * Each `f` runs under its own savepoint: one that throws is rolled back alone and rejects alone; a
   * transaction that cannot commit rejects them all. Resolves once the transaction has committed.
   */
  batched<A>(f: () => A): Promise<A> {
    return new Promise<A>((resolve, reject) => {
      this.batch.push({ f, done: (r) => (r.ok ? resolve(r.value as A) : reject(r.error)) })
      if (this.batch.length === 1) setImmediate(() => this.commitBatch())
    })
  }

  private commitBatch() {
    const calls = this.batch
    this.batch = []
    let outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>
    try {
      outcomes = this.transaction(() =>
        calls.map((c) => {
          try {
            return { ok: true as const, value: this.db.transaction(c.f)() }
          } catch (error) {
            return { ok: false as const, error }
          }
        }))
    } catch (error) {
      for (const c of calls) c.done({ ok: false, error })
      return
    }
    calls.forEach((c, i) => c.done(outcomes[i]!))
  }

  integrityCheck(): string {
    return this.guard("integrity check", () => String(this.db.pragma("integrity_check", { simple: true })))
  }

  // sessions and runs ------------------------------------------------------------------------

  startSession(recipe: string, argv: ReadonlyArray<string>): number {
    return this.guard("start session", () =>
      Number(this.stmts.startSession.run(recipe, now(), process.pid, JSON.stringify(argv), thisHost()).lastInsertRowid))
  }

  endSession(id: number, status: string) {
    this.guard("end session", () => this.stmts.endSession.run(now(), status, id))
  }

  startRun(r: {
    session: number
    recipe: string
    step: string
    kind: string
    key: string
    logPath: string
    trace: string
    gpus: ReadonlyArray<number>
  }): number {
    return this.guard("record run", () =>
      Number(
        this.stmts.startRun.run(r.session, r.recipe, r.step, r.kind, r.key, now(), r.logPath, r.trace, process.pid, JSON.stringify(r.gpus), thisHost())
          .lastInsertRowid
      ))
  }

  finishRun(id: number, r: { status: "failed" | "interrupted" | "ran"; seconds: number; output: string | null; metrics: object; error: string | null }) {
    this.guard("finish run", () =>
      this.stmts.finishRun.run(r.status, now(), r.seconds, r.output, JSON.stringify(r.metrics), r.error, id))
  }

  /**
   * Runs left "running" by a process that died (kill -9, power loss) become "interrupted"; locks, leases
   * and process rows of dead holders are dropped. A pid from another host is judged by its heartbeat
   * only (cache/liveness.ts), never by this host's process table.
   */
  recoverCrashed(): number {
    return this.guard("recover", () => {
      let n = 0
      this.db.transaction(() => {
        for (const r of this.stmts.runningRuns.all() as Array<{ id: number; pid: number; host: string; started_at: number }>) {
          if (!this.alive(r.pid, r.host, r.started_at)) {
            this.stmts.markCrashed.run(now(), r.id)
            n++
          }
        }
        for (const l of this.stmts.allLocks.all() as Array<LockHolder>) {
          if (!this.alive(l.pid, l.host, l.acquired_at)) this.stmts.deleteLockAny.run(l.key)
        }
        for (const l of this.stmts.allLeases.all() as Array<LeaseRecord>) {
          if (!this.alive(l.pid, l.host, l.acquired_at)) this.stmts.deleteLease.run(l.hash, l.owner)
        }
        for (const l of this.stmts.allLeaseSets.all() as Array<LeaseSetHolder>) {
          if (!this.alive(l.pid, l.host, l.acquired_at)) this.stmts.deleteLeaseSet.run(l.id)
        }
        for (const p of this.stmts.allProcesses.all() as Array<{ pid: number; host: string; heartbeat_at: number }>) {
          if (!holderAlive(p.pid, p.host, p.heartbeat_at)) this.stmts.deleteProcess.run(p.pid, p.host)
        }
      }).immediate()
      return n
    })
  }

  /** Whether a holder is alive: its pid on this host, its heartbeat (else `since`) on another. */
  alive(pid: number, host: string, since: number): boolean {
    if (host === "" || host === thisHost()) return holderAlive(pid, host, undefined)
    const row = this.guard("look up process", () => this.stmts.processRow.get(pid, host) as { heartbeat_at: number } | undefined)
    return holderAlive(pid, host, row?.heartbeat_at ?? since)
  }

  // processes and leases: what live runs need, so gc leaves it alone -------------------------------

  /** Records (or refreshes) this process's heartbeat. */
  heartbeat(startedAt: number) {
    this.guard("heartbeat", () => this.stmts.heartbeat.run(process.pid, thisHost(), startedAt, now()))
  }

  endProcess() {
    this.guard("end process", () => this.stmts.deleteProcess.run(process.pid, thisHost()))
  }

  lease(hash: string, owner: string) {
    this.guard("lease artifact", () => this.stmts.lease.run(hash, owner, process.pid, thisHost(), now()))
  }

  /**
   * Leases many artifacts (planning thousands of cached steps) in one row of lease_sets, and returns
   * those the database no longer records (gc removed them since they were checked). Call inside a
   * transaction.
   */
  leaseMany(hashes: ReadonlyArray<string>, owner: string): Array<string> {
    return this.guard("lease artifacts", () => {
      const list = JSON.stringify(hashes)
      this.stmts.leaseSet.run(owner, process.pid, thisHost(), now(), list)
      return (this.stmts.unrecorded.all(list) as Array<{ hash: string }>).map((r) => r.hash)
    })
  }

  releaseLeases(owner: string) {
    this.guard("release leases", () => {
      this.stmts.releaseOwner.run(owner)
      this.stmts.releaseOwnerSets.run(owner)
    })
  }

  /** Whether a live run holds a lease on the artifact; leases of dead holders are broken on the way. */
  leased(hash: string): boolean {
    return this.guard("check leases", () => {
      let live = false
      for (const l of this.stmts.leasesOf.all(hash) as Array<LeaseRecord>) {
        if (this.alive(l.pid, l.host, l.acquired_at)) live = true
        else this.stmts.deleteLease.run(l.hash, l.owner)
      }
      for (const l of this.stmts.leaseSetsOf.all(JSON.stringify(hash)) as Array<LeaseSetHolder>) {
        if (this.alive(l.pid, l.host, l.acquired_at)) live = true
        else this.stmts.deleteLeaseSet.run(l.id)
      }
      return live
    })
  }

  // results and step records ------------------------------------------------------------------

  result(key: string): { output: string; seconds: number; run_id: number } | undefined {
    return this.guard("look up result", () => this.stmts.result.get(key) as { output: string; seconds: number; run_id: number } | undefined)
  }

  stepRecord(recipe: string, step: string): StepRecord | undefined {
    return this.guard("look up step", () => this.stmts.stepRecord.get(recipe, step) as StepRecord | undefined)
  }

  stepRecords(recipe: string): Map<string, StepRecord> {
    return this.guard("load steps", () => {
      const m = new Map<string, StepRecord>()
      for (const r of this.stmts.stepRecords.all(recipe) as Array<StepRecord>) m.set(r.step, r)
      return m
    })
  }

  putStep(r: StepRecord) {
    this.guard("record step", () => this.stmts.putStep.run(r))
  }

  putResult(key: string, output: string, runId: number, seconds: number) {
    this.guard("record result", () => this.stmts.putResult.run(key, output, runId, seconds, now()))
  }

  lastRun(recipe: string, step: string): RunRecord | undefined {
    return this.guard("look up run", () => this.stmts.lastRun.get(recipe, step) as RunRecord | undefined)
  }

  run(id: number): RunRecord | undefined {
    return this.guard("look up run", () => this.stmts.run.get(id) as RunRecord | undefined)
  }

  // artifacts ---------------------------------------------------------------------------------

  /** Records an artifact; a row given a manifest takes its `dirs` too (null: the next check lists them). */
  putArtifact(a: { hash: string; kind: string; bytes: number; files: number; manifest?: string | undefined; dirs?: string | undefined }) {
    this.guard("record artifact", () =>
      this.stmts.putArtifact.run(a.hash, a.kind, a.bytes, a.files, now(), now(), a.manifest ?? null, a.manifest === undefined ? null : (a.dirs ?? null)))
  }

  /** A new manifest: the directory signatures recorded with the old one no longer vouch for it. */
  setManifest(hash: string, manifest: string) {
    this.guard("record manifest", () => {
      this.stmts.setManifest.run(manifest, hash)
      this.stmts.setDirs.run(null, hash)
    })
  }

  setDirs(hash: string, dirs: string) {
    this.guard("record directories", () => this.stmts.setDirs.run(dirs, hash))
  }

  touchArtifact(hash: string) {
    this.guard("touch artifact", () => this.stmts.touchArtifact.run(now(), hash))
  }

  artifact(hash: string): ArtifactRecord | undefined {
    return this.guard("look up artifact", () => this.stmts.artifact.get(hash) as ArtifactRecord | undefined)
  }

  /**
   * The recipe's step records and, from the same query, what a presence check reads of their outputs
   * (manifest and directory signatures; none for an output no longer recorded): a null rerun checks
   * every step's output, and one lookup each was a fifth of its time.
   */
  stepRecordsWithOutputs(recipeId: string): RecordsWithOutputs {
    return this.guard("load steps", () => recordsWithOutputs(recipeId, this.stmts.stepRecordsWithOutputs.all(recipeId) as Array<StepRecordRow>))
  }

  /** Bytes held by all recorded artifacts. */
  artifactBytes(): number {
    return this.guard("sum artifacts", () => Number((this.stmts.artifactBytes.get() as { bytes: number }).bytes))
  }

  artifacts(): Array<ArtifactRecord> {
    return this.guard("list artifacts", () => this.stmts.artifacts.all() as Array<ArtifactRecord>)
  }

  /** Forgets an artifact and every result that points at it (so nothing restores a deleted directory). */
  forgetArtifact(hash: string) {
    this.guard("forget artifact", () => {
      this.stmts.deleteResultsFor.run(hash)
      this.stmts.deleteArtifact.run(hash)
    })
  }

  referencedOutputs(): Set<string> {
    return this.guard("list references", () => new Set((this.stmts.referenced.all() as Array<{ output: string }>).map((r) => r.output)))
  }

  /** Every (recipe, step) whose latest state references an artifact. */
  stepOutputs(): Array<{ recipe: string; step: string; output: string }> {
    return this.guard("list references", () => this.stmts.stepOutputs.all() as Array<{ recipe: string; step: string; output: string }>)
  }

  /** Constructive-trace rows that point at an artifact the database does not record. */
  danglingResults(): Array<{ key: string; output: string }> {
    return this.guard("check references", () => this.stmts.danglingResults.all() as Array<{ key: string; output: string }>)
  }

  deleteResult(key: string) {
    this.guard("delete result", () => this.stmts.deleteResult.run(key))
  }

  lastRunOfKey(key: string): RunRecord | undefined {
    return this.guard("look up run", () => this.stmts.lastRunOfKey.get(key) as RunRecord | undefined)
  }

  lastRunWithOutput(hash: string): RunRecord | undefined {
    return this.guard("look up run", () => this.stmts.lastRunWithOutput.get(hash) as RunRecord | undefined)
  }

  recipes(): Array<{ recipe: string; steps: number; session: number }> {
    return this.guard("list recipes", () => this.stmts.recipes.all() as Array<{ recipe: string; steps: number; session: number }>)
  }

  // the file-stat cache -------------------------------------------------------------------------

  fileStat(p: string, size: number, mtimeNs: string, ino: string): string | undefined {
    const row = this.guard("stat cache", () => this.stmts.fileStat.get(p, size, mtimeNs, ino) as { hash: string } | undefined)
    return row?.hash
  }

  putFileStat(p: string, size: number, mtimeNs: string, ino: string, hash: string) {
    this.guard("stat cache", () => this.stmts.putFileStat.run(p, size, mtimeNs, ino, hash))
  }

  // locks: one builder per key across processes ---------------------------------------------------

  /** Takes the build lock of a key, or returns who holds it. A holder that died is replaced. */
  tryLock(key: string, step: string, recipe: string): LockHolder | null {
    return this.transaction(() => {
      const held = this.stmts.lock.get(key) as LockHolder | undefined
      if (held !== undefined) {
        if (held.pid === process.pid && held.host === thisHost()) return null
        if (this.alive(held.pid, held.host, held.acquired_at)) return held
        this.stmts.deleteLockAny.run(key)
      }
      this.stmts.insertLock.run(key, process.pid, thisHost(), step, recipe, now())
      return null
    })
  }

  unlock(key: string) {
    this.guard("unlock", () => this.stmts.deleteLock.run(key, process.pid, thisHost()))
  }

  /** The build locks whose holders are alive: what live runs are building (gc: the request cache). */
  liveLocks(): Array<LockHolder> {
    return this.guard("list locks", () =>
      (this.stmts.allLocks.all() as Array<LockHolder>).filter((l) => this.alive(l.pid, l.host, l.acquired_at)))
  }

  /** The live holder of a key's build lock, if any (gc keeps that key's checkpoint). */
  lockHolder(key: string): LockHolder | undefined {
    return this.guard("look up lock", () => {
      const held = this.stmts.lock.get(key) as LockHolder | undefined
      return held !== undefined && this.alive(held.pid, held.host, held.acquired_at) ? held : undefined
    })
  }
}

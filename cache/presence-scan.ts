/**
 * The presence scan: the checks of a recipe's recorded outputs (cache/manifest.ts, a stat per directory
 * and per file), made on a worker thread while the main thread loads and validates the recipe. A plan of
 * 10,000 cached steps otherwise makes its 20,000 stat calls itself, between reading the records and
 * deciding; started before the recipe is imported, the scan has its verdicts ready by then.
 *
 * The worker reads the plan's rows itself (its own read-only connection, the plan's own query: the
 * recipe's step records with their outputs' manifest rows) and sends them first: a plan that starts after
 * they arrived takes them instead of querying (a third of a null rerun's plan was that query); one that
 * starts before reads its own. Then it checks, and can only vouch: it reports the artifacts whose every directory and file still has the
 * recorded stat signature, the case in which the main thread's check would pass without listing or
 * rehashing anything (`unchangedByStat`, whose source the worker runs). Anything else (a moved stat, a
 * missing file, a row without signatures) is left to the plan's own check, which says what is wrong.
 *
 * A verdict serves the first check of its hash in the plan it was made for, and only while the scan is
 * open: it describes the store when the scan ran, and a lease (taken right after the plan) is what keeps
 * gc from the artifact afterwards; if gc removed one in between, the plan is made again without the scan
 * (plan.ts `planSteps`). Results arrive in chunks and are looked for as the plan goes, never waited for:
 * a plan that gets ahead of the worker checks the rest itself.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import type { MessagePort, Worker } from "node:worker_threads"
import { STEP_RECORDS_WITH_OUTPUTS } from "./db.ts"
import type { StepRecordRow } from "./db.ts"
import { RACY_MS, trustedDirs, unchangedByStat } from "./manifest.ts"
import { migrations } from "./schema.ts"

/** Verdicts are sent in chunks of this many, so a plan that catches up with the worker uses what is done. */
const CHUNK = 1024

const workerSource = `
"use strict"
// tsx keeps function names with a helper; the functions below may carry calls to it
var __name = (f) => f
const { workerData } = require("node:worker_threads")
const fs = require("node:fs")
const { DatabaseSync } = require("node:sqlite")
const unchangedByStat = (${unchangedByStat.toString()})
const trustedDirs = (${trustedDirs.toString()})
const stat = (p) => {
  try {
    return fs.statSync(p, { throwIfNoEntry: false })
  } catch {
    return undefined
  }
}
const { port, dbFile, artifactsDir, recipe, racyMs, chunk, sql } = workerData
try {
  const db = new DatabaseSync(dbFile, { readOnly: true })
  let rows
  let schema
  try {
    // the plan's page cache size: with SQLite's default (2 MB) the join reads each page again and again
    db.exec("PRAGMA cache_size = -65536")
    // the rows and the schema version they are in, from one snapshot
    db.exec("BEGIN")
    const version = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get()
    schema = version === undefined ? 0 : Number(version.value)
    const stmt = db.prepare(sql)
    stmt.setReturnArrays(true)
    rows = stmt.all(recipe)
    db.exec("COMMIT")
  } finally {
    db.close()
  }
  // the rows first: a plan that has not read them yet takes these instead of querying again
  port.postMessage({ rows, schema })
  let clean = []
  for (const row of rows) {
    const hash = row[10] === 1 ? row[4] : null, manifest = row[11], dirs = row[12]
    if (typeof hash !== "string" || !/^[0-9a-f]{64}$/.test(hash) || typeof manifest !== "string") continue
    let entries
    try {
      entries = JSON.parse(manifest)
    } catch {
      continue
    }
    const sigs = Array.isArray(entries) ? trustedDirs(dirs, racyMs) : undefined
    if (sigs === undefined || !unchangedByStat(artifactsDir + "/" + hash, entries, sigs, stat)) continue
    clean.push(hash)
    if (clean.length >= chunk) {
      port.postMessage({ clean })
      clean = []
    }
  }
  port.postMessage({ clean, done: true })
} catch (e) {
  port.postMessage({ clean: [], done: true, error: String(e && e.message) })
}
`

/**
 * Whether a plan should scan: ANNEAL_PRESENCE_SCAN=1 or =0 decides, else a machine with 4 cores or more.
 * The scan needs a core of its own: during a plan V8's compiler and collector threads keep a second one
 * busy, and on 2 cores (measured: 10,000 cached steps, 20 alternated runs) the scan took as long as it
 * saved (0.57 s median either way) for 0.13 s more CPU.
 */
export const presenceScanWanted = (env: NodeJS.ProcessEnv = process.env): boolean =>
  env.ANNEAL_PRESENCE_SCAN === "1" ? true : env.ANNEAL_PRESENCE_SCAN === "0" ? false : os.availableParallelism() >= 4

export class PresenceScan {
  private readonly clean = new Set<string>()
  private rows: ReadonlyArray<StepRecordRow> | undefined
  private rowsTaken = false
  private done = false
  private asks = 0
  /** the worker's error, when it could not scan (no database yet, an older schema): the plan checks all */
  error: string | undefined
  /** what the plan took from the scan: its rows, and how many of its verdicts */
  readonly used = { rows: false, verdicts: 0 }

  private constructor(private readonly worker: Worker, private readonly port: MessagePort) {}

  /**
   * Starts scanning the outputs recorded for `recipe` (its id in the store) in `dbFile`, under
   * `artifactsDir`. Undefined when there is nothing to scan (no database yet) or no thread to scan on.
   */
  static start(dbFile: string, artifactsDir: string, recipe: string): PresenceScan | undefined {
    if (!fs.existsSync(dbFile)) return undefined
    try {
      // loaded here, not by every command that imports the store
      const { MessageChannel, Worker } = process.getBuiltinModule("node:worker_threads")
      const { port1, port2 } = new MessageChannel()
      const worker = new Worker(workerSource, {
        eval: true,
        workerData: { port: port2, dbFile, artifactsDir, recipe, racyMs: RACY_MS, chunk: CHUNK, sql: STEP_RECORDS_WITH_OUTPUTS },
        transferList: [port2]
      })
      // never keeps a command alive, and an error in it only means the plan checks everything itself
      worker.unref()
      worker.on("error", () => {})
      return new PresenceScan(worker, port1)
    } catch {
      return undefined
    }
  }

  /**
   * Whether the scan found `hash` unchanged, once per hash. Looks for the worker's news when it has no
   * verdict in hand and every 64 asks (a message read is ~1 us; 10,000 asks cost nothing).
   */
  vouches(hash: string): boolean {
    if (!this.clean.delete(hash)) {
      if (this.done || (this.clean.size > 0 && ++this.asks % 64 !== 0)) return false
      this.receive()
      if (!this.clean.delete(hash)) return false
    }
    this.used.verdicts++
    return true
  }

  /**
   * The rows the worker read (the plan's records and their outputs' manifest rows, CacheDb
   * .stepRecordsWithOutputs), when they have arrived, once: read moments ago, as the plan would now.
   * Undefined when they have not: the plan then reads them itself, never waiting.
   */
  takeRows(): ReadonlyArray<StepRecordRow> | undefined {
    if (this.rowsTaken) return undefined
    this.receive()
    const rows = this.rows
    this.rowsTaken = true
    this.rows = undefined
    this.used.rows = rows !== undefined
    return rows
  }

  private receive() {
    const { receiveMessageOnPort } = process.getBuiltinModule("node:worker_threads")
    for (let m = receiveMessageOnPort(this.port); m !== undefined; m = receiveMessageOnPort(this.port)) {
      const msg = m.message as { rows?: ReadonlyArray<StepRecordRow>; schema?: number; clean?: ReadonlyArray<string>; done?: boolean; error?: string }
      // rows of another schema version (the store is migrated when it opens) are the plan's to read
      if (msg.rows !== undefined && msg.schema === migrations.length && !this.rowsTaken) this.rows = msg.rows
      for (const h of msg.clean ?? []) this.clean.add(h)
      if (msg.error !== undefined) this.error = msg.error
      if (msg.done === true) this.done = true
    }
  }

  /** Waits for the worker to finish (tests: that the scan ran and what it vouched for). */
  async finished(): Promise<ReadonlySet<string>> {
    while (!this.done) {
      this.receive()
      if (!this.done) await new Promise((ok) => setTimeout(ok, 5))
    }
    return new Set(this.clean)
  }

  /** Stops the worker and drops every verdict not used: from here each check is the plan's own. */
  close() {
    this.done = true
    this.rowsTaken = true
    this.rows = undefined
    this.clean.clear()
    this.port.close()
    void this.worker.terminate()
  }
}

/**
 * SQLite through Node's built-in `node:sqlite` (no native addon to compile or download at install), with
 * the small better-sqlite3-shaped surface the cache uses: `new Database(file, options)`, `exec`,
 * `prepare(sql).run/get/all` with positional or named (`@name`) parameters, `pragma`, `transaction(f)`
 * (`.immediate()` takes the write lock at BEGIN; a transaction inside another becomes a SAVEPOINT, so
 * nesting is safe) and `close`.
 *
 * Semantics kept from better-sqlite3: the busy timeout (another process holding the write lock makes a
 * writer wait up to `timeout` ms instead of failing at once; PRAGMA busy_timeout, which every node:sqlite
 * has), named parameters given as an object may carry extra properties, and a `readonly` open never
 * creates the file. Node's SQLite enables foreign keys by default; the cache sets the pragma itself.
 */
import * as fs from "node:fs"
import { DatabaseSync } from "node:sqlite"
import type { StatementSync } from "node:sqlite"

export interface DatabaseOptions {
  /** open read-only; the file must exist */
  readonly readonly?: boolean | undefined
  /** fail if the file does not exist (implied by readonly) */
  readonly fileMustExist?: boolean | undefined
  /** busy timeout in milliseconds (default 5000, as better-sqlite3) */
  readonly timeout?: number | undefined
}

export interface RunResult {
  readonly changes: number | bigint
  readonly lastInsertRowid: number | bigint
}

/** A prepared statement. Parameters: positional values, or one object of named values (`@name`, `:name`, `$name`). */
export class Statement {
  /** with `arrays`, `get` and `all` give each row as an array of its columns in SELECT order */
  constructor(private readonly stmt: StatementSync, private readonly arrays = false) {
    stmt.setAllowUnknownNamedParameters(true)
    // an array per row instead of an object: a plan reads 10,000 rows, and the objects were a third of it
    // (Node 22.16 and 24 have it; before, rows are converted)
    if (arrays && typeof stmt.setReturnArrays === "function") {
      stmt.setReturnArrays(true)
      this.arrays = false
    }
  }

  run(...params: ReadonlyArray<unknown>): RunResult {
    return (this.stmt.run as (...p: ReadonlyArray<unknown>) => RunResult)(...params)
  }

  get(...params: ReadonlyArray<unknown>): unknown {
    const row = (this.stmt.get as (...p: ReadonlyArray<unknown>) => unknown)(...params)
    return this.arrays && row !== undefined ? Object.values(row as object) : row
  }

  all(...params: ReadonlyArray<unknown>): Array<unknown> {
    const rows = (this.stmt.all as (...p: ReadonlyArray<unknown>) => Array<unknown>)(...params)
    return this.arrays ? rows.map((r) => Object.values(r as object)) : rows
  }

  get source(): string {
    return this.stmt.sourceSQL
  }
}

export interface Transaction<A> {
  (): A
  /** BEGIN DEFERRED: the write lock is taken at the first write */
  deferred(): A
  /** BEGIN IMMEDIATE: the write lock is taken at once (waiting up to the busy timeout) */
  immediate(): A
  exclusive(): A
}

export class Database {
  private readonly db: DatabaseSync
  /** transactions open through transaction(): 0 outside, 1 in one, 2+ in savepoints inside it (tracked
   * here: `DatabaseSync#isTransaction` only exists from Node 22.16, and the bin runs from 22.15) */
  private depth = 0

  constructor(readonly name: string, options: DatabaseOptions = {}) {
    const readOnly = options.readonly === true
    if ((readOnly || options.fileMustExist === true) && !fs.existsSync(name)) {
      throw new Error(`unable to open database file: ${name} does not exist`)
    }
    this.db = new DatabaseSync(name, { readOnly })
    this.db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(options.timeout ?? 5000))}`)
  }

  get inTransaction(): boolean {
    return this.depth > 0
  }

  exec(sql: string): this {
    this.db.exec(sql)
    return this
  }

  /** A prepared statement; `{ arrays: true }` gives rows as arrays of their columns in SELECT order. */
  prepare(sql: string, options: { readonly arrays?: boolean } = {}): Statement {
    return new Statement(this.db.prepare(sql), options.arrays === true)
  }

  /**
   * Runs `PRAGMA <source>`: its rows, or with `simple` the first column of the first row
   * (`pragma("journal_mode = WAL")`, `pragma("integrity_check", { simple: true })`).
   */
  pragma(source: string, options: { readonly simple?: boolean } = {}): unknown {
    const rows = this.db.prepare(`PRAGMA ${source}`).all()
    if (options.simple !== true) return rows
    const first = rows[0]
    return first === undefined ? undefined : Object.values(first)[0]
  }

  /**
   * `f` in one transaction: committed when it returns, rolled back when it throws (the error goes on).
   * Inside another transaction it runs under a savepoint, released or rolled back the same way.
   */
  transaction<A>(f: () => A): Transaction<A> {
    const run = (begin: string): A => {
      if (this.depth > 0) {
        const name = `anneal_sp_${this.depth}`
        this.db.exec(`SAVEPOINT ${name}`)
        this.depth++
        try {
          const a = f()
          this.db.exec(`RELEASE ${name}`)
          return a
        } catch (e) {
          rollback(`ROLLBACK TO ${name}`, `RELEASE ${name}`)
          throw e
        } finally {
          this.depth--
        }
      }
      this.db.exec(begin)
      this.depth++
      try {
        const a = f()
        this.db.exec("COMMIT")
        return a
      } catch (e) {
        rollback("ROLLBACK")
        throw e
      } finally {
        this.depth--
      }
    }
    // SQLite may have rolled the whole transaction back itself (some errors end it): then there is
    // nothing left to roll back, and that second error must not hide the first
    const rollback = (...statements: ReadonlyArray<string>) => {
      try {
        for (const sql of statements) this.db.exec(sql)
      } catch {
        // no transaction is active
      }
    }
    return Object.assign(() => run("BEGIN"), {
      deferred: () => run("BEGIN DEFERRED"),
      immediate: () => run("BEGIN IMMEDIATE"),
      exclusive: () => run("BEGIN EXCLUSIVE")
    })
  }

  close(): void {
    this.db.close()
  }
}

export default Database

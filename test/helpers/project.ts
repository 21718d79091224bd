/**
 * Test helpers: throwaway projects in temp directories, and the real CLI run as a child process.
 * Recipes written here import from "anneal", as a project outside this repo imports the installed
 * package: each project links node_modules/anneal to this repository.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"
import type { ResultPromise } from "execa"
import { Database } from "../../cache/sqlite.ts"
import { projectRoot } from "../../engine/python.ts"
import type { EngineEvent, StepEvent } from "../../engine/events.ts"

/** The module specifier test recipes import anneal by, as users' recipes do. */
export const annealIndex = "anneal"
export const annealBin = path.join(projectRoot, "bin", "anneal.js")
export const nodeBin = process.execPath

export interface TempProject {
  readonly dir: string
  readonly store: string
  readonly file: (rel: string) => string
  readonly write: (rel: string, content: string) => string
  readonly read: (rel: string) => string
}

export const tempProject = (prefix = "anneal-test-"): TempProject => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "t", type: "module", private: true }))
  fs.mkdirSync(path.join(dir, "node_modules"))
  fs.symlinkSync(projectRoot, path.join(dir, "node_modules", "anneal"))
  const file = (rel: string) => path.join(dir, rel)
  return {
    dir,
    store: path.join(dir, ".anneal"),
    file,
    write: (rel, content) => {
      fs.mkdirSync(path.dirname(file(rel)), { recursive: true })
      fs.writeFileSync(file(rel), content)
      return file(rel)
    },
    read: (rel) => fs.readFileSync(file(rel), "utf8")
  }
}

export interface CliResult {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
  readonly events: ReadonlyArray<EngineEvent>
}

export const parseEvents = (stdout: string): Array<EngineEvent> =>
  stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as EngineEvent)

export const cli = async (args: ReadonlyArray<string>, options: { cwd?: string; env?: Record<string, string> } = {}): Promise<CliResult> => {
  const r = await execa(nodeBin, [annealBin, ...args], { cwd: options.cwd ?? projectRoot, reject: false, env: options.env, stdin: "ignore" })
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), events: parseEvents(String(r.stdout)) }
}

/** Starts the CLI without waiting, for kill and concurrency tests. */
export const spawnCli = (args: ReadonlyArray<string>, options: { cwd?: string } = {}): ResultPromise =>
  execa(nodeBin, [annealBin, ...args], { cwd: options.cwd ?? projectRoot, reject: false, stdin: "ignore", buffer: true })

export const stepEvents = (events: ReadonlyArray<EngineEvent>): Array<StepEvent> =>
  events.filter((e): e is StepEvent => e.event === "step")

/** step id -> status, for the steps that settled */
export const statuses = (events: ReadonlyArray<EngineEvent>): Record<string, string> =>
  Object.fromEntries(stepEvents(events).map((e) => [e.step, e.status]))

export const ranSteps = (events: ReadonlyArray<EngineEvent>): Array<string> =>
  stepEvents(events).filter((e) => e.status === "ran").map((e) => e.step).sort()

/** A fingerprint of what a store holds: artifact dirs, and the runs and sessions the database records. */
export const storeSnapshot = (store: string): string => {
  if (!fs.existsSync(store)) return "absent"
  const artifacts = fs.existsSync(path.join(store, "artifacts")) ? fs.readdirSync(path.join(store, "artifacts")).sort() : []
  const staging = fs.existsSync(path.join(store, "staging")) ? fs.readdirSync(path.join(store, "staging")) : []
  let rows = "no db"
  if (fs.existsSync(path.join(store, "cache.db"))) {
    const db = new Database(path.join(store, "cache.db"), { readonly: true })
    try {
      const count = (t: string) => (db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n
      rows = `sessions=${count("sessions")} runs=${count("runs")} results=${count("results")} steps=${count("steps")}`
    } finally {
      db.close()
    }
  }
  return JSON.stringify({ artifacts, staging, rows })
}

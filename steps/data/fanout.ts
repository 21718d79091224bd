/**
 * Shard tasks: the unit a data step fans out. A task is a JSON spec ({op, id, dir, ...}) that any
 * executor can run: in this process, in a child process (`node shard-main.ts <spec.json>`, what a local
 * step does on more than one worker), or on a cluster node as a job-array element or a Ray task. A task
 * writes only below its own directory and, when done, an atomic completion marker beside it
 * (`<id>.done.json`, holding its result); a stage reruns only the tasks without a marker, so a crash or
 * a kill -9 loses only unfinished shards. The interface is in /tmp/anneal-notes/shards.md and
 * docs/data-steps.md.
 */
import { spawn, type ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { DatasetError } from "./errors.ts"

export interface TaskSpec {
  /** which registered operation runs the task */
  readonly op: string
  /** unique within its stage, a file name: "00003" */
  readonly id: string
  /** the directory the task's outputs go into (created by the runner, replaced on a rerun) */
  readonly dir: string
  readonly [field: string]: unknown
}

export type TaskResult = Record<string, unknown>

/** What a task reports while it runs: rows done so far. */
export type TaskProgress = (rows: number) => void

/** `signal` is set when the task runs in the step's own process: a long task checks it between rows. */
export type ShardOp = (spec: TaskSpec, progress: TaskProgress, signal?: AbortSignal) => Promise<TaskResult>

const ops = new Map<string, ShardOp>()

/** Registers an operation under a name; step modules register theirs when they load. */
export const registerShardOp = (name: string, op: ShardOp): void => {
  ops.set(name, op)
}

export const markerOf = (spec: Pick<TaskSpec, "dir">): string => `${spec.dir}.done.json`

/** The result of a finished task, or undefined when it has not finished. */
export const finishedResult = (spec: Pick<TaskSpec, "dir">): TaskResult | undefined => {
  try {
    return JSON.parse(fs.readFileSync(markerOf(spec), "utf8")) as TaskResult
  } catch {
    return undefined
  }
}

/**
 * Runs one task to completion: its outputs are written into a private temporary directory, renamed to
 * `spec.dir`, then the marker is written (temporary file + rename). Returns the result.
 */
export const executeTask = async (spec: TaskSpec, progress: TaskProgress = () => {}, signal?: AbortSignal): Promise<TaskResult> => {
  const op = ops.get(spec.op)
  if (op === undefined) throw new Error(`shard task ${spec.id}: unknown op "${spec.op}" (known: ${[...ops.keys()].join(", ")})`)
  const tmp = `${spec.dir}.${process.pid}.${Date.now()}.tmp`
  fs.rmSync(tmp, { recursive: true, force: true })
  fs.mkdirSync(tmp, { recursive: true })
  let result: TaskResult
  try {
    result = await op({ ...spec, dir: tmp }, progress, signal)
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true })
    throw e
  }
  fs.rmSync(spec.dir, { recursive: true, force: true })
  fs.renameSync(tmp, spec.dir)
  const marker = markerOf(spec)
  fs.writeFileSync(`${marker}.${process.pid}.tmp`, JSON.stringify(result) + "\n")
  fs.renameSync(`${marker}.${process.pid}.tmp`, marker)
  return result
}

// ---------------------------------------------------------------------------------------------
// Running a stage's tasks on local workers

export interface StageOptions {
  /** concurrent tasks; 1 runs them in this process, more in child processes */
  readonly workers: number
  readonly signal: AbortSignal
  /** called as tasks progress: shards done, total, rows so far, failed attempts so far */
  readonly onProgress?: (p: { readonly done: number; readonly total: number; readonly rows: number; readonly failed: number }) => void
  /** retries of a failed task (not of a task that failed on bad data); default 1 */
  readonly retries?: number
  readonly log?: (message: string, level?: "info" | "warn") => void
  /** worker processes to reuse across the stages of one step (closed by its owner); default: per stage */
  readonly pool?: WorkerPool
}

/**
 * Another way to run a stage's unfinished tasks (a Slurm job array, Ray tasks): it gets the spec files
 * (each runnable as `node shard-main.js <spec.json>`, see shardCommand) and resolves when they have
 * all ended; tasks it leaves without a completion marker are then run locally (retried alone), so it
 * need not report failures one by one.
 */
export interface ShardExecutor {
  readonly run: (specFiles: ReadonlyArray<string>, o: { readonly signal: AbortSignal; readonly workers: number }) => Promise<void>
}

let external: ShardExecutor | undefined

/** Sets (or, with undefined, clears) the executor stages hand their tasks to; returns the previous one. */
export const setShardExecutor = (e: ShardExecutor | undefined): ShardExecutor | undefined => {
  const before = external
  external = e
  return before
}

/** Writes a task's spec file beside its directory (`<dir>.spec.json`) and returns its path. */
export const writeSpecFile = (spec: TaskSpec): string => {
  const file = `${spec.dir}.spec.json`
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(spec))
  fs.renameSync(`${file}.tmp`, file)
  return file
}

class TaskFailure extends Error {
  constructor(message: string, readonly dataError: boolean) {
    super(message)
  }
}

// Beside this module: shard-main.ts in the sources, shard-main.js once built (dist/).
const selfFile = fileURLToPath(import.meta.url)
const mainScript = path.join(path.dirname(selfFile), `shard-main${path.extname(selfFile)}`)

/** The node and arguments that run task spec files (or `--serve`) in a child process. */
export const shardCommand = (...specFiles: ReadonlyArray<string>): { readonly node: string; readonly args: ReadonlyArray<string> } => {
  const require = createRequire(import.meta.url)
  let node = process.execPath
  try {
    const local = path.join(path.dirname(require.resolve("node/package.json")), "bin", "node")
    if (fs.existsSync(local)) node = local
  } catch {
    // no bundled Node: this one
  }
  const loader = mainScript.endsWith(".ts")
    ? ["--import", pathToFileURL(path.join(path.dirname(require.resolve("tsx/package.json")), "dist", "loader.mjs")).href]
    : []
  // a small young generation: V8's default (tens of MB per semi-space) was most of a worker's RSS,
  // and row-by-row work keeps little alive (decontaminate on 100 MB: peak 324 -> 235 MB, no slower)
  return { node, args: ["--max-semi-space-size=8", ...loader, mainScript, ...specFiles] }
}

/** A child process that runs the task specs it is sent, one at a time (shard-main.ts --serve). */
class ChildWorker {
  private readonly child: ChildProcess
  private current: { resolve: (ok: { message?: string; data?: boolean }) => void; onRows: TaskProgress } | undefined
  private stderr = ""
  private exited: string | undefined

  constructor() {
    const { node, args } = shardCommand("--serve")
    this.child = spawn(node, [...args], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ANNEAL_SHARD_PARENT: String(process.pid) } })
    let rest = ""
    this.child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      const lines = (rest + chunk).split("\n")
      rest = lines.pop()!
      for (const l of lines) {
        let m: { rows?: number; error?: string; data?: boolean; done?: string }
        try {
          m = JSON.parse(l)
        } catch {
          continue // not a message of ours
        }
        if (m.rows !== undefined) this.current?.onRows(m.rows)
        else if (m.done !== undefined) this.settle({})
        else if (m.error !== undefined) this.settle({ message: m.error, data: m.data === true })
      }
    })
    this.child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000)
    })
    this.child.stdin!.on("error", () => {}) // a dead child: reported by "close"
    const gone = (why: string) => {
      this.exited = why
      this.settle({ message: why })
    }
    this.child.on("error", (e) => gone(`cannot start a shard worker: ${e.message}`))
    this.child.on("close", (code, signal) => {
      const last = this.stderr.trim().split("\n").pop() ?? ""
      gone(signal !== null ? `the shard worker was killed by ${signal}` : `the shard worker exited with code ${code}${last === "" ? "" : `: ${last}`}`)
    })
  }

  get alive(): boolean {
    return this.exited === undefined
  }

  private settle(outcome: { message?: string; data?: boolean }): void {
    const c = this.current
    this.current = undefined
    c?.resolve(outcome)
  }

  async run(spec: TaskSpec, onRows: TaskProgress): Promise<TaskResult> {
    const specFile = writeSpecFile(spec)
    const outcome = await new Promise<{ message?: string; data?: boolean }>((resolve) => {
      if (!this.alive) return resolve({ message: this.exited! })
      this.current = { resolve, onRows }
      this.child.stdin!.write(specFile + "\n")
    })
    if (outcome.message !== undefined) throw new TaskFailure(outcome.message, outcome.data === true)
    const result = finishedResult(spec)
    if (result === undefined) throw new TaskFailure(`shard task ${spec.id} reported done but left no completion marker`, false)
    return result
  }

  kill(): void {
    if (this.alive) this.child.kill("SIGKILL")
  }

  close(): void {
    if (this.alive) this.child.stdin!.end()
  }
}

/** Worker processes kept across the stages of one step, so each starts once; `close` ends them. */
export class WorkerPool {
  private readonly idle: Array<ChildWorker> = []
  private readonly all = new Set<ChildWorker>()

  /** an idle live worker, or a new one */
  take(): ChildWorker {
    for (let w = this.idle.pop(); w !== undefined; w = this.idle.pop()) if (w.alive) return w
    const w = new ChildWorker()
    this.all.add(w)
    return w
  }

  give(w: ChildWorker): void {
    if (w.alive) this.idle.push(w)
  }

  kill(): void {
    for (const w of this.all) w.kill()
    // a killed worker stays `alive` until its exit is reaped: none of them may be taken again
    this.idle.length = 0
  }

  close(): void {
    for (const w of this.all) w.close()
    this.all.clear()
    this.idle.length = 0
  }
}

/**
 * Runs every task of a stage that has no completion marker yet, `workers` at a time; returns all
 * results in task order (finished ones read from their markers). A failed task is retried alone
 * (`retries` times) unless it failed on bad data; a task that still fails stops the stage with its
 * error, which names the shard.
 */
export const runStage = async (tasks: ReadonlyArray<TaskSpec>, o: StageOptions): Promise<Array<TaskResult>> => {
  const results: Array<TaskResult | undefined> = tasks.map((t) => finishedResult(t))
  if (external !== undefined && results.some((r) => r === undefined)) {
    const files = tasks.filter((_, i) => results[i] === undefined).map(writeSpecFile)
    await external.run(files, { signal: o.signal, workers: o.workers })
    tasks.forEach((t, i) => (results[i] ??= finishedResult(t)))
  }
  const todo = tasks.map((_, i) => i).filter((i) => results[i] === undefined)
  const rowsOf = new Map<number, number>()
  let failed = 0
  let done = tasks.length - todo.length
  const report = () => {
    let rows = 0
    for (const r of rowsOf.values()) rows += r
    o.onProgress?.({ done, total: tasks.length, rows, failed })
  }
  report()
  const inProcess = o.workers <= 1 || todo.length <= 1
  const pool = o.pool ?? new WorkerPool()
  const killAll = () => pool.kill()
  o.signal.addEventListener("abort", killAll)
  const attempt = async (i: number, slot: { child?: ChildWorker }): Promise<TaskResult> => {
    const spec = tasks[i]!
    const onRows = (n: number) => {
      rowsOf.set(i, n)
      report()
    }
    if (inProcess) {
      try {
        return await executeTask(spec, onRows, o.signal)
      } catch (e) {
        throw new TaskFailure(e instanceof Error ? e.message : String(e), e instanceof DatasetError)
      }
    }
    if (slot.child === undefined || !slot.child.alive) slot.child = pool.take()
    return slot.child.run(spec, onRows)
  }
  let next = 0
  let stopped: Error | undefined
  const worker = async (): Promise<void> => {
    const slot: { child?: ChildWorker } = {}
    try {
      await work(slot)
    } finally {
      if (slot.child !== undefined) pool.give(slot.child)
    }
  }
  const work = async (slot: { child?: ChildWorker }): Promise<void> => {
    while (stopped === undefined && next < todo.length) {
      if (o.signal.aborted) throw new Error("interrupted")
      const i = todo[next++]!
      for (let tries = 0; ; tries++) {
        try {
          const result = await attempt(i, slot)
          results[i] = result
          // a finished task counts all its rows (its last progress report may be older)
          const rows = typeof result.rowsIn === "number" ? result.rowsIn : typeof result.rows === "number" ? result.rows : undefined
          if (rows !== undefined) rowsOf.set(i, rows)
          done++
          report()
          break
        } catch (e) {
          if (o.signal.aborted) throw new Error("interrupted")
          // another task has stopped the stage and killed the workers, this one's among them: the stage
          // fails with that task's error (a retry here took a worker killed but not yet reaped, and its
          // "killed by SIGKILL" then replaced the error that names the bad shard)
          if (stopped !== undefined) throw stopped
          const f = e instanceof TaskFailure ? e : new TaskFailure(String(e), false)
          failed++
          report()
          if (f.dataError || tries >= (o.retries ?? 1)) {
            stopped = new Error(f.message)
            killAll()
            throw stopped
          }
          o.log?.(`shard task ${tasks[i]!.id} failed (${f.message}); retrying it alone`, "warn")
        }
      }
    }
  }
  try {
    const n = Math.max(1, Math.min(o.workers, todo.length))
    const settled = await Promise.allSettled(Array.from({ length: n }, worker))
    const bad = settled.find((s) => s.status === "rejected")
    if (stopped !== undefined) throw stopped
    if (bad !== undefined) throw (bad as PromiseRejectedResult).reason
  } finally {
    o.signal.removeEventListener("abort", killAll)
    if (o.pool === undefined) pool.close()
  }
  return results as Array<TaskResult>
}

/**
 * The work directory of a stage: `<resumeDir>/<stage>`, emptied when the plan recorded there differs
 * from `plan` (another cut of the input, from another `shards` value), so finished tasks are reused
 * only for the same plan.
 */
export const stageDir = (resumeDir: string, stage: string, plan: unknown): string => {
  const dir = path.join(resumeDir, stage)
  const planFile = path.join(dir, "plan.json")
  const text = JSON.stringify(plan)
  let same = false
  try {
    same = fs.readFileSync(planFile, "utf8") === text
  } catch {
    same = false
  }
  if (!same) {
    fs.rmSync(dir, { recursive: true, force: true })
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(`${planFile}.tmp`, text)
    fs.renameSync(`${planFile}.tmp`, planFile)
  }
  return dir
}

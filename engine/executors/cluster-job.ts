/**
 * What the Slurm and Ray executors keep on the shared store about the jobs they submit, and what a job
 * leaves there. One directory per step key under `<store>/jobs/`:
 *
 *   jobs/<key>/record.json          which job runs this key: executor, job id, attempt, submitted by
 *   jobs/<key>/attempt-<n>/         one submission: spec.json, job.json (the runner's orders),
 *                                   job.sh (Slurm's batch script), events.jsonl (the worker's stdout:
 *                                   protocol lines), worker.log (its stderr), exit.json, output/,
 *                                   checkpoint-request (the time limit is near: save a checkpoint)
 *
 * The record is written (atomically) before the executor starts waiting, so a driver that dies and
 * restarts finds the job and attaches to it instead of submitting the key again. The job writes its
 * artifact into its own attempt directory, not into the driver's staging directory: a restarted driver
 * sweeps the dead driver's staging, and the job must not lose its output to that. The driver moves the
 * output into its staging directory only once the job has exited successfully; the engine then hashes
 * and commits it as it does any local step.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

export interface JobRecord {
  readonly version: 1
  readonly executor: string
  readonly key: string
  readonly step: string
  /** the cluster's id for the job; absent while the submission is in flight (Slurm assigns ids) */
  readonly jobId?: string | undefined
  readonly attempt: number
  /** the job's name on the cluster, to find it if the driver died before it learned the job id */
  readonly name: string
  readonly attemptDir: string
  readonly submittedAt: string
  readonly driverPid: number
  readonly driverHost: string
  /**
   * set once the job ended without an artifact (failed, cancelled, lost): the record then only keeps
   * the attempt number, so the next submission of the key is attempt n+1 with a name of its own
   */
  readonly ended?: string | undefined
}

/** The runner's orders (engine/executors/cluster-runner.ts), written as job.json in the attempt dir. */
export interface RunnerJob {
  readonly argv: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
  readonly cwd: string
  /** the spec the job runs; the runner rewrites its GPU ids to the ones the cluster assigned */
  readonly spec: string
  readonly output: string
  readonly events: string
  readonly log: string
  readonly exit: string
  /** GPUs requested: 0 hides every GPU from the worker */
  readonly gpus: number
  /** a multi-node step: `argv` starts one launcher per node (srun, Ray actors), each running cluster-node.ts */
  readonly gang?: Gang | undefined
}

/**
 * A distributed training step spread over nodes: every node runs the same torchrun launcher
 * (`python -m torch.distributed.run --nnodes N --node-rank R --master-addr A --master-port P
 * --nproc-per-node G SCRIPT ARGS`), node 0 hosting the rendezvous (cluster-node.ts).
 */
export interface Gang {
  readonly nodes: number
  readonly processesPerNode: number
  readonly python: string
  readonly script: string
  readonly args: ReadonlyArray<string>
  /** names the rendezvous: the step key */
  readonly runId: string
}

export interface ExitStatus {
  readonly code: number | null
  readonly signal: string | null
  readonly host: string
  readonly at: string
}

export const keyDir = (stateDir: string, key: string): string => path.join(stateDir, key)
const recordPath = (stateDir: string, key: string) => path.join(keyDir(stateDir, key), "record.json")

export const attemptFiles = (attemptDir: string) => ({
  spec: path.join(attemptDir, "spec.json"),
  job: path.join(attemptDir, "job.json"),
  script: path.join(attemptDir, "job.sh"),
  events: path.join(attemptDir, "events.jsonl"),
  log: path.join(attemptDir, "worker.log"),
  exit: path.join(attemptDir, "exit.json"),
  output: path.join(attemptDir, "output"),
  clusterLog: path.join(attemptDir, "cluster.out"),
  /** written by the runner when the cluster warns of the time limit (SIGUSR1): the step should checkpoint now */
  checkpointRequest: path.join(attemptDir, "checkpoint-request")
})

/** Writes a file so that readers see the old content or the new, never a part (tmp + fsync + rename). */
export const writeAtomic = (file: string, content: string) => {
  const tmp = `${file}.${process.pid}.tmp`
  const fd = fs.openSync(tmp, "w")
  try {
    fs.writeSync(fd, content)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, file)
}

export const readRecord = (stateDir: string, key: string): JobRecord | undefined => {
  try {
    const rec = JSON.parse(fs.readFileSync(recordPath(stateDir, key), "utf8")) as JobRecord
    return rec.version === 1 && rec.key === key ? rec : undefined
  } catch {
    return undefined
  }
}

export const writeRecord = (stateDir: string, rec: JobRecord) => {
  fs.mkdirSync(keyDir(stateDir, rec.key), { recursive: true })
  writeAtomic(recordPath(stateDir, rec.key), JSON.stringify(rec, null, 2) + "\n")
}

/** A job's name on the cluster: the step for people reading `squeue`, the key prefix and attempt to find it. */
export const jobName = (step: string, key: string, attempt: number): string =>
  `anneal-${step.replace(/[^\w.-]/g, "_").slice(0, 40)}-${key.slice(0, 12)}-a${attempt}`

export const newRecord = (executor: string, stateDir: string, key: string, step: string, attempt: number, jobId?: string): JobRecord => ({
  version: 1,
  executor,
  key,
  step,
  jobId,
  attempt,
  name: jobName(step, key, attempt),
  attemptDir: path.join(keyDir(stateDir, key), `attempt-${attempt}`),
  submittedAt: new Date().toISOString(),
  driverPid: process.pid,
  driverHost: os.hostname()
})

/** Forgets a key's job: its record and every attempt directory (after its artifact was handed over). */
export const removeJob = (stateDir: string, key: string) => {
  fs.rmSync(keyDir(stateDir, key), { recursive: true, force: true })
}

/**
 * Ends a job that left no artifact: its attempt directories go (a partial output can be large), its
 * record stays, marked `ended`, so a retry of the key is the next attempt rather than attempt 1 again.
 */
export const endJob = (stateDir: string, rec: JobRecord, ended: string) => {
  const dir = keyDir(stateDir, rec.key)
  let entries: Array<string> = []
  try {
    entries = fs.readdirSync(dir)
  } catch {
    // nothing left of it
  }
  for (const e of entries) if (e.startsWith("attempt-")) fs.rmSync(path.join(dir, e), { recursive: true, force: true })
  writeRecord(stateDir, { ...rec, ended })
}

export const readExit = (attemptDir: string): ExitStatus | undefined => {
  try {
    return JSON.parse(fs.readFileSync(attemptFiles(attemptDir).exit, "utf8")) as ExitStatus
  } catch {
    return undefined
  }
}

// defined with the registrations' light helpers (`anneal plan` quotes sbatch arguments with it)
export { shellQuote } from "./cluster-config.ts"

/**
 * Follows a file another machine appends to (over NFS, or the same disk): each `read()` returns the
 * complete lines added since the last one. A file that shrank was truncated (a requeued job starts its
 * output afresh), and is read again from the start.
 */
export class FileFollower {
  private offset = 0
  private partial = ""
  constructor(readonly file: string) {}

  read(final = false): Array<string> {
    let fd: number
    try {
      fd = fs.openSync(this.file, "r")
    } catch {
      return []
    }
    try {
      const size = fs.fstatSync(fd).size
      if (size < this.offset) {
        this.offset = 0
        this.partial = ""
      }
      if (size === this.offset) return final ? this.flush() : []
      const buf = Buffer.alloc(size - this.offset)
      const n = fs.readSync(fd, buf, 0, buf.length, this.offset)
      this.offset += n
      const text = this.partial + buf.subarray(0, n).toString("utf8")
      const lines = text.split("\n")
      this.partial = lines.pop() ?? ""
      return final ? [...lines, ...this.flush()] : lines
    } finally {
      fs.closeSync(fd)
    }
  }

  private flush(): Array<string> {
    const rest = this.partial
    this.partial = ""
    return rest === "" ? [] : [rest]
  }
}

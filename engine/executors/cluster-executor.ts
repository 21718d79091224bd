/**
 * What the Slurm and Ray executors share: one step becomes one cluster job that runs
 * `anneal exec-step SPEC.json` (through engine/executors/cluster-runner.ts) on some node, reading its
 * inputs from and writing its output to the shared store. The executor
 *
 * - records the job under `<store>/jobs/<key>/` before it waits (cluster-job.ts), and on `run` first
 *   looks for a recorded job of the same key: a queued, running or finished-successfully job is
 *   attached to rather than submitted again (a driver killed mid-run and restarted);
 * - follows the job's protocol lines (events.jsonl) and logs while it runs, turning them into events;
 * - polls the cluster for the job's state, and reports a failure with the cluster's reason (cancelled,
 *   time limit, preempted, node failure) and the worker's last error line;
 * - cancels the job when the run is interrupted, and waits until the cluster has stopped it;
 * - hands the output to the engine only after the job exited 0: it moves the job's output directory
 *   into the spec's staging directory, which the engine then hashes and commits.
 *
 * A backend (slurm.ts, ray.ts) only knows how to submit, query and cancel one job.
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { messageOf } from "../errors.ts"
import type { EngineEvent } from "../events.ts"
import { projectRoot } from "../python.ts"
import type { ExecResult, Executor, StepSpec } from "../spec.ts"
import { StepExecutionError } from "../spec.ts"
import { attemptFiles, endJob, FileFollower, keyDir, newRecord, readExit, readRecord, removeJob, writeAtomic, writeRecord } from "./cluster-job.ts"
import type { Gang, JobRecord, RunnerJob } from "./cluster-job.ts"
import { protocolEvent } from "./codec.ts"
import { jobResources, remoteProblem } from "./cluster-config.ts"
import type { JobResources } from "./cluster-config.ts"
import type { PlacementRules } from "./placement-rules.ts"
import type { RemoteConfig } from "../../cache/remote/url.ts"
import type { JobMirror, RemoteJobs } from "../../cache/remote/job-channel.ts"

// what the backends' registrations share (cluster-config.ts), here too for the executor's users
export { clusterCapacity, clusterConfigFields, jobResources, withRemote } from "./cluster-config.ts"
export type { JobResources } from "./cluster-config.ts"

/**
 * Why a job ended without its artifact, as a retry policy sees it: the cluster lost its node, it was
 * preempted, it hit its time limit, it ran out of memory, or the step itself failed. A job cancelled
 * from outside has no kind: it is never retried.
 */
export type FailureKind = "node-failure" | "preemption" | "timeout" | "oom" | "step-error"
export const failureKinds: ReadonlyArray<FailureKind> = ["node-failure", "preemption", "timeout", "oom", "step-error"]

export interface RetryPolicy {
  /** submissions after the first, within one run; default 2 */
  readonly maxRetries?: number | undefined
  /** which endings are retried; default node-failure, preemption, timeout and oom (not step-error) */
  readonly on?: ReadonlyArray<FailureKind> | undefined
  /** memory of the next attempt after an oom, times this; default 1.5 */
  readonly memoryFactor?: number | undefined
  /** time limit of the next attempt after a timeout, times this; default 1 (the step resumes from its checkpoint) */
  readonly timeFactor?: number | undefined
}

export interface SubmitRequest {
  /** set when the backend chose the id before submitting (Ray's submission id) */
  readonly jobId?: string | undefined
  readonly name: string
  readonly step: string
  readonly kind: string
  readonly key: string
  readonly attemptDir: string
  /** the command that runs the step on a node: [node, cluster-runner.ts, job.json] */
  readonly command: ReadonlyArray<string>
  readonly resources: JobResources
  /** directories the job reads or writes (project, store, recipe, working dir): what a container must bind */
  readonly binds?: ReadonlyArray<string> | undefined
  /** how much more than the step's request a retry asks for (1 for a first attempt) */
  readonly scale?: { readonly memory: number; readonly time: number } | undefined
}

export type JobPhase = "queued" | "running" | "succeeded" | "failed" | "gone"

export interface JobStatus {
  readonly phase: JobPhase
  /** the cluster's own word for it: RUNNING, CANCELLED, TIMEOUT, STOPPED, ... */
  readonly state: string
  /** why, in words a user can act on, when the cluster ended the job */
  readonly reason?: string | undefined
  readonly exitCode?: number | undefined
  /** for a failed job: which kind of failure, for the retry policy */
  readonly failure?: FailureKind | undefined
}

export interface ClusterBackend {
  readonly name: string
  /** "slurm job 12", "ray job anneal-..." */
  readonly label: (jobId: string) => string
  /** a job id chosen before submitting, so a crash between submit and record leaves a findable id */
  readonly chooseJobId?: (name: string) => string
  readonly submit: (request: SubmitRequest) => Promise<string>
  readonly status: (jobId: string) => Promise<JobStatus>
  /**
   * The states of many jobs in one query to the cluster: the executor polls all of a run's jobs with
   * one call per poll instead of one per job. Every id asked about is in the answer.
   */
  readonly statusMany?: (jobIds: ReadonlyArray<string>) => Promise<Map<string, JobStatus>>
  readonly cancel: (jobId: string) => Promise<void>
  /** a live job by name, for a record whose submission was in flight when the driver died */
  readonly findByName?: (name: string) => Promise<string | undefined>
  /**
   * The cluster's own output of a job that failed (Slurm's output file, the Ray job's log): the only
   * trace of a job that failed before the runner started (a node binary missing on the node, a module
   * not found), so the executor copies it into the step's log before it removes the job's files.
   */
  readonly jobOutput?: (jobId: string, attemptDir: string) => Promise<string | undefined>
  /**
   * A multi-node step's command for the job: something that starts `nodeLauncher` (node
   * cluster-node.ts job.json) once per node, each knowing its rank and the first node's address (Slurm:
   * srun; Ray: a placement group of one actor per node). Absent: the backend runs only one-node steps.
   */
  readonly gangCommand?: (gang: Gang, nodeLauncher: ReadonlyArray<string>, perNode: JobResources) => Array<string>
  /**
   * How long a job must look ended with a failure before the executor believes it, when the cluster
   * may still rerun it (Slurm shows a requeued job as FAILED until its controller has made it pending
   * again, which takes seconds on a busy controller). Default 3 s.
   */
  readonly failureSettleMs?: number
}

export interface ClusterOptions {
  /** where job records live; default `<store>/jobs`, beside the spec's resume directory */
  readonly stateDir?: string | undefined
  /**
   * "exec-step" (default) runs `anneal exec-step SPEC.json` on the node, so TS and command steps run
   * the same way; "command" runs a command step's argv directly (no TS steps; saves loading the recipe)
   */
  readonly launcher?: "exec-step" | "command" | undefined
  /** the Node 24 binary jobs run with; default the project's node_modules/node/bin/node */
  readonly node?: string | undefined
  /** seconds between state queries to the cluster (one query for all running jobs, where the backend can) */
  readonly pollSeconds?: number | undefined
  /**
   * seconds to wait, after a job ended, for its exit status and output to show on this machine: a
   * network filesystem's attribute cache can hide a file another node wrote for a while; default 30
   */
  readonly fileWaitSeconds?: number | undefined
  /** what is retried, how often, with how much more memory or time */
  readonly retry?: RetryPolicy | undefined
  /** which steps run on the driver instead of as jobs (placement.ts) */
  readonly placement?: PlacementRules | undefined
  /** seconds between reads of the job's output files */
  readonly followSeconds?: number | undefined
  /**
   * false: the nodes do not mount the driver's store; jobs read their inputs from and write their
   * outputs to `remote`, and their orders, logs and exit status go through it too (docs/cluster.md,
   * "Nodes without a shared filesystem"). Default true.
   */
  readonly sharedFilesystem?: boolean | undefined
  /** the remote store jobs exchange through when sharedFilesystem is false; default the config's top-level "remote" */
  readonly remote?: RemoteConfig | undefined
  /** with sharedFilesystem false: the node-local directory for the job's scratch store; default $TMPDIR/anneal-node on the node */
  readonly scratchDir?: string | undefined
  /** the scratch store's size cap in GiB, kept as each job ends; default min(50, half its filesystem) (cache/remote/scratch-gc.ts) */
  readonly scratchMaxGb?: number | undefined
  /** scratch artifacts unused (checkpoints unwritten) this many days are removed as each job ends; default 7 */
  readonly scratchMaxAgeDays?: number | undefined
}

// Beside this module: cluster-runner.ts in the sources, cluster-runner.js once built (dist/).
const runnerScript = fileURLToPath(new URL(`./cluster-runner${path.extname(fileURLToPath(import.meta.url))}`, import.meta.url))
const nodeScript = fileURLToPath(new URL(`./cluster-node${path.extname(fileURLToPath(import.meta.url))}`, import.meta.url))

export const nodeBinary = (configured?: string): string => {
  if (configured !== undefined) return configured
  let local: string | undefined
  try {
    // the Node 24 the package brings (the "node" dependency), wherever npm placed it
    local = path.join(path.dirname(createRequire(import.meta.url).resolve("node/package.json")), "bin", "node")
  } catch {
    local = undefined
  }
  return local !== undefined && fs.existsSync(local) ? local : process.execPath
}

export const defaultStateDir = (spec: StepSpec): string => path.join(path.dirname(path.dirname(spec.resumeDir)), "jobs")

export const resourcesOf = (spec: StepSpec): JobResources => {
  const nodes = gangNodes(spec)
  if (nodes === 1) return jobResources({ gpus: spec.devices.gpus.length, cpus: spec.devices.cpus, memoryGb: spec.devices.memoryGb })
  // a gang's grant is its total: each node gets its share
  const memoryGb = spec.devices.memoryGb
  return {
    ...jobResources({
      gpus: Math.ceil(spec.devices.gpus.length / nodes),
      cpus: Math.ceil(spec.devices.cpus / nodes),
      memoryGb: memoryGb !== undefined ? memoryGb / nodes : undefined
    }),
    nodes
  }
}

/** The nodes a training step asks for (its `nodes` param); 1 for every other step. */
const gangNodes = (spec: StepSpec): number => {
  const nodes = spec.params.nodes
  return spec.implementation.type === "command" && typeof nodes === "number" && Number.isInteger(nodes) && nodes > 1 ? nodes : 1
}

/**
 * A multi-node training step's launch (cluster-job.ts Gang), from its params (nodes, gpusPerNode or
 * processes) and its command: the interpreter is argv[0], the worker the first `.py` argument, and what
 * follows it the worker's arguments (the spec), whether the command is `python WORKER.py SPEC` or the
 * one-node torchrun form. Undefined for a one-node step.
 */
export const gangOf = (spec: StepSpec, argv: ReadonlyArray<string>): Gang | undefined => {
  const nodes = gangNodes(spec)
  if (nodes === 1) return undefined
  const at = argv.findIndex((a, i) => i > 0 && a.endsWith(".py"))
  if (at < 0) throw new Error(`${spec.step} asks for ${nodes} nodes, but its command runs no Python worker script (${argv.join(" ")})`)
  const perNode = spec.params.gpusPerNode ?? spec.params.processes ?? 1
  if (typeof perNode !== "number" || !Number.isInteger(perNode) || perNode < 1) {
    throw new Error(`${spec.step}: processes per node must be a positive integer, got ${JSON.stringify(perNode)}`)
  }
  return { nodes, processesPerNode: perNode, python: argv[0]!, script: argv[at]!, args: argv.slice(at + 1), runId: spec.key }
}

/**
 * Lines that say nothing about why a step failed: a library's own words for an interruption (Effect's
 * "All fibers interrupted without error"), stack frames, Node's version footer, the runner's own
 * start-up line, Ray's echo of the entrypoint. Never shown as the worker's last error line.
 */
const noise: ReadonlyArray<RegExp> = [
  /all fibers interrupted without error/i,
  /^(error: )?interrupted$/i,
  /^at \S/,
  /^Node\.js v\d/,
  /^\^+$/,
  /^[{}\[\]]$/,
  /^anneal runner: .* on \S+ \(CUDA_VISIBLE_DEVICES=/,
  /^anneal runner: SIG\w+, stopping the step$/,
  /^anneal runner: SIGUSR1, the time limit is near/,
  /^\[anneal\] /,
  // Ray's own lines in a job's log: its entrypoint echoed, its INFO/DEBUG logging
  /^Running entrypoint for job /,
  /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+\s+(INFO|DEBUG)\s/
]
const isNoise = (line: string) => noise.some((re) => re.test(line))
/** "Error: ...", "ModuleNotFoundError: ...", "error: ...", "Error [ERR_MODULE_NOT_FOUND]: ..." */
const errorLike = /^(?:[\w.]*(?:Error|Exception)(?: \[\w+\])?:|error:|fatal:)/i

/** The line of a failed job's output that best says why it failed: the last error-like one, else the last one. */
export const lastErrorLine = (lines: ReadonlyArray<string>): string | undefined => {
  const useful = lines.map((l) => l.trim()).filter((l) => l !== "" && !isNoise(l))
  return useful.findLast((l) => errorLike.test(l)) ?? useful.at(-1)
}

/** consecutive failed state queries after which the step fails (the cluster is unreachable) */
const maxFailedQueries = 10
/**
 * How long a job must stay failed before the step fails: a requeued job looks failed for a moment, and
 * that moment is longer on a busy controller, so the wait grows with how long the controller took to
 * answer (at least the backend's failureSettleMs, and three of its answers' worth), and at least two looks must agree.
 */
const failureSettleMs = (backend: ClusterBackend, lastAnswerMs: number) => Math.max(backend.failureSettleMs ?? 3000, 3 * lastAnswerMs)

const live = (phase: JobPhase) => phase === "queued" || phase === "running"

const defaultRetryOn: ReadonlyArray<FailureKind> = ["node-failure", "preemption", "timeout", "oom"]

type StatusQuery = (jobId: string) => Promise<JobStatus>

/**
 * State queries for all the jobs an executor follows, gathered into one call to the cluster: the
 * queries made within `windowMs` of the first go out as one `statusMany`. Followers poll on a common
 * grid (every pollSeconds, on the clock), so a run with 500 jobs asks the controller once per poll,
 * not 500 times. A backend without statusMany is asked job by job.
 */
export const batchedStatus = (backend: ClusterBackend, windowMs: number): StatusQuery => {
  const many = backend.statusMany
  if (many === undefined) return backend.status
  type Waiter = { readonly resolve: (s: JobStatus) => void; readonly reject: (e: unknown) => void }
  let waiting = new Map<string, Array<Waiter>>()
  let timer: NodeJS.Timeout | undefined
  const flush = async () => {
    timer = undefined
    const batch = waiting
    waiting = new Map()
    try {
      const answers = await many([...batch.keys()])
      for (const [id, waiters] of batch) {
        const answer = answers.get(id)
        for (const w of waiters) {
          if (answer !== undefined) w.resolve(answer)
          else w.reject(new Error(`the cluster's answer left out ${backend.label(id)}`))
        }
      }
    } catch (e) {
      for (const waiters of batch.values()) for (const w of waiters) w.reject(e)
    }
  }
  return (jobId) =>
    new Promise<JobStatus>((resolve, reject) => {
      waiting.set(jobId, [...(waiting.get(jobId) ?? []), { resolve, reject }])
      timer ??= setTimeout(() => void flush(), windowMs)
    })
}

/** The directories a job touches, none inside another: what a container must bind. */
const bindsOf = (dirs: ReadonlyArray<string>): Array<string> => {
  const sorted = [...new Set(dirs.map((d) => path.resolve(d)))].sort()
  return sorted.filter((d, i) => !sorted.slice(0, i).some((p) => d === p || d.startsWith(p.endsWith(path.sep) ? p : p + path.sep)))
}

/** Waits up to `ms` for a file another node wrote to show here (a network filesystem's caches can hide it). */
const waitForFile = (file: string, ms: number) =>
  Effect.gen(function* () {
    const until = Date.now() + ms
    for (;;) {
      try {
        // listing the directory refreshes an NFS client's cached view of it
        fs.readdirSync(path.dirname(file))
      } catch {
        // not there yet either
      }
      if (fs.existsSync(file) || Date.now() >= until) return fs.existsSync(file)
      yield* Effect.sleep(Math.min(250, Math.max(1, until - Date.now())))
    }
  })

/** Moves the job's output into the engine's staging directory (a rename: both are in the store). */
const handOver = (from: string, to: string) => {
  fs.rmSync(to, { recursive: true, force: true })
  try {
    fs.renameSync(from, to)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e
    fs.cpSync(from, to, { recursive: true })
    fs.rmSync(from, { recursive: true, force: true })
  }
}

export const makeClusterExecutor = (backend: ClusterBackend, options: ClusterOptions = {}): Executor => {
  const pollMs = (options.pollSeconds ?? 1) * 1000
  const fileWaitMs = (options.fileWaitSeconds ?? 30) * 1000
  const maxRetries = Math.max(0, options.retry?.maxRetries ?? 2)
  const retryOn = options.retry?.on ?? defaultRetryOn
  const memoryFactor = options.retry?.memoryFactor ?? 1.5
  const timeFactor = options.retry?.timeFactor ?? 1
  // queries within a fifth of a poll of the first go out together: a driver following hundreds of jobs
  // answers their timers late by some tens of ms, and a wider window still delays an answer by little
  const queryStatus = batchedStatus(backend, Math.min(1000, Math.max(10, pollMs / 5)))
  const followMs = (options.followSeconds ?? 0.25) * 1000
  const launcher = options.launcher ?? "exec-step"
  const problem = remoteProblem(backend.name, options)
  if (problem !== undefined) throw new Error(problem)
  // with no shared filesystem, jobs exchange everything through the remote (cache/remote/job-channel.ts);
  // that code loads only then
  let remoteJobs: Promise<RemoteJobs> | undefined
  const jobsChannel = (): Promise<RemoteJobs> | undefined => {
    if (options.sharedFilesystem !== false) return undefined
    remoteJobs ??= import("../../cache/remote/job-channel.ts").then((m) => new m.RemoteJobs(options.remote!))
    return remoteJobs
  }
  const mirrors = new Map<string, JobMirror>()

  const run = (spec: StepSpec, emit: (event: EngineEvent) => void): Effect.Effect<ExecResult, StepExecutionError> =>
    Effect.suspend(() => runNow(spec, emit))

  const runNow = (spec: StepSpec, emit: (event: EngineEvent) => void): Effect.Effect<ExecResult, StepExecutionError> => {
    const stateDir = options.stateDir ?? defaultStateDir(spec)
    const metrics: Record<string, number | string> = {}
    const tail: Array<string> = []
    const clusterOutput: Array<string> = []
    let lastError: string | undefined
    let current: JobRecord | undefined

    let logFd: number
    try {
      fs.mkdirSync(path.dirname(spec.logPath), { recursive: true })
      logFd = fs.openSync(spec.logPath, "a")
    } catch (e) {
      return Effect.fail(new StepExecutionError(spec.step, `cannot open the step's log ${spec.logPath}: ${messageOf(e)}`, undefined, e))
    }
    const writeLog = (line: string, worker = true) => {
      try {
        fs.writeSync(logFd, line.endsWith("\n") ? line : line + "\n")
      } catch {
        // the log is closed after the step settled
      }
      const t = line.trim()
      if (worker && t !== "" && !isNoise(t)) {
        tail.push(t)
        if (tail.length > 200) tail.shift()
      }
    }
    const note = (message: string, level: "info" | "warn" = "info") => {
      writeLog(`[anneal] ${message}`)
      emit({ event: "log", step: spec.step, level, message })
    }
    const call = <A>(what: string, f: () => Promise<A>) =>
      Effect.tryPromise({
        try: f,
        catch: (e) => new StepExecutionError(spec.step, `${backend.name}: ${what}: ${messageOf(e)}`, undefined, e)
      })
    const sync = <A>(what: string, f: () => A) =>
      Effect.try({ try: f, catch: (e) => new StepExecutionError(spec.step, `${backend.name}: ${what}: ${messageOf(e)}`, undefined, e) })

    // cannot reject: a failure to read the job's output becomes the text shown in its place
    const readJobOutput = (jobId: string, attemptDir: string) =>
      Effect.promise(async () => {
        if (backend.jobOutput === undefined) return undefined
        try {
          return await backend.jobOutput(jobId, attemptDir)
        } catch (e) {
          return `(could not read it: ${messageOf(e)})`
        }
      })

    /** A recorded job of this key we can attach to, or undefined when a new submission is needed. */
    const findRecorded = Effect.gen(function* () {
      let rec = readRecord(stateDir, spec.key)
      if (rec === undefined || rec.executor !== backend.name || rec.ended !== undefined) return { rec: undefined, previous: rec }
      if (rec.jobId === undefined && backend.findByName !== undefined) {
        const name = rec.name
        const found = yield* call(`looking for job ${name}`, () => backend.findByName!(name))
        if (found !== undefined) {
          const withId = { ...rec, jobId: found }
          yield* sync("recording the job", () => writeRecord(stateDir, withId))
          rec = withId
        }
      }
      if (rec.jobId === undefined) return { rec: undefined, previous: rec }
      const jobId = rec.jobId
      const status = yield* call(`querying ${backend.label(jobId)}`, () => backend.status(jobId))
      const finishedOk = status.phase === "succeeded" || (status.phase === "gone" && readExit(rec.attemptDir)?.code === 0)
      if (live(status.phase) || finishedOk) return { rec, previous: rec }
      return { rec: undefined, previous: rec }
    })

    const submit = (attempt: number, scale = { memory: 1, time: 1 }) =>
      Effect.gen(function* () {
        // earlier attempts' files are of no more use: checkpoints live in the resume dir
        yield* sync("clearing old attempts", () => fs.rmSync(keyDir(stateDir, spec.key), { recursive: true, force: true }))
        let rec = newRecord(backend.name, stateDir, spec.key, spec.step, attempt)
        if (backend.chooseJobId !== undefined) rec = { ...rec, jobId: backend.chooseJobId(rec.name) }
        const files = attemptFiles(rec.attemptDir)
        const impl = spec.implementation
        if (launcher === "command" && impl.type !== "command") {
          return yield* Effect.fail(new StepExecutionError(spec.step, `${backend.name}: the "command" launcher cannot run TS step ${spec.step}; use the exec-step launcher`))
        }
        const driverSpecPath = impl.type === "command" ? impl.env.ANNEAL_SPEC : undefined
        const remote: StepSpec = {
          ...spec,
          output: files.output,
          logPath: path.join(rec.attemptDir, "step.log"),
          implementation: impl.type === "ts" ? impl : {
            ...impl,
            argv: impl.argv.map((a) => (a === driverSpecPath ? files.spec : a)),
            env: { ...impl.env, ANNEAL_SPEC: files.spec }
          }
        }
        const node = nodeBinary(options.node)
        // a multi-node step runs its worker through one torchrun per node, not through exec-step
        const gang = remote.implementation.type === "command" ? yield* sync("planning the multi-node launch", () => gangOf(spec, (remote.implementation as { argv: ReadonlyArray<string> }).argv)) : undefined
        if (gang !== undefined && options.sharedFilesystem === false) {
          return yield* Effect.fail(new StepExecutionError(spec.step, `${backend.name}: ${spec.step} asks for ${gang.nodes} nodes; multi-node steps need a shared filesystem ("sharedFilesystem": false is set)`))
        }
        if (gang !== undefined && backend.gangCommand === undefined) {
          return yield* Effect.fail(new StepExecutionError(spec.step, `${backend.name}: ${spec.step} asks for ${gang.nodes} nodes, which the ${backend.name} executor cannot launch`))
        }
        const job: RunnerJob = yield* sync("building the job's command", (): RunnerJob => ({
          argv: gang !== undefined
            ? backend.gangCommand!(gang, [node, nodeScript, files.job], resourcesOf(spec))
            : launcher === "exec-step" || remote.implementation.type === "ts"
            ? [node, path.join(projectRoot, "bin", "anneal.js"), "exec-step", files.spec]
            : remote.implementation.argv,
          env: remote.implementation.type === "command" && (launcher === "command" || gang !== undefined)
            ? { ...remote.implementation.env, ANNEAL_STEP: spec.step, ANNEAL_CHECKPOINT_REQUEST: files.checkpointRequest }
            : { ANNEAL_STEP: spec.step, ANNEAL_CHECKPOINT_REQUEST: files.checkpointRequest },
          cwd: (remote.implementation.type === "command" ? remote.implementation.cwd : undefined) ?? process.cwd(),
          spec: files.spec,
          output: files.output,
          events: files.events,
          log: files.log,
          exit: files.exit,
          gpus: spec.devices.gpus.length,
          ...(gang !== undefined ? { gang } : {})
        }))
        yield* sync("writing the job files", () => {
          fs.mkdirSync(rec.attemptDir, { recursive: true })
          writeAtomic(files.spec, JSON.stringify(remote, null, 2) + "\n")
          writeAtomic(files.job, JSON.stringify(job, null, 2) + "\n")
          // recorded before submitting: a driver that dies from here on finds the job again
          writeRecord(stateDir, rec)
        })
        current = rec
        const channel = jobsChannel()
        const command = channel === undefined
          ? [node, runnerScript, files.job]
          : yield* call(`sending the job's inputs and orders through the remote`, async () =>
            (await channel).prepare(node, spec, attempt, rec.attemptDir, job, remote, options))
        const jobId = yield* call("submitting the job", () =>
          backend.submit({
            jobId: rec.jobId,
            name: rec.name,
            step: spec.step,
            kind: spec.kind,
            key: spec.key,
            attemptDir: rec.attemptDir,
            command,
            resources: resourcesOf(spec),
            binds: bindsOf([
              projectRoot, stateDir, path.dirname(path.dirname(spec.resumeDir)), job.cwd, path.dirname(spec.recipe),
              ...Object.values(spec.inputs).flat().map((p) => path.dirname(p))
            ]),
            scale
          }))
        rec = { ...rec, jobId }
        yield* sync("recording the job", () => writeRecord(stateDir, rec))
        current = rec
        note(`submitted ${backend.label(jobId)}${attempt > 1 ? ` (attempt ${attempt})` : ""}`)
        return rec
      })

    const follow = (rec: JobRecord & { readonly jobId: string }) =>
      Effect.gen(function* () {
        const files = attemptFiles(rec.attemptDir)
        const channel = jobsChannel()
        const mirror = channel === undefined
          ? undefined
          : yield* call("following the job through the remote", async () => (await channel).follow(spec.key, rec.attempt, rec.attemptDir))
        if (mirror !== undefined) mirrors.set(rec.attemptDir, mirror)
        let nextMirror = 0
        const events = new FileFollower(files.events)
        const logs = [new FileFollower(files.log), new FileFollower(path.join(rec.attemptDir, "step.log"))]
        const drain = (final: boolean) => {
          for (const line of events.read(final)) {
            const event = protocolEvent(spec.step, line, metrics)
            if (event === undefined) {
              if (line.trim() !== "") writeLog(line)
              continue
            }
            if (event.event === "log") {
              writeLog(`[${event.level}] ${event.message}`)
              if (event.level === "error" && !isNoise(event.message.trim())) lastError = event.message
            }
            emit(event)
          }
          for (const f of logs) for (const line of f.read(final)) writeLog(line)
        }
        let status: JobStatus | undefined
        let nextPoll = 0
        let failedQueries = 0
        let endedAt: number | undefined
        let endedLooks = 0
        for (;;) {
          if (mirror !== undefined && Date.now() >= nextMirror) {
            // the job's batches, copied from the remote into the attempt dir, about once a second
            nextMirror = Date.now() + Math.max(1000, followMs)
            // a remote that does not answer is noted in mirror.problem and tried again; what rejects is a bug to report
            yield* call("copying the job's output from the remote", () => mirror.sync())
          }
          yield* sync("reading the job's output", () => drain(false))
          if (Date.now() >= nextPoll) {
            // on the clock's grid, so that every job's follower asks at the same moment: one batched query
            nextPoll = (Math.floor(Date.now() / pollMs) + 1) * pollMs
            // a controller busy for a moment is no reason to give up on a job that may run for days
            const asked = Date.now()
            const answer = yield* Effect.exit(call(`querying ${backend.label(rec.jobId)}`, () => queryStatus(rec.jobId)))
            const answerMs = Date.now() - asked
            if (Exit.isFailure(answer)) {
              if (++failedQueries >= maxFailedQueries) return yield* answer
            } else {
              failedQueries = 0
              status = answer.value
              if (status.phase === "failed") {
                // A job being requeued (preemption, `scontrol requeue`) shows as ended for a moment
                // before it is pending again: believe an ending only when a later look agrees.
                endedAt ??= Date.now()
                if (++endedLooks >= 2 && Date.now() - endedAt >= failureSettleMs(backend, answerMs)) break
                nextPoll = Math.min(nextPoll, Date.now() + followMs)
              } else {
                endedAt = undefined
                endedLooks = 0
                if (!live(status.phase)) break
              }
            }
          }
          // wake at the poll's moment, not only on this follower's own beat: every follower then asks together
          yield* Effect.sleep(Math.max(1, Math.min(followMs, nextPoll - Date.now())))
        }
        // through the remote: its last batches, its output and then its exit record, copied here first
        if (mirror !== undefined) {
          yield* call("copying the job's output from the remote", () => mirror.waitForExit(status!.phase === "failed" ? 0 : fileWaitMs))
        }
        yield* sync("reading the job's output", () => drain(true))
        return status!
      })

    /**
     * The logs of a distributed step's other ranks (`step.rank<R>.log`, python/anneal_worker/distributed.py)
     * and other nodes (`node-<R>.log`, ray-gang.py) go beside the step's log before the job's files are
     * removed: every rank's log is kept, as for a local run.
     */
    const keepRankLogs = (attemptDir: string) => {
      let names: Array<string> = []
      try {
        names = fs.readdirSync(attemptDir)
      } catch {
        return
      }
      const stem = spec.logPath.replace(/\.log$/, "")
      for (const name of names) {
        const m = /^step\.(rank\d+)\.log$/.exec(name) ?? /^node-(\d+)\.log$/.exec(name)
        if (m === null) continue
        const to = `${stem}.${m[1]!.startsWith("rank") ? m[1] : `node${m[1]}`}.log`
        try {
          fs.copyFileSync(path.join(attemptDir, name), to)
        } catch (e) {
          writeLog(`[anneal] could not keep ${name}: ${messageOf(e)}`)
        }
      }
    }

    /** The job's outcome: its artifact handed over, or why it failed and whether a retry may help. */
    const settle = (rec: JobRecord & { readonly jobId: string }, status: JobStatus) =>
      Effect.gen(function* () {
        const files = attemptFiles(rec.attemptDir)
        const mirror = mirrors.get(rec.attemptDir)
        mirrors.delete(rec.attemptDir)
        // the job's exchange with the driver is over: its objects go (its output stays, content-addressed)
        if (mirror !== undefined) {
          // cannot reject (the catch): objects left behind cost storage, not the step
          yield* Effect.promise(() => mirror.remove().catch(() => {}))
          if (mirror.problem !== undefined) writeLog(mirror.problem)
        }
        // a job that ended on another node may not have its exit status visible here yet
        if (status.phase === "succeeded" || status.phase === "gone") yield* waitForFile(files.exit, fileWaitMs)
        const exit = readExit(rec.attemptDir)
        const label = backend.label(rec.jobId)
        const ok = status.phase === "succeeded" || (status.phase === "gone" && exit?.code === 0)
        keepRankLogs(rec.attemptDir)
        if (ok) {
          if (!(yield* waitForFile(files.output, fileWaitMs))) {
            yield* sync("recording the job's end", () => endJob(stateDir, rec, "no output"))
            current = undefined
            return yield* Effect.fail(new StepExecutionError(spec.step, `${label} finished but left no output at ${files.output}`))
          }
          yield* sync("moving the job's output into staging", () => handOver(files.output, spec.output))
          yield* sync("removing the finished job's files", () => removeJob(stateDir, spec.key))
          current = undefined
          return { result: { metrics } satisfies ExecResult }
        }
        // the cluster's own output goes into the step's log before the job's files are removed: when the
        // job failed before the runner started, it is all there is
        const own = yield* readJobOutput(rec.jobId, rec.attemptDir)
        if (own !== undefined && own.trim() !== "") {
          writeLog(`[anneal] ${label}'s own output (${backend.name}):`)
          for (const line of own.replace(/\n$/, "").split("\n")) {
            writeLog(line, false)
            clusterOutput.push(line)
          }
        }
        const detail = lastError ?? lastErrorLine(tail) ?? lastErrorLine(clusterOutput)
        const code = status.exitCode ?? exit?.code ?? undefined
        const why = status.phase === "gone"
          ? `is no longer known to ${backend.name} and left no exit status (lost with its node?)`
          : `${status.state}${status.reason !== undefined ? `: ${status.reason}` : ""}`
        yield* sync("recording the job's end", () => endJob(stateDir, rec, status.state))
        current = undefined
        const failure: FailureKind | undefined = status.phase === "gone"
          ? (exit !== undefined && exit.code !== 0 ? "step-error" : "node-failure")
          : status.failure
        return {
          failure,
          error: new StepExecutionError(spec.step, `${label} ${why}${detail !== undefined ? ` — ${detail}` : ""}`, code ?? undefined)
        }
      })

    /**
     * Interrupted: cancel the job and wait until the cluster has stopped it. It runs as the interrupt's
     * finalizer, which has no error channel, so it cannot reject: each thing that can fail is caught and
     * written to the step's log, and the interruption goes on.
     */
    const cancel = Effect.promise(async () => {
      const rec = current
      if (rec === undefined) return
      try {
        const jobId = rec.jobId ?? (await backend.findByName?.(rec.name))
        if (jobId !== undefined) {
          await backend.cancel(jobId)
          // A running job is waited for until the cluster has stopped it. A queued one that stays queued
          // (Ray stops a pending job only once it starts) is left behind: its files are removed below,
          // so if it ever starts, the runner finds no orders and exits without running the step.
          const started = Date.now()
          let last: JobStatus | undefined
          while (Date.now() - started < 60_000) {
            last = await backend.status(jobId).catch(() => last)
            if (last !== undefined && !live(last.phase)) break
            if (last?.phase === "queued" && Date.now() - started > 5_000) break
            await new Promise((ok) => setTimeout(ok, 250))
          }
          writeLog(`[anneal] cancelled ${backend.label(jobId)}${last !== undefined && live(last.phase) ? ` (still ${last.state} on the cluster)` : ""}`)
        }
      } catch (e) {
        writeLog(`[anneal] could not cancel the job: ${messageOf(e)}`)
      }
      await mirrors.get(rec.attemptDir)?.remove().catch(() => {})
      try {
        endJob(stateDir, rec, "interrupted")
      } catch {
        try {
          removeJob(stateDir, spec.key)
        } catch (e) {
          writeLog(`[anneal] could not remove the job's record under ${stateDir}: ${messageOf(e)}`)
        }
      }
    })

    return Effect.gen(function* () {
      const found = yield* findRecorded
      let rec: JobRecord
      if (found.rec !== undefined) {
        rec = found.rec
        current = rec
        note(`reattached to ${backend.label(rec.jobId!)} (submitted ${rec.submittedAt} by pid ${rec.driverPid} on ${rec.driverHost})`)
      } else {
        rec = yield* submit((found.previous?.attempt ?? 0) + 1)
      }
      // the retry policy: a job lost with its node, preempted, out of time or out of memory is submitted
      // again (with more memory or time where the policy says), and resumes from its checkpoint
      let retries = 0
      let scale = { memory: 1, time: 1 }
      for (;;) {
        const withId = rec as JobRecord & { readonly jobId: string }
        const status = yield* follow(withId)
        const outcome = yield* settle(withId, status)
        if (outcome.result !== undefined) return outcome.result
        const failure = outcome.failure
        if (failure === undefined || !retryOn.includes(failure) || retries >= maxRetries) return yield* Effect.fail(outcome.error)
        retries += 1
        if (failure === "oom") scale = { ...scale, memory: scale.memory * memoryFactor }
        if (failure === "timeout") scale = { ...scale, time: scale.time * timeFactor }
        note(`${outcome.error.message}; retrying (${failure}, retry ${retries} of ${maxRetries})`, "warn")
        lastError = undefined
        tail.length = 0
        clusterOutput.length = 0
        rec = yield* submit(withId.attempt + 1, scale)
      }
    }).pipe(
      Effect.onInterrupt(() => cancel),
      Effect.ensuring(Effect.sync(() => fs.closeSync(logFd)))
    )
  }

  // the run is over: the remote's local stores close, and the driver's lease on the remote goes
  const close = async () => (await remoteJobs?.catch(() => undefined))?.close()

  return { name: backend.name, run, close }
}

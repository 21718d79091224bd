/**
 * The Slurm executor: each step is one batch job (`sbatch`), its state read with `scontrol show job`
 * (and `sacct` once the controller has forgotten the job, where accounting is on), cancelled with
 * `scancel`. Resources come from the spec's devices (GPUs as `--gres=gpu:N`, `--cpus-per-task`,
 * `--mem`), the rest (partition, account, time limit, extra sbatch flags) from the executor config,
 * with per-step overrides by step id or kind. Jobs are submitted `--requeue` by default: a preempted
 * job or one whose node failed runs again, and the step resumes from its checkpoint in the resume dir.
 *
 * The batch script is two lines of POSIX sh, written into the job's attempt directory, that exec the
 * runner with the project's Node 24 (cluster-runner.ts); Slurm needs a script, so that one command line
 * is quoted word by word (shellQuote), and everything else runs from argument arrays.
 */
import * as fs from "node:fs"
import * as Schema from "effect/Schema"
import { execa } from "execa"
import type { Executor } from "../spec.ts"
import { attemptFiles, shellQuote } from "./cluster-job.ts"
import { registerExecutor } from "./registry.ts"
import { clusterCapacity, clusterConfigFields, jobResources, makeClusterExecutor } from "./cluster-executor.ts"
import type { ClusterBackend, ClusterOptions, JobStatus, SubmitRequest } from "./cluster-executor.ts"

export interface SlurmPlacement {
  readonly partition?: string | undefined
  readonly account?: string | undefined
  readonly qos?: string | undefined
  /** Slurm's --time: "MM", "HH:MM:SS" or "D-HH:MM:SS" */
  readonly timeLimit?: string | undefined
  /** memory when the step names none, in GiB */
  readonly memoryGb?: number | undefined
  /** the gres type, e.g. "a100" for --gres=gpu:a100:N */
  readonly gpuType?: string | undefined
  /** more sbatch flags, one word each: ["--constraint=ib", "--exclusive"] */
  readonly sbatchArgs?: ReadonlyArray<string> | undefined
}

export interface SlurmOptions extends ClusterOptions, SlurmPlacement {
  /** path of slurm.conf for the client commands (SLURM_CONF), when not the system's */
  readonly slurmConf?: string | undefined
  /** rerun the job after preemption or a node failure (sbatch --requeue); default true */
  readonly requeue?: boolean | undefined
  /** per-step settings, by step id or step kind (the id wins) */
  readonly steps?: Readonly<Record<string, SlurmPlacement>> | undefined
}

/** The placement a step gets: the executor's settings with the step's overrides on top. */
export const slurmPlacement = (options: SlurmOptions, step: string, kind: string): SlurmPlacement => ({
  partition: options.partition,
  account: options.account,
  qos: options.qos,
  timeLimit: options.timeLimit,
  memoryGb: options.memoryGb,
  gpuType: options.gpuType,
  sbatchArgs: options.sbatchArgs,
  ...options.steps?.[kind],
  ...options.steps?.[step]
})

/** sbatch's resource flags for a request. */
export const sbatchResourceArgs = (
  placement: SlurmPlacement,
  resources: { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined }
): Array<string> => {
  const args = [`--cpus-per-task=${resources.cpus}`]
  const memoryGb = resources.memoryGb ?? placement.memoryGb
  if (memoryGb !== undefined && memoryGb > 0) args.push(`--mem=${Math.ceil(memoryGb * 1024)}M`)
  if (resources.gpus > 0) args.push(`--gres=gpu:${placement.gpuType !== undefined ? `${placement.gpuType}:` : ""}${resources.gpus}`)
  if (placement.partition !== undefined) args.push(`--partition=${placement.partition}`)
  if (placement.account !== undefined) args.push(`--account=${placement.account}`)
  if (placement.qos !== undefined) args.push(`--qos=${placement.qos}`)
  if (placement.timeLimit !== undefined) args.push(`--time=${placement.timeLimit}`)
  return [...args, ...(placement.sbatchArgs ?? [])]
}

/** What one submission adds to the step's arguments: its name, and where its script and output are. */
export interface SbatchJob {
  readonly name: string
  readonly attemptDir: string
}

/**
 * Every argument sbatch gets for a step, in order: the one source for submitting and for `anneal plan`
 * (which passes no job, so the per-submission name, output file, directory and script are left out).
 */
export const sbatchArgs = (
  options: SlurmOptions,
  step: string,
  kind: string,
  resources: { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined },
  job?: SbatchJob
): Array<string> => {
  const files = job !== undefined ? attemptFiles(job.attemptDir) : undefined
  return [
    ...(job !== undefined && files !== undefined
      ? ["--parsable", `--job-name=${job.name}`, `--output=${files.clusterLog}`, `--chdir=${job.attemptDir}`]
      : []),
    options.requeue === false ? "--no-requeue" : "--requeue",
    ...sbatchResourceArgs(slurmPlacement(options, step, kind), jobResources(resources)),
    ...(files !== undefined ? [files.script] : [])
  ]
}

const liveStates = new Set([
  "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED",
  "RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESV_DEL_HOLD", "STOPPED"
])

/** What each way a job can end means to the person who ran it. */
const endings: Record<string, string> = {
  CANCELLED: "cancelled from outside anneal (scancel or an administrator)",
  TIMEOUT: "hit its time limit",
  PREEMPTED: "was preempted by a higher-priority job",
  NODE_FAIL: "its node failed",
  BOOT_FAIL: "its node failed to boot",
  OUT_OF_MEMORY: "ran out of memory (raise memoryGb)",
  DEADLINE: "missed its deadline",
  FAILED: "the step exited with an error"
}

/** `scontrol show job -o` prints one line of Key=Value pairs. */
export const parseScontrol = (line: string): Record<string, string> => {
  const fields: Record<string, string> = {}
  for (const m of line.matchAll(/(?:^|\s)([A-Za-z:/]+)=(\S*)/g)) fields[m[1]!] ??= m[2]!
  return fields
}

/** A job's state from Slurm's words for it. `exitCode` is "code:signal". */
export const slurmStatus = (state: string, reason: string | undefined, exitCode: string | undefined): JobStatus => {
  const [code, signal] = (exitCode ?? "").split(":").map((n) => Number(n))
  const base = state.split(" ")[0]!.replace(/\+$/, "")
  if (liveStates.has(base)) return { phase: base === "PENDING" ? "queued" : "running", state: base }
  if (base === "COMPLETED") return { phase: code === 0 ? "succeeded" : "failed", state: base, exitCode: code }
  const parts = [endings[base] ?? base.toLowerCase()]
  if (reason !== undefined && reason !== "None" && reason !== "(null)" && reason !== "") parts.push(`reason ${reason}`)
  if (base === "FAILED" && code !== undefined && Number.isFinite(code)) parts.push(`exit code ${code}`)
  if (signal !== undefined && signal > 0) parts.push(`signal ${signal}`)
  return { phase: "failed", state: base, reason: parts.join(", "), exitCode: Number.isFinite(code) ? code : undefined }
}

export const makeSlurmBackend = (options: SlurmOptions = {}): ClusterBackend => {
  const env = options.slurmConf !== undefined ? { SLURM_CONF: options.slurmConf } : {}
  const slurm = async (command: string, args: ReadonlyArray<string>) => {
    const r = await execa(command, args, { env, reject: false, timeout: 60_000, stdin: "ignore" })
    if (r.failed && r.exitCode === undefined) {
      throw new Error(`cannot run ${command}: ${r.shortMessage}${r.code === "ENOENT" ? " (is Slurm's client installed and on PATH?)" : ""}`)
    }
    return r
  }

  const submit = async (req: SubmitRequest): Promise<string> => {
    const files = attemptFiles(req.attemptDir)
    fs.writeFileSync(
      files.script,
      `#!/bin/sh\n# anneal step ${req.step.replace(/\n/g, " ")} (key ${req.key}), written by the Slurm executor\nexec ${req.command.map(shellQuote).join(" ")}\n`,
      { mode: 0o755 }
    )
    const r = await slurm("sbatch", sbatchArgs(options, req.step, req.kind, req.resources, req))
    const id = r.stdout.trim().split(";")[0]!
    if (r.exitCode !== 0 || !/^\d+$/.test(id)) {
      throw new Error(`sbatch refused the job: ${(r.stderr || r.stdout).trim().split("\n").at(-1)}`)
    }
    return id
  }

  const status = async (jobId: string): Promise<JobStatus> => {
    const r = await slurm("scontrol", ["show", "job", "-o", jobId])
    if (r.exitCode === 0 && r.stdout.trim() !== "") {
      const f = parseScontrol(r.stdout.trim())
      return slurmStatus(f.JobState ?? "UNKNOWN", f.Reason, f.ExitCode)
    }
    if (!/Invalid job id/i.test(r.stderr)) throw new Error(`scontrol failed: ${r.stderr.trim()}`)
    // the controller forgot it (MinJobAge passed): ask accounting, where it is on
    const acct = await slurm("sacct", ["-X", "-n", "-P", "-j", jobId, "-o", "State,ExitCode,Reason"])
    const line = acct.exitCode === 0 ? acct.stdout.trim().split("\n")[0] : undefined
    if (line === undefined || line === "") return { phase: "gone", state: "UNKNOWN" }
    const [state, exitCode, reason] = line.split("|")
    return slurmStatus(state ?? "UNKNOWN", reason, exitCode)
  }

  const cancel = async (jobId: string) => {
    const r = await slurm("scancel", [jobId])
    if (r.exitCode !== 0 && !/Invalid job id|already completing or completed/i.test(r.stderr)) {
      throw new Error(`scancel ${jobId} failed: ${r.stderr.trim()}`)
    }
  }

  const findByName = async (name: string) => {
    const r = await slurm("squeue", ["-h", "--name", name, "-o", "%i"])
    const id = r.stdout.trim().split("\n")[0]?.trim()
    return r.exitCode === 0 && id !== undefined && /^\d+$/.test(id) ? id : undefined
  }

  /** Slurm's output file for the job (--output): the shell's and Node's words when the runner never started */
  const jobOutput = async (_jobId: string, attemptDir: string) => {
    try {
      return fs.readFileSync(attemptFiles(attemptDir).clusterLog, "utf8")
    } catch {
      return undefined
    }
  }

  return { name: "slurm", label: (id) => `slurm job ${id}`, submit, status, cancel, findByName, jobOutput }
}

export const makeSlurmExecutor = (options: SlurmOptions = {}): Executor =>
  makeClusterExecutor(makeSlurmBackend(options), options)

/** Where `anneal plan` says a step would run: the sbatch arguments its job will get (sbatchArgs). */
export const describeSlurmPlacement = (
  options: SlurmOptions,
  step: string,
  kind: string,
  resources: { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined }
): string => `slurm: sbatch ${sbatchArgs(options, step, kind, resources).map(shellQuote).join(" ")}`

const opt = Schema.optional
const slurmPlacementFields = {
  partition: opt(Schema.String),
  account: opt(Schema.String),
  qos: opt(Schema.String),
  timeLimit: opt(Schema.String),
  memoryGb: opt(Schema.Number),
  gpuType: opt(Schema.String),
  sbatchArgs: opt(Schema.Array(Schema.String))
}
/** The "slurm" section of anneal.config.json. */
export const SlurmConfig = Schema.Struct({
  ...slurmPlacementFields,
  ...clusterConfigFields,
  slurmConf: opt(Schema.String),
  requeue: opt(Schema.Boolean),
  steps: opt(Schema.Record(Schema.String, Schema.Struct(slurmPlacementFields)))
})
export type SlurmConfig = typeof SlurmConfig.Type

declare module "./registry.ts" {
  interface ExecutorConfigs {
    slurm: SlurmConfig
  }
}

registerExecutor<SlurmConfig>({
  name: "slurm",
  config: SlurmConfig,
  make: (config, { stateDir }) => makeSlurmExecutor({ ...config, ...(stateDir !== undefined ? { stateDir } : {}) }),
  describe: (config, step, kind, resources) => describeSlurmPlacement(config ?? {}, step, kind, resources),
  capacity: clusterCapacity
})

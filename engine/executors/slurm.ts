/**
 * The Slurm executor: each step is one batch job (`sbatch`), cancelled with `scancel`. The states of all
 * of a run's jobs are read with one `squeue -j a,b,c` per poll (statusMany), and a job's ending with
 * `scontrol show job` (and `sacct` once the controller has forgotten the job, where accounting is on).
 * Resources come from the spec's devices (GPUs as `--gres=gpu:[type:]N` or `--gpus-per-node`,
 * `--cpus-per-task`, `--mem`, else `--mem-per-cpu` from the config so a step without a memory figure
 * does not take a whole node), the rest (partition, account, time limit, setup lines, a container,
 * extra sbatch flags) from the executor config, with per-step overrides by step id or kind. Jobs are
 * submitted `--requeue` by default: a preempted job or one whose node failed runs again, and the step
 * resumes from its checkpoint in the resume dir; `--signal=B:USR1@120` warns the runner before the time
 * limit, and the runner asks the training loop for a checkpoint (cluster-runner.ts).
 *
 * The batch script (batchScript) is POSIX sh written into the job's attempt directory: the setup
 * lines, then `exec` of the runner with the project's Node 24 (cluster-runner.ts), inside
 * `apptainer exec` or `srun --container-image` when the step has a container. The runner's command line
 * is quoted word by word (shellQuote); everything else runs from argument arrays.
 */
import * as fs from "node:fs"
import type { Executor } from "../spec.ts"
import { attemptFiles, shellQuote } from "./cluster-job.ts"
import { placedClusterExecutor } from "./placement.ts"
import { slurmShardRunner } from "./shard-jobs.ts"
import { projectRoot } from "../python.ts"
import type { MakeContext } from "./registry.ts"
import { makeClusterExecutor, withRemote } from "./cluster-executor.ts"
import type { ClusterBackend, FailureKind, JobResources, JobStatus, SubmitRequest } from "./cluster-executor.ts"
import type { Gang } from "./cluster-job.ts"
import { containerPrefix, sbatchStepArgs, slurmPlacement } from "./slurm-config.ts"
import type { Requested, ResourceScale, SlurmConfig, SlurmOptions, SlurmPlacement } from "./slurm-config.ts"

// the registration's half (slurm-config.ts: settings, sbatch arguments, plan's line), here too for this module's users
export {
  containerPrefix, describeSlurmPlacement, formatSlurmTime, parseSlurmTime, sbatchResourceArgs, sbatchStepArgs, SlurmConfig, slurmPlacement
} from "./slurm-config.ts"
export type { ResourceScale, SlurmContainer, SlurmOptions, SlurmPlacement } from "./slurm-config.ts"

/**
 * The batch script: the setup lines, then the runner, inside the container when there is one. Slurm
 * needs a script, so the runner's command line is quoted word by word (shellQuote); the setup lines
 * are the user's own shell (`module load` is a shell function) and run under `set -e`, so a failed one
 * stops the job with its own message instead of running the step in the wrong environment.
 */
export const batchScript = (
  placement: SlurmPlacement,
  job: { readonly step: string; readonly key: string; readonly command: ReadonlyArray<string>; readonly binds: ReadonlyArray<string>; readonly gpus: number }
): string => {
  const lines = ["#!/bin/sh", `# anneal step ${job.step.replace(/\n/g, " ")} (key ${job.key}), written by the Slurm executor`]
  const setup = placement.setup ?? []
  if (setup.length > 0) lines.push("set -e", ...setup.map((l) => l.replace(/\n/g, " ")), "set +e")
  lines.push(`exec ${[...containerPrefix(placement.container, job.binds, job.gpus), ...job.command].map(shellQuote).join(" ")}`)
  return lines.join("\n") + "\n"
}

/** What one submission adds to the step's arguments: its name, and where its script and output are. */
export interface SbatchJob {
  readonly name: string
  readonly attemptDir: string
  /** how much more than the step's request a retry asks for */
  readonly scale?: ResourceScale | undefined
}

/**
 * Every argument sbatch gets for a step, in order: the submission's own (name, output file, directory),
 * then the step's (sbatchStepArgs, which `anneal plan` shows), then the script.
 */
export const sbatchArgs = (options: SlurmOptions, step: string, kind: string, resources: Requested, job?: SbatchJob): Array<string> => {
  const files = job !== undefined ? attemptFiles(job.attemptDir) : undefined
  return [
    ...(job !== undefined && files !== undefined
      ? ["--parsable", `--job-name=${job.name}`, ...(options.sharedFilesystem === false
        // the node cannot see the driver's attempt dir: its own /tmp (the job's exchange goes through the remote)
        ? [`--output=/tmp/${job.name}.out`, "--chdir=/tmp"]
        : [`--output=${files.clusterLog}`, `--chdir=${job.attemptDir}`])]
      : []),
    ...sbatchStepArgs(options, step, kind, resources, job?.scale),
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

/** Which endings a retry policy may retry, by Slurm state; CANCELLED and DEADLINE are never retried. */
const failureKinds: Record<string, FailureKind> = {
  TIMEOUT: "timeout",
  PREEMPTED: "preemption",
  NODE_FAIL: "node-failure",
  BOOT_FAIL: "node-failure",
  OUT_OF_MEMORY: "oom",
  FAILED: "step-error",
  COMPLETED: "step-error"
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
  if (base === "COMPLETED") {
    return code === 0 ? { phase: "succeeded", state: base, exitCode: code } : { phase: "failed", state: base, exitCode: code, failure: "step-error" }
  }
  const parts = [endings[base] ?? base.toLowerCase()]
  if (reason !== undefined && reason !== "None" && reason !== "(null)" && reason !== "") parts.push(`reason ${reason}`)
  if (base === "FAILED" && code !== undefined && Number.isFinite(code)) parts.push(`exit code ${code}`)
  if (signal !== undefined && signal > 0) parts.push(`signal ${signal}`)
  return { phase: "failed", state: base, reason: parts.join(", "), exitCode: Number.isFinite(code) ? code : undefined, failure: failureKinds[base] }
}

export const makeSlurmBackend = (options: SlurmOptions = {}): ClusterBackend => {
  const env = options.slurmConf !== undefined ? { SLURM_CONF: options.slurmConf } : {}
  const slurm = async (command: string, args: ReadonlyArray<string>) => {
    const { execa } = await import("execa")
    const r = await execa(command, args, { env, reject: false, timeout: 60_000, stdin: "ignore" })
    if (r.failed && r.exitCode === undefined) {
      throw new Error(`cannot run ${command}: ${r.shortMessage}${r.code === "ENOENT" ? " (is Slurm's client installed and on PATH?)" : ""}`)
    }
    return r
  }

  const submit = async (req: SubmitRequest): Promise<string> => {
    const files = attemptFiles(req.attemptDir)
    const placement = slurmPlacement(options, req.step, req.kind)
    fs.writeFileSync(
      files.script,
      batchScript(placement, { step: req.step, key: req.key, command: req.command, binds: req.binds ?? [], gpus: req.resources.gpus }),
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

  /**
   * The states of many jobs in one controller query (`squeue -j a,b,c`), for the executor's batched
   * poll: a job squeue shows as live is answered from that one line; one it shows ended, or no longer
   * knows, is asked about alone (scontrol, then sacct), which happens once per job, when it ends. A
   * controller that refuses the list (an id it never knew) is asked job by job.
   */
  const statusMany = async (jobIds: ReadonlyArray<string>): Promise<Map<string, JobStatus>> => {
    const found = new Map<string, JobStatus>()
    const r = await slurm("squeue", ["-h", "-t", "all", "-j", jobIds.join(","), "-o", "%i|%T|%r"])
    if (r.exitCode === 0) {
      for (const line of r.stdout.split("\n")) {
        const [id, state, reason] = line.trim().split("|")
        if (id === undefined || state === undefined || !jobIds.includes(id)) continue
        const s = slurmStatus(state, reason, undefined)
        if (s.phase === "queued" || s.phase === "running") found.set(id, s)
      }
    }
    // the jobs that ended since the last poll: each asked alone, a few at a time (many end at once when
    // a run is cancelled, and one at a time would hold every other job's answer back)
    const ended = jobIds.filter((id) => !found.has(id))
    for (let i = 0; i < ended.length; i += 8) {
      const batch = ended.slice(i, i + 8)
      const answers = await Promise.all(batch.map((id) => status(id)))
      batch.forEach((id, j) => found.set(id, answers[j]!))
    }
    return found
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

  /** srun starts the node launcher once per node (one task each), inside the batch job's allocation */
  const gangCommand = (gang: Gang, nodeLauncher: ReadonlyArray<string>, perNode: JobResources) => [
    "srun", `--ntasks=${gang.nodes}`, ...(options.gangOnOneNode === true ? [] : ["--ntasks-per-node=1"]),
    `--cpus-per-task=${perNode.cpus}`, ...(perNode.gpus > 0 ? [`--gpus-per-task=${perNode.gpus}`] : []),
    "--kill-on-bad-exit=1", "--export=ALL", ...nodeLauncher
  ]

  // a job submitted --requeue that is being requeued shows as FAILED until the controller makes it
  // pending again: seconds on a busy controller (seen at 3+ s under load)
  const settle = options.requeue === false ? {} : { failureSettleMs: 10_000 }
  return { name: "slurm", label: (id) => `slurm job ${id}`, submit, status, statusMany, cancel, findByName, jobOutput, gangCommand, ...settle }
}

export const makeSlurmExecutor = (options: SlurmOptions = {}): Executor =>
  makeClusterExecutor(makeSlurmBackend(options), options)

/** The executor of a run with `--executor slurm`: slurm-config.ts's registration loads this module for it. */
export const slurmExecutor = (config: SlurmConfig | undefined, { stateDir, project }: MakeContext): Executor =>
  placedClusterExecutor(
    makeSlurmExecutor({ ...config, ...(stateDir !== undefined ? { stateDir } : {}), ...withRemote(config, project) }),
    config?.placement,
    project,
    config?.shardJobs === true ? (command) => slurmShardRunner(config, command, [projectRoot]) : undefined
  )

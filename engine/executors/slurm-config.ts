/**
 * The Slurm backend's registration (engine/executors/registry.ts): the "slurm" section of
 * anneal.config.json, the sbatch arguments a step's job gets (which `anneal plan` prints), and the
 * scheduling pool. This module loads with every command; the executor itself (slurm.ts, with the
 * cluster executor, placement and shard arrays behind it) loads only when a run uses Slurm.
 */
import * as Schema from "effect/Schema"
import type { ClusterOptions } from "./cluster-executor.ts"
import { checkClusterSection, clusterCapacity, clusterConfigFields, jobResources, shellQuote } from "./cluster-config.ts"
import { describePlaced } from "./placement-rules.ts"
import { registerExecutor } from "./registry.ts"

export interface SlurmPlacement {
  readonly partition?: string | undefined
  readonly account?: string | undefined
  readonly qos?: string | undefined
  /** Slurm's --time: "MM", "HH:MM:SS" or "D-HH:MM:SS" */
  readonly timeLimit?: string | undefined
  /** memory when the step names none, in GiB (--mem); wins over memoryPerCpuGb */
  readonly memoryGb?: number | undefined
  /**
   * memory per CPU when neither the step nor memoryGb names any (--mem-per-cpu), in GiB; default 2, so
   * a step without a memory figure never takes a whole node's memory. 0 leaves it to the cluster.
   */
  readonly memoryPerCpuGb?: number | undefined
  /** the GPU type, e.g. "a100" for --gres=gpu:a100:N */
  readonly gpuType?: string | undefined
  /** how GPUs are asked for: "gres" (--gres=gpu:[type:]N, default) or "gpus" (--gpus-per-node=[type:]N) */
  readonly gpuFlag?: "gres" | "gpus" | undefined
  /**
   * seconds before the time limit at which the job gets SIGUSR1 (--signal=B:USR1@N), so a training step
   * saves a checkpoint before Slurm kills it; default 120, 0 for none
   */
  readonly signalSeconds?: number | undefined
  /** shell lines run in the batch script before the step: ["module load cuda/12.4", ". /opt/venv/bin/activate"] */
  readonly setup?: ReadonlyArray<string> | undefined
  /** a container the step runs in (Apptainer/Singularity, or pyxis/enroot through srun) */
  readonly container?: SlurmContainer | undefined
  /** more sbatch flags, one word each: ["--constraint=ib", "--exclusive"] */
  readonly sbatchArgs?: ReadonlyArray<string> | undefined
}

export interface SlurmContainer {
  /** an image: a .sif file for Apptainer, docker://... or a squashfs/registry name for pyxis */
  readonly image: string
  /** "apptainer" (default), "singularity" or "pyxis" (srun --container-image) */
  readonly runtime?: "apptainer" | "singularity" | "pyxis" | undefined
  /** more directories to bind into the container; the project and the store are always bound */
  readonly binds?: ReadonlyArray<string> | undefined
  /** more words for `apptainer exec` or srun */
  readonly args?: ReadonlyArray<string> | undefined
}

export interface SlurmOptions extends ClusterOptions, SlurmPlacement {
  /** path of slurm.conf for the client commands (SLURM_CONF), when not the system's */
  readonly slurmConf?: string | undefined
  /** rerun the job after preemption or a node failure (sbatch --requeue); default true */
  readonly requeue?: boolean | undefined
  /**
   * for trying a multi-node step on one machine: its "nodes" become tasks of one node (`--nodes=1
   * --ntasks=N`), each running its own torchrun; default false
   */
  readonly gangOnOneNode?: boolean | undefined
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
  memoryPerCpuGb: options.memoryPerCpuGb,
  gpuType: options.gpuType,
  gpuFlag: options.gpuFlag,
  signalSeconds: options.signalSeconds,
  setup: options.setup,
  container: options.container,
  sbatchArgs: options.sbatchArgs,
  ...options.steps?.[kind],
  ...options.steps?.[step]
})

/** Slurm's time formats ("MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS") in seconds. */
export const parseSlurmTime = (time: string): number | undefined => {
  const m = /^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$/.exec(time.trim())
  if (m === null) return undefined
  const [, d, a, b, c] = m
  const n = [a, b, c].filter((x) => x !== undefined).map(Number)
  if (d !== undefined) return Number(d) * 86400 + (n[0] ?? 0) * 3600 + (n[1] ?? 0) * 60 + (n[2] ?? 0)
  if (n.length === 1) return n[0]! * 60
  if (n.length === 2) return n[0]! * 60 + n[1]!
  return n[0]! * 3600 + n[1]! * 60 + n[2]!
}

/** Seconds as Slurm's D-HH:MM:SS. */
export const formatSlurmTime = (seconds: number): string => {
  const s = Math.ceil(seconds)
  const two = (n: number) => String(n).padStart(2, "0")
  const days = Math.floor(s / 86400)
  const rest = `${two(Math.floor((s % 86400) / 3600))}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`
  return days > 0 ? `${days}-${rest}` : rest
}

/** How much more a retried job asks for: memory after running out of it, time after hitting the limit. */
export interface ResourceScale {
  readonly memory: number
  readonly time: number
}
const noScale: ResourceScale = { memory: 1, time: 1 }

const defaultMemoryPerCpuGb = 2
const defaultSignalSeconds = 120

/** sbatch's resource flags for a request. */
export const sbatchResourceArgs = (
  placement: SlurmPlacement,
  resources: { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined; readonly nodes?: number | undefined },
  scale: ResourceScale = noScale,
  gangOnOneNode = false
): Array<string> => {
  const nodes = Math.max(1, resources.nodes ?? 1)
  const args = nodes === 1 ? [] : gangOnOneNode ? ["--nodes=1", `--ntasks=${nodes}`] : [`--nodes=${nodes}`, "--ntasks-per-node=1"]
  args.push(`--cpus-per-task=${resources.cpus}`)
  const memoryGb = resources.memoryGb ?? placement.memoryGb
  const perCpu = placement.memoryPerCpuGb ?? defaultMemoryPerCpuGb
  if (memoryGb !== undefined && memoryGb > 0) args.push(`--mem=${Math.ceil(memoryGb * scale.memory * 1024)}M`)
  else if (perCpu > 0) args.push(`--mem-per-cpu=${Math.ceil(perCpu * scale.memory * 1024)}M`)
  if (resources.gpus > 0) {
    const typed = `${placement.gpuType !== undefined ? `${placement.gpuType}:` : ""}${resources.gpus}`
    if (nodes > 1 && gangOnOneNode) args.push(`--gpus-per-task=${typed}`)
    else args.push(placement.gpuFlag === "gpus" || nodes > 1 ? `--gpus-per-node=${typed}` : `--gres=gpu:${typed}`)
  }
  if (placement.partition !== undefined) args.push(`--partition=${placement.partition}`)
  if (placement.account !== undefined) args.push(`--account=${placement.account}`)
  if (placement.qos !== undefined) args.push(`--qos=${placement.qos}`)
  if (placement.timeLimit !== undefined) {
    const seconds = scale.time !== 1 ? parseSlurmTime(placement.timeLimit) : undefined
    args.push(`--time=${seconds !== undefined ? formatSlurmTime(seconds * scale.time) : placement.timeLimit}`)
  }
  const signal = placement.signalSeconds ?? defaultSignalSeconds
  if (signal > 0) args.push(`--signal=B:USR1@${Math.round(signal)}`)
  return [...args, ...(placement.sbatchArgs ?? [])]
}

/** The words that run a command inside the step's container: `apptainer exec ...` or `srun --container-image ...`. */
export const containerPrefix = (container: SlurmContainer | undefined, binds: ReadonlyArray<string>, gpus: number): Array<string> => {
  if (container === undefined) return []
  const all = [...new Set([...binds, ...(container.binds ?? [])])]
  if (container.runtime === "pyxis") {
    return [
      "srun", "--ntasks=1", `--container-image=${container.image}`,
      `--container-mounts=${all.map((b) => (b.includes(":") ? b : `${b}:${b}`)).join(",")}`,
      "--no-container-remap-root", ...(container.args ?? [])
    ]
  }
  return [
    container.runtime ?? "apptainer", "exec", ...(gpus > 0 ? ["--nv"] : []),
    ...all.flatMap((b) => ["--bind", b]), ...(container.args ?? []), container.image
  ]
}

export type Requested = { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined; readonly nodes?: number | undefined }

/**
 * The step's own sbatch arguments (requeue and resources), the one source for submitting (slurm.ts
 * sbatchArgs adds the submission's name, files and script) and for `anneal plan`.
 */
export const sbatchStepArgs = (options: SlurmOptions, step: string, kind: string, resources: Requested, scale?: ResourceScale): Array<string> => [
  options.requeue === false ? "--no-requeue" : "--requeue",
  ...sbatchResourceArgs(slurmPlacement(options, step, kind), { ...jobResources(resources), nodes: resources.nodes }, scale, options.gangOnOneNode === true)
]

/** Where `anneal plan` says a step would run: the sbatch arguments its job will get (sbatchStepArgs). */
export const describeSlurmPlacement = (
  options: SlurmOptions,
  step: string,
  kind: string,
  resources: Requested
): string => `slurm: sbatch ${sbatchStepArgs(options, step, kind, resources).map(shellQuote).join(" ")}`

const opt = Schema.optional
const slurmPlacementFields = {
  partition: opt(Schema.String),
  account: opt(Schema.String),
  qos: opt(Schema.String),
  timeLimit: opt(Schema.String),
  memoryGb: opt(Schema.Number),
  memoryPerCpuGb: opt(Schema.Number.check(Schema.isGreaterThanOrEqualTo(0))),
  gpuType: opt(Schema.String),
  gpuFlag: opt(Schema.Literals(["gres", "gpus"])),
  signalSeconds: opt(Schema.Number.check(Schema.isGreaterThanOrEqualTo(0))),
  setup: opt(Schema.Array(Schema.String)),
  container: opt(Schema.Struct({
    image: Schema.String,
    runtime: opt(Schema.Literals(["apptainer", "singularity", "pyxis"])),
    binds: opt(Schema.Array(Schema.String)),
    args: opt(Schema.Array(Schema.String))
  })),
  sbatchArgs: opt(Schema.Array(Schema.String))
}
/** The "slurm" section of anneal.config.json. */
export const SlurmConfig = Schema.Struct({
  ...slurmPlacementFields,
  ...clusterConfigFields,
  slurmConf: opt(Schema.String),
  requeue: opt(Schema.Boolean),
  gangOnOneNode: opt(Schema.Boolean),
  shardJobs: opt(Schema.Boolean),
  maxArraySize: opt(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
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
  check: (config, { project }) => checkClusterSection("slurm", config, project),
  load: async () => (await import("./slurm.ts")).slurmExecutor,
  describe: (config, step, kind, resources) =>
    describePlaced(config?.placement, step, kind, resources, () => describeSlurmPlacement(config ?? {}, step, kind, resources)),
  capacity: clusterCapacity
})

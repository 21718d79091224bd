/**
 * Where steps run: `anneal run --executor local|slurm|ray`, and the project's `anneal.config.json` for
 * the executor's settings:
 *
 * ```json
 * {
 *   "executor": "slurm",
 *   "slurm": {
 *     "partition": "gpu", "account": "nlp-lab", "timeLimit": "04:00:00", "memoryGb": 32,
 *     "steps": { "sft": { "partition": "a100", "timeLimit": "1-00:00:00" } }
 *   },
 *   "ray": { "address": "http://127.0.0.1:8265", "steps": { "eval": { "resources": { "a10g": 1 } } } }
 * }
 * ```
 *
 * The flag wins over the file's "executor", which wins over "local". GPUs, CPUs and memory of each step
 * come from the recipe (the step's resources, or `gpus`/`cpus`/`memoryGb` on the call) through the
 * spec's devices; the config adds what only a cluster knows (partition, account, time limit, Ray
 * resources), for all steps or per step id or kind under "steps". The store must be on a filesystem
 * every node sees (docs/cluster.md).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Schema from "effect/Schema"
import { UsageError } from "./errors.ts"
import { makeLocalExecutor } from "./executors/local.ts"
import { describeRayPlacement, makeRayExecutor } from "./executors/ray.ts"
import { describeSlurmPlacement, makeSlurmExecutor } from "./executors/slurm.ts"
import type { Executor } from "./spec.ts"

export const configFileName = "anneal.config.json"
export const executorNames = ["local", "slurm", "ray"] as const
export type ExecutorName = (typeof executorNames)[number]

const opt = Schema.optional
const clusterFields = {
  /** "exec-step" (default) or "command" (command steps run their argv directly) */
  launcher: opt(Schema.Literals(["exec-step", "command"])),
  node: opt(Schema.String),
  pollSeconds: opt(Schema.Number),
  followSeconds: opt(Schema.Number),
  stateDir: opt(Schema.String),
  /** how much anneal keeps submitted at once (the cluster queues the rest of its users' work) */
  maxCpus: opt(Schema.Int),
  maxGpus: opt(Schema.Int),
  maxMemoryGb: opt(Schema.Number)
}
const slurmPlacementFields = {
  partition: opt(Schema.String),
  account: opt(Schema.String),
  qos: opt(Schema.String),
  timeLimit: opt(Schema.String),
  memoryGb: opt(Schema.Number),
  gpuType: opt(Schema.String),
  sbatchArgs: opt(Schema.Array(Schema.String))
}
const SlurmPlacementConfig = Schema.Struct(slurmPlacementFields)
export const SlurmConfig = Schema.Struct({
  ...slurmPlacementFields,
  ...clusterFields,
  slurmConf: opt(Schema.String),
  requeue: opt(Schema.Boolean),
  steps: opt(Schema.Record(Schema.String, SlurmPlacementConfig))
})
const rayPlacementFields = {
  runtimeEnv: opt(Schema.Record(Schema.String, Schema.Unknown)),
  resources: opt(Schema.Record(Schema.String, Schema.Number)),
  memoryGb: opt(Schema.Number)
}
export const RayConfig = Schema.Struct({
  ...rayPlacementFields,
  ...clusterFields,
  address: opt(Schema.String),
  /** headers for every Jobs API call; a value may name environment variables as ${NAME} (keep secrets out of the file) */
  headers: opt(Schema.Record(Schema.String, Schema.String)),
  /** the CA that signed an https address's certificate */
  caFile: opt(Schema.String),
  steps: opt(Schema.Record(Schema.String, Schema.Struct(rayPlacementFields)))
})
export const ProjectConfig = Schema.Struct({
  executor: opt(Schema.Literals(executorNames)),
  /** false: Python steps of local runs start cold, never from a warm process (as ANNEAL_WARM_WORKERS=0) */
  warmWorkers: opt(Schema.Boolean),
  slurm: opt(SlurmConfig),
  ray: opt(RayConfig)
})
export type ProjectConfig = typeof ProjectConfig.Type

/** The nearest anneal.config.json at or above `dir`, if any. */
export const findConfigFile = (dir: string): string | undefined => {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const f = path.join(d, configFileName)
    if (fs.existsSync(f)) return f
    if (path.dirname(d) === d) return undefined
  }
}

/** Reads and checks a config file; a bad one is a one-line UsageError naming the file and the field. */
export const readConfigFile = (file: string): ProjectConfig => {
  let raw: unknown
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"))
  } catch (e) {
    throw new UsageError({ message: `${file}: ${(e as Error).message}` })
  }
  try {
    return Schema.decodeUnknownSync(ProjectConfig, { onExcessProperty: "error" })(raw)
  } catch (e) {
    const lines = (e as Error).message.split("\n").map((l) => l.trim()).filter((l) => l !== "")
    throw new UsageError({ message: `${file}: ${lines.join(" ")}` })
  }
}

/** The project's config, found from the recipe's directory upwards; empty when there is none. */
export const loadProjectConfig = (dir: string): ProjectConfig => {
  const file = findConfigFile(dir)
  return file === undefined ? {} : readConfigFile(file)
}

/** `--executor` wins over the config file's "executor", which wins over local. */
export const chooseExecutor = (flag: string | undefined, config: ProjectConfig): ExecutorName => {
  const name = flag ?? config.executor ?? "local"
  if (!(executorNames as ReadonlyArray<string>).includes(name)) {
    throw new UsageError({ message: `unknown executor "${name}": use ${executorNames.join(", ")}` })
  }
  return name as ExecutorName
}

export interface ExecutorOverrides {
  /** where cluster executors record their jobs; default `<store>/jobs` */
  readonly stateDir?: string | undefined
}

/** The executor a run uses; a setting it cannot use (a Ray address that is not a URL) is a UsageError. */
export const makeExecutor = (name: ExecutorName, config: ProjectConfig, overrides: ExecutorOverrides = {}): Executor => {
  const stateDir = overrides.stateDir !== undefined ? { stateDir: overrides.stateDir } : {}
  try {
    switch (name) {
      case "local":
        return makeLocalExecutor(config.warmWorkers === false ? { warm: false } : {})
      case "slurm":
        return makeSlurmExecutor({ ...config.slurm, ...stateDir })
      case "ray":
        return makeRayExecutor({ ...config.ray, ...stateDir })
    }
  } catch (e) {
    throw new UsageError({ message: `${name} executor: ${(e as Error).message}` })
  }
}

export interface StepResources {
  readonly gpus: number
  readonly cpus: number
  readonly memoryGb?: number | undefined
}

/** Where a step would run, for `anneal plan`: "local: ...", "slurm: sbatch --requeue --cpus-per-task=4 ...", "ray: ...". */
export const describePlacement = (name: ExecutorName, config: ProjectConfig, step: string, kind: string, resources: StepResources): string => {
  switch (name) {
    case "local":
      return `local: ${resources.gpus} GPU, ${resources.cpus} CPU${resources.memoryGb !== undefined && resources.memoryGb > 0 ? `, ${resources.memoryGb} GiB` : ""}`
    case "slurm":
      return describeSlurmPlacement(config.slurm ?? {}, step, kind, resources)
    case "ray":
      return describeRayPlacement(config.ray ?? {}, step, kind, resources)
  }
}

export interface SchedulingCapacity {
  readonly cpus: number
  readonly gpus: ReadonlyArray<number>
  readonly memoryGb: number
}

/**
 * The resource pool the scheduler should use with a cluster executor, in place of this machine's: the
 * driver needs no GPUs of its own, and the caps only bound how much anneal has submitted at once
 * (`maxCpus`, `maxGpus`, `maxMemoryGb` in the executor's config). GPU ids here are slots, not devices:
 * cluster executors use only how many a step got; the cluster assigns the devices.
 * Undefined for the local executor, which uses the machine's own resources.
 */
export const schedulingCapacity = (name: ExecutorName, config: ProjectConfig): SchedulingCapacity | undefined => {
  if (name === "local") return undefined
  const c = name === "slurm" ? config.slurm : config.ray
  return {
    cpus: c?.maxCpus ?? 256,
    gpus: Array.from({ length: c?.maxGpus ?? 64 }, (_, i) => i),
    memoryGb: c?.maxMemoryGb ?? 4096
  }
}

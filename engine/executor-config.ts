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
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { messageOf, UsageError } from "./errors.ts"
import "./executors/builtin.ts"
import { executorBackend, executorBackends } from "./executors/registry.ts"
import type { ProjectConfig, SchedulingCapacity, StepResources } from "./executors/registry.ts"
import type { Executor } from "./spec.ts"
import { StepExecutionError } from "./spec.ts"

export type { ProjectConfig, SchedulingCapacity, StepResources }
export type { RayConfig } from "./executors/ray-config.ts"
export type { SlurmConfig } from "./executors/slurm-config.ts"

export const configFileName = "anneal.config.json"
/** A registered executor's name (engine/executors/registry.ts); "local", "slurm" and "ray" are built in. */
export type ExecutorName = string
/** The registered executors' names, local first. */
export const executorNames = (): ReadonlyArray<string> => executorBackends().map((b) => b.name)

/** The config file's schema: the top-level settings and one section per registered backend that has settings. */
const projectConfigSchema = () =>
  Schema.Struct({
    executor: Schema.optional(Schema.String),
    warmWorkers: Schema.optional(Schema.Boolean),
    // the remote store (docs/remote-store.md): "s3://bucket/prefix" or { url, endpoint, region, profile }
    remote: Schema.optional(Schema.Union([
      Schema.String,
      Schema.Struct({ url: Schema.String, endpoint: Schema.optional(Schema.String), region: Schema.optional(Schema.String), profile: Schema.optional(Schema.String) })
    ])),
    ...Object.fromEntries(executorBackends().flatMap((b) => (b.config === undefined ? [] : [[b.name, Schema.optional(b.config)]])))
  })

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
    const config = Schema.decodeUnknownSync(projectConfigSchema(), { onExcessProperty: "error" })(raw) as ProjectConfig
    if (config.executor !== undefined) chooseExecutor(config.executor, {})
    return config
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
  if (executorBackend(name) === undefined) {
    throw new UsageError({ message: `unknown executor "${name}": use ${executorNames().join(", ")}` })
  }
  return name
}

export interface ExecutorOverrides {
  /** where cluster executors record their jobs; default `<store>/jobs` */
  readonly stateDir?: string | undefined
}

const backendOf = (name: ExecutorName) => {
  const backend = executorBackend(name)
  if (backend === undefined) throw new UsageError({ message: `unknown executor "${name}": use ${executorNames().join(", ")}` })
  return backend
}
const sectionOf = (name: ExecutorName, config: ProjectConfig): unknown => (config as Record<string, unknown>)[name]

/**
 * An executor whose code is imported at its first step (a registration's `load`): `anneal plan`, and a
 * run that fails before any step runs, never load it. A failed import fails each step it was to run,
 * naming the executor; `close` closes it only if it was loaded.
 */
const deferredExecutor = (name: ExecutorName, load: () => Promise<Executor>): Executor => {
  let loaded: Promise<Executor> | undefined
  return {
    name,
    run: (spec, emit) =>
      Effect.tryPromise({
        try: () => (loaded ??= load()),
        catch: (e) => new StepExecutionError(spec.step, `${name} executor: cannot load it: ${messageOf(e)}`, undefined, e)
      }).pipe(Effect.flatMap((executor) => executor.run(spec, emit))),
    close: async () => {
      const executor = await loaded?.catch(() => undefined)
      await executor?.close?.()
    }
  }
}

/** The executor a run uses; a setting it cannot use (a Ray address that is not a URL) is a UsageError. */
export const makeExecutor = (name: ExecutorName, config: ProjectConfig, overrides: ExecutorOverrides = {}): Executor => {
  const backend = backendOf(name)
  const section = sectionOf(name, config)
  const context = { project: config, stateDir: overrides.stateDir }
  try {
    if (backend.make !== undefined) return backend.make(section, context)
    backend.check?.(section, context)
  } catch (e) {
    throw new UsageError({ message: `${name} executor: ${(e as Error).message}` })
  }
  const load = backend.load
  return deferredExecutor(name, async () => (await load())(section, context))
}

/** Where a step would run, for `anneal plan`: "local: ...", "slurm: sbatch --requeue --cpus-per-task=4 ...", "ray: ...". */
export const describePlacement = (name: ExecutorName, config: ProjectConfig, step: string, kind: string, resources: StepResources): string =>
  backendOf(name).describe(sectionOf(name, config), step, kind, resources)

/**
 * The resource pool the scheduler should use with this executor, in place of this machine's (cluster
 * executors: see clusterCapacity in engine/executors/cluster-executor.ts). Undefined for the local
 * executor, which uses the machine's own resources.
 */
export const schedulingCapacity = (name: ExecutorName, config: ProjectConfig): SchedulingCapacity | undefined =>
  backendOf(name).capacity?.(sectionOf(name, config))

/**
 * Executor backends register themselves here: a name (what `--executor` and the config's "executor"
 * say), the schema of their section in anneal.config.json (the key is the name), the executor's
 * constructor, how `anneal plan` describes where a step would go, and the capacity the scheduler should
 * use in place of this machine's. engine/executor-config.ts reads only this table, so a new backend is
 * one module that calls `registerExecutor` (listed in ./builtin.ts, or imported by a recipe) and
 * touches no engine file.
 *
 * Every registration loads with every command (config validation and `anneal plan` need it), so it
 * stays light: a backend whose executor needs much code (the cluster executors: their job machinery,
 * placement, shard arrays) registers `load`, which imports that code only when a run chooses the
 * backend, at its first step; `check` refuses unusable settings before that, while the run is set up.
 * A backend with little code registers `make` directly (local).
 *
 * A backend's config type reaches `ProjectConfig` through declaration merging:
 *
 * ```ts
 * declare module "./registry.ts" {
 *   interface ExecutorConfigs { slurm: SlurmConfig }
 * }
 * ```
 */
import type * as Schema from "effect/Schema"
import type { Executor } from "../spec.ts"

/** Each backend's config section, by name; backends add themselves (see above). */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface ExecutorConfigs {}

/** anneal.config.json: the executor to use, local settings, and one section per configurable backend. */
export type ProjectConfig = {
  readonly executor?: string | undefined
  /** false: Python steps of local runs start cold, never from a warm process (as ANNEAL_WARM_WORKERS=0) */
  readonly warmWorkers?: boolean | undefined
} & { readonly [K in keyof ExecutorConfigs]?: ExecutorConfigs[K] | undefined }

export interface StepResources {
  readonly gpus: number
  readonly cpus: number
  readonly memoryGb?: number | undefined
}

export interface SchedulingCapacity {
  readonly cpus: number
  readonly gpus: ReadonlyArray<number>
  readonly memoryGb: number
}

export interface MakeContext {
  /** the whole project config (a backend may read top-level settings such as warmWorkers) */
  readonly project: ProjectConfig
  /** where cluster executors record their jobs, when the caller chose (default `<store>/jobs`) */
  readonly stateDir?: string | undefined
}

/** Builds the executor from the backend's config section; a setting it cannot use throws. */
export type MakeExecutor<C> = (config: C | undefined, context: MakeContext) => Executor

interface BackendInfo<C> {
  readonly name: string
  /** the schema of the config file's section named after the backend; none for a backend without settings */
  readonly config?: Schema.Codec<C, unknown> | undefined
  /** for `anneal plan`: "local: ...", "slurm: sbatch ...", "ray: ..." (from the registration alone: plan loads no executor) */
  readonly describe: (config: C | undefined, step: string, kind: string, resources: StepResources) => string
  /**
   * The pool the scheduler uses instead of this machine's (cluster executors: the driver needs no GPUs
   * of its own; the figures bound how much is submitted at once). Absent: the machine's own resources.
   */
  readonly capacity?: ((config: C | undefined) => SchedulingCapacity) | undefined
}

export type ExecutorBackend<C> = BackendInfo<C> & (
  | {
    /** the executor; a setting it cannot use throws (the caller makes it a UsageError naming the backend) */
    readonly make: MakeExecutor<C>
    readonly load?: undefined
    readonly check?: undefined
  }
  | {
    readonly make?: undefined
    /**
     * The constructor, imported when a run uses the backend (at its first step, so a run that fails
     * before any step and `anneal plan` never load it); a failed import fails that step, naming the backend.
     */
    readonly load: () => Promise<MakeExecutor<C>>
    /** settings the executor could not use, refused when the run is set up (throws; a UsageError naming the backend) */
    readonly check?: ((config: C | undefined, context: MakeContext) => void) | undefined
  }
)

const backends = new Map<string, ExecutorBackend<never>>()

/** Adds a backend; a second registration under one name is a bug in the backends, said at once. */
export const registerExecutor = <C>(backend: ExecutorBackend<C>): void => {
  if (backends.has(backend.name)) throw new Error(`executor "${backend.name}" is registered twice`)
  backends.set(backend.name, backend as unknown as ExecutorBackend<never>)
}

/** The registered backends, in registration order (local first: ./builtin.ts registers it first). */
export const executorBackends = (): ReadonlyArray<ExecutorBackend<unknown>> => [...backends.values()] as never

export const executorBackend = (name: string): ExecutorBackend<unknown> | undefined => backends.get(name) as never

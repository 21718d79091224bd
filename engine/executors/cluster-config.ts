/**
 * What the cluster backends' registrations (slurm-config.ts, ray-config.ts) share: the settings every
 * cluster section of anneal.config.json has, the checks on them that need no cluster code, the
 * scheduling pool, and what a step's job asks for. These load with every command (config validation
 * and `anneal plan` need them); the executor itself (cluster-executor.ts) loads only for a run on a
 * cluster.
 */
import * as Schema from "effect/Schema"
import type { RemoteConfig } from "../../cache/remote/url.ts"
import { PlacementConfig } from "./placement-rules.ts"

export interface JobResources {
  readonly gpus: number
  readonly cpus: number
  readonly memoryGb?: number | undefined
  /** nodes for a multi-node step (GPUs and CPUs are then per node); absent or 1 for one */
  readonly nodes?: number | undefined
}

const opt = Schema.optional

/** The settings every cluster backend's section of anneal.config.json shares (ClusterOptions, and the caps). */
export const clusterConfigFields = {
  /** "exec-step" (default) or "command" (command steps run their argv directly) */
  launcher: opt(Schema.Literals(["exec-step", "command"])),
  node: opt(Schema.String),
  pollSeconds: opt(Schema.Number),
  followSeconds: opt(Schema.Number),
  fileWaitSeconds: opt(Schema.Number.check(Schema.isGreaterThanOrEqualTo(0))),
  placement: opt(PlacementConfig),
  retry: opt(Schema.Struct({
    maxRetries: opt(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
    on: opt(Schema.Array(Schema.Literals(["node-failure", "preemption", "timeout", "oom", "step-error"]))),
    memoryFactor: opt(Schema.Number.check(Schema.isGreaterThanOrEqualTo(1))),
    timeFactor: opt(Schema.Number.check(Schema.isGreaterThanOrEqualTo(1)))
  })),
  stateDir: opt(Schema.String),
  sharedFilesystem: opt(Schema.Boolean),
  remote: opt(Schema.Union([
    Schema.String,
    Schema.Struct({ url: Schema.String, endpoint: opt(Schema.String), region: opt(Schema.String), profile: opt(Schema.String) })
  ])),
  scratchDir: opt(Schema.String),
  /** the node scratch store's cap and age limit (cache/remote/scratch-gc.ts) */
  scratchMaxGb: opt(Schema.Number.check(Schema.isGreaterThanOrEqualTo(0))),
  scratchMaxAgeDays: opt(Schema.Number.check(Schema.isGreaterThanOrEqualTo(0))),
  /** how much anneal keeps submitted at once (the cluster queues the rest of its users' work) */
  maxCpus: opt(Schema.Int),
  maxGpus: opt(Schema.Int),
  maxMemoryGb: opt(Schema.Number)
}

type ClusterSection = {
  readonly remote?: RemoteConfig | undefined
  readonly sharedFilesystem?: boolean | undefined
  readonly shardJobs?: boolean | undefined
}

/** The remote jobs exchange through without a shared filesystem: the section's own, else the config's top-level "remote". */
export const withRemote = (section: ClusterSection | undefined, project: object): { remote?: RemoteConfig } => {
  if (section?.sharedFilesystem === false && section.shardJobs === true) {
    throw new Error(`"shardJobs": true needs a shared filesystem (its shard tasks read and write the store); drop one of "shardJobs" and "sharedFilesystem": false`)
  }
  const remote = section?.remote ?? (project as { readonly remote?: RemoteConfig | undefined }).remote
  return remote === undefined ? {} : { remote }
}

/** Why a cluster executor with these options cannot run, or undefined (makeClusterExecutor throws it too). */
export const remoteProblem = (backend: string, options: { readonly sharedFilesystem?: boolean | undefined; readonly remote?: RemoteConfig | undefined }): string | undefined =>
  options.sharedFilesystem === false && options.remote === undefined
    ? `${backend}: "sharedFilesystem": false needs a remote store for the jobs ("remote": "s3://bucket/prefix" in anneal.config.json)`
    : undefined

/** A cluster section's settings that no executor could use, refused before the executor's code loads (throws). */
export const checkClusterSection = (backend: string, section: ClusterSection | undefined, project: object): void => {
  const problem = remoteProblem(backend, { sharedFilesystem: section?.sharedFilesystem, ...withRemote(section, project) })
  if (problem !== undefined) throw new Error(problem)
}

/**
 * The pool the scheduler uses with a cluster executor: the driver needs no GPUs of its own, and the caps
 * only bound how much anneal has submitted at once. GPU ids here are slots, not devices: cluster
 * executors use only how many a step got; the cluster assigns the devices.
 */
export const clusterCapacity = (c: { readonly maxCpus?: number | undefined; readonly maxGpus?: number | undefined; readonly maxMemoryGb?: number | undefined } | undefined) => ({
  cpus: c?.maxCpus ?? 256,
  gpus: Array.from({ length: c?.maxGpus ?? 64 }, (_, i) => i),
  memoryGb: c?.maxMemoryGb ?? 4096
})

/**
 * What a job asks the cluster for, from a step's request: at least one CPU, and no memory figure when
 * the step names none (0 or absent), so the executor's configured default applies. `anneal plan` and
 * the submission both go through here, so the plan shows what will really be asked for.
 */
export const jobResources = (r: { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined }): JobResources => ({
  gpus: r.gpus,
  cpus: Math.max(1, r.cpus),
  memoryGb: r.memoryGb !== undefined && r.memoryGb > 0 ? r.memoryGb : undefined
})

/** Quotes one word for a POSIX shell: Slurm batch scripts and Ray entrypoints are shell command lines. */
export const shellQuote = (word: string): string => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)

/**
 * The Ray backend's registration (engine/executors/registry.ts): the "ray" section of
 * anneal.config.json, the resources a step's job asks for (which `anneal plan` prints), the address
 * check, and the scheduling pool. This module loads with every command; the executor itself (ray.ts,
 * with the cluster executor, placement and shard jobs behind it) loads only when a run uses Ray.
 */
import * as Schema from "effect/Schema"
import type { ClusterOptions } from "./cluster-executor.ts"
import { checkClusterSection, clusterCapacity, clusterConfigFields, jobResources } from "./cluster-config.ts"
import { describePlaced } from "./placement-rules.ts"
import { registerExecutor } from "./registry.ts"

export interface RayPlacement {
  /** a Ray runtime_env for the job (env_vars, working_dir, ...) */
  readonly runtimeEnv?: Readonly<Record<string, unknown>> | undefined
  /** custom Ray resources the job needs, e.g. {"a100": 1} */
  readonly resources?: Readonly<Record<string, number>> | undefined
  /** memory when the step names none, in GiB */
  readonly memoryGb?: number | undefined
  /** a container image the job runs in (runtime_env.image_uri; the image must hold Node 24 and the project's Python) */
  readonly imageUri?: string | undefined
  /** shell lines the entrypoint runs before the step (activating an environment); a failing one stops the job */
  readonly setup?: ReadonlyArray<string> | undefined
}

export interface RayOptions extends ClusterOptions, RayPlacement {
  /** the Jobs API address (the dashboard), e.g. http://127.0.0.1:8265; default RAY_API_SERVER_ADDRESS or RAY_ADDRESS */
  readonly address?: string | undefined
  /** HTTP headers for every Jobs API call (an auth proxy's token); a value may name variables as ${NAME} */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** a PEM file of the certificate authority that signed an https address's certificate */
  readonly caFile?: string | undefined
  /** per-step settings, by step id or step kind (the id wins) */
  readonly steps?: Readonly<Record<string, RayPlacement>> | undefined
  /**
   * how a multi-node step's bundles (one per node) are placed: "SPREAD" (default: on different nodes
   * where it can), "STRICT_SPREAD" (always; fails on a cluster with fewer nodes), "PACK"
   */
  readonly gangStrategy?: "SPREAD" | "STRICT_SPREAD" | "PACK" | undefined
}

export const rayPlacement = (options: RayOptions, step: string, kind: string): RayPlacement => ({
  runtimeEnv: options.runtimeEnv,
  resources: options.resources,
  memoryGb: options.memoryGb,
  imageUri: options.imageUri,
  setup: options.setup,
  ...options.steps?.[kind],
  ...options.steps?.[step]
})

/** The Jobs API's resource fields for a request. */
export const rayResourceFields = (
  placement: RayPlacement,
  resources: { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined; readonly nodes?: number | undefined },
  memoryScale = 1
): Record<string, unknown> => {
  const memoryGb = resources.memoryGb ?? placement.memoryGb
  // a multi-node step's entrypoint only waits for its placement group, which holds the resources (ray-gang.py)
  if ((resources.nodes ?? 1) > 1) return { entrypoint_num_cpus: 0, entrypoint_num_gpus: 0 }
  return {
    entrypoint_num_cpus: resources.cpus,
    entrypoint_num_gpus: resources.gpus,
    ...(memoryGb !== undefined && memoryGb > 0 ? { entrypoint_memory: Math.ceil(memoryGb * memoryScale * 1024 ** 3) } : {}),
    ...(placement.resources !== undefined ? { entrypoint_resources: placement.resources } : {})
  }
}

/** An address fit for a message: user and password in it replaced by ***. */
export const redactAddress = (address: string): string => address.replace(/^(\w+:\/\/)[^/@]*@/, "$1***@")

/**
 * The Jobs API's address (the option, else RAY_API_SERVER_ADDRESS or RAY_ADDRESS, else the local
 * head's), checked: a URL, http or https. `shown` has user and password replaced by ***.
 */
export const rayAddress = (options: { readonly address?: string | undefined }): { readonly base: URL; readonly shown: string } => {
  const address = (options.address ?? process.env.RAY_API_SERVER_ADDRESS ?? process.env.RAY_ADDRESS ?? "http://127.0.0.1:8265")
    .replace(/\/+$/, "")
  const shown = redactAddress(address)
  let base: URL
  try {
    base = new URL(address + "/")
  } catch {
    throw new Error(`the Ray address ${shown} is not a URL (e.g. http://head-node:8265)`)
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new Error(`the Ray address ${shown} must start with http:// or https://`)
  }
  return { base, shown }
}

/** Where `anneal plan` says a step would run. */
export const describeRayPlacement = (
  options: RayOptions,
  step: string,
  kind: string,
  resources: { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined }
): string => {
  const r = jobResources(resources)
  const fields = rayResourceFields(rayPlacement(options, step, kind), r)
  const mem = fields.entrypoint_memory !== undefined ? `, ${Math.round(Number(fields.entrypoint_memory) / 1024 ** 3)} GiB` : ""
  const custom = fields.entrypoint_resources !== undefined ? `, ${JSON.stringify(fields.entrypoint_resources)}` : ""
  return `ray: ${r.gpus} GPU, ${r.cpus} CPU${mem}${custom}`
}

const opt = Schema.optional
const rayPlacementFields = {
  runtimeEnv: opt(Schema.Record(Schema.String, Schema.Unknown)),
  resources: opt(Schema.Record(Schema.String, Schema.Number)),
  memoryGb: opt(Schema.Number),
  imageUri: opt(Schema.String),
  setup: opt(Schema.Array(Schema.String))
}
/** The "ray" section of anneal.config.json. */
export const RayConfig = Schema.Struct({
  ...rayPlacementFields,
  ...clusterConfigFields,
  address: opt(Schema.String),
  /** headers for every Jobs API call; a value may name environment variables as ${NAME} (keep secrets out of the file) */
  headers: opt(Schema.Record(Schema.String, Schema.String)),
  /** the CA that signed an https address's certificate */
  caFile: opt(Schema.String),
  gangStrategy: opt(Schema.Literals(["SPREAD", "STRICT_SPREAD", "PACK"])),
  shardJobs: opt(Schema.Boolean),
  steps: opt(Schema.Record(Schema.String, Schema.Struct(rayPlacementFields)))
})
export type RayConfig = typeof RayConfig.Type

declare module "./registry.ts" {
  interface ExecutorConfigs {
    ray: RayConfig
  }
}

registerExecutor<RayConfig>({
  name: "ray",
  config: RayConfig,
  check: (config, { project }) => {
    rayAddress(config ?? {})
    checkClusterSection("ray", config, project)
  },
  load: async () => (await import("./ray.ts")).rayExecutor,
  describe: (config, step, kind, resources) =>
    describePlaced(config?.placement, step, kind, resources, () => describeRayPlacement(config ?? {}, step, kind, resources)),
  capacity: clusterCapacity
})

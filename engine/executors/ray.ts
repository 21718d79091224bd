/**
 * The Ray executor: each step is one Ray job submitted through the Jobs API (the dashboard's REST
 * endpoint, the same one `ray job submit` talks to), with `entrypoint_num_gpus`, `entrypoint_num_cpus`
 * and `entrypoint_memory` from the spec's devices; its status polled, `stop` on interrupt. The
 * submission id is chosen by the driver and recorded before submitting, so a driver that dies
 * mid-submission finds the job by that id instead of submitting a second one.
 *
 * Ray runs an entrypoint as a shell command line, so the runner's command is quoted word by word
 * (shellQuote); the worker's progress comes from the job's events file in the shared store, and its
 * logs from worker.log there. Ray's own job log (what the entrypoint itself printed) is copied into
 * the step's log when a job fails: it is all there is of a job whose runner never started.
 *
 * The address may be `http://` or `https://` (a dashboard behind a TLS proxy), with headers for an
 * authenticating proxy (`ray.headers` in the config, whose values may name environment variables as
 * `${NAME}`, and `RAY_JOB_HEADERS`, a JSON object, as Ray's own CLI reads it) and a CA file for a private
 * certificate authority (`ray.caFile`). Header values are sent and nothing else: they are never part of a
 * message, a log or anything written to the store, and user:password in the address is shown as `***`.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import * as Schema from "effect/Schema"
import type { Executor } from "../spec.ts"
import { shellQuote } from "./cluster-job.ts"
import { describePlaced, placedClusterExecutor } from "./placement.ts"
import { rayShardRunner } from "./shard-jobs.ts"
import { registerExecutor } from "./registry.ts"
import { clusterCapacity, clusterConfigFields, jobResources, makeClusterExecutor, withRemote } from "./cluster-executor.ts"
import type { ClusterBackend, ClusterOptions, JobResources, JobStatus, SubmitRequest } from "./cluster-executor.ts"
import type { Gang } from "./cluster-job.ts"

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

// beside this module, in the sources and once built
const gangScript = fileURLToPath(new URL("./ray-gang.py", import.meta.url))

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

/** The job's runtime_env: the configured one, with the container image as image_uri when one is set. */
export const rayRuntimeEnv = (placement: RayPlacement): Record<string, unknown> | undefined =>
  placement.imageUri === undefined ? placement.runtimeEnv : { ...placement.runtimeEnv, image_uri: placement.imageUri }

/**
 * The entrypoint, a shell command line as Ray runs it: the setup lines under `set -e` (a failing one
 * stops the job with its own message), then the runner, quoted word by word.
 */
export const rayEntrypoint = (placement: RayPlacement, command: ReadonlyArray<string>): string => {
  const run = `exec ${command.map(shellQuote).join(" ")}`
  const setup = (placement.setup ?? []).map((l) => l.replace(/\n/g, " "))
  return setup.length === 0 ? command.map(shellQuote).join(" ") : ["set -e", ...setup, run].join("; ")
}

interface RayJobInfo {
  readonly status: string
  readonly message?: string | null
  readonly error_type?: string | null
  readonly driver_exit_code?: number | null
}

/** A job's state from Ray's words for it. */
export const rayStatus = (info: RayJobInfo): JobStatus => {
  switch (info.status) {
    case "PENDING":
      return { phase: "queued", state: info.status }
    case "RUNNING":
      return { phase: "running", state: info.status }
    case "SUCCEEDED":
      return { phase: "succeeded", state: info.status, exitCode: 0 }
    case "STOPPED":
      return { phase: "failed", state: info.status, reason: "stopped from outside anneal (ray job stop or an administrator)" }
    default: {
      const code = info.driver_exit_code ?? undefined
      const first = (info.message ?? "").split("\n")[0]!.replace(/, last available logs.*$/, "").trim()
      const reason = info.error_type === "JOB_ENTRYPOINT_COMMAND_ERROR" && code !== undefined
        ? `the step exited with an error, exit code ${code}`
        : first !== "" ? first : (info.error_type ?? "failed")
      // the step's own error, or Ray losing the job (its node, its supervisor actor): only the latter is retried by default
      const failure = info.error_type === "JOB_ENTRYPOINT_COMMAND_ERROR" ? "step-error" : "node-failure"
      return { phase: "failed", state: info.status, reason, exitCode: code, failure }
    }
  }
}

/** An address fit for a message: user and password in it replaced by ***. */
export const redactAddress = (address: string): string => address.replace(/^(\w+:\/\/)[^/@]*@/, "$1***@")

/**
 * The headers every Jobs API call carries: RAY_JOB_HEADERS (a JSON object, as `ray job` reads it), then
 * the config's `headers` on top, with `${NAME}` in a value replaced by that environment variable.
 * Errors name the header and the variable, never a value.
 */
export const rayHeaders = (configured: Readonly<Record<string, string>> | undefined, env: NodeJS.ProcessEnv = process.env): Record<string, string> => {
  let fromEnv: Record<string, string> = {}
  const raw = env.RAY_JOB_HEADERS
  if (raw !== undefined && raw.trim() !== "") {
    let parsed: unknown
    try {
      parsed = JSON.parse(raw)
    } catch {
      throw new Error("RAY_JOB_HEADERS is not a JSON object of header names to values")
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) || Object.values(parsed).some((v) => typeof v !== "string")) {
      throw new Error("RAY_JOB_HEADERS is not a JSON object of header names to string values")
    }
    fromEnv = parsed as Record<string, string>
  }
  const headers: Record<string, string> = { ...fromEnv }
  for (const [name, value] of Object.entries(configured ?? {})) {
    headers[name] = value.replace(/\$\{(\w+)\}/g, (_, variable: string) => {
      const v = env[variable]
      if (v === undefined) throw new Error(`ray.headers.${name} names \${${variable}}, which is not set`)
      return v
    })
  }
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n]/.test(value)) throw new Error(`the Ray header ${name} holds a line break`)
  }
  return headers
}

export const makeRayBackend = (options: RayOptions = {}): ClusterBackend => {
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
  // node:http loads here, when a Ray executor is made: importing it costs every command tens of ms
  // (its ESM form loads undici), though only a run on Ray talks to the dashboard
  const transport = process.getBuiltinModule(base.protocol === "https:" ? "node:https" : "node:http")
  // read once, at the first call: a missing variable or CA file fails the step that needed it
  let connection: { headers: Record<string, string>; ca?: Buffer } | undefined
  const connect = () => {
    if (connection !== undefined) return connection
    const headers = rayHeaders(options.headers)
    let ca: Buffer | undefined
    if (options.caFile !== undefined) {
      try {
        ca = fs.readFileSync(options.caFile)
      } catch (e) {
        throw new Error(`cannot read ray.caFile ${options.caFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
      }
    }
    connection = ca !== undefined ? { headers, ca } : { headers }
    return connection
  }
  /**
   * One call to the Jobs API. node:http rather than fetch: fetch sends the Sec-Fetch-Mode header, and
   * Ray's dashboard refuses POSTs that look like they come from a browser.
   */
  const api = (method: "GET" | "POST", route: string, body?: unknown): Promise<{ status: number; json: unknown; text: string }> =>
    new Promise((resolve, reject) => {
      const payload = body !== undefined ? JSON.stringify(body) : undefined
      const { headers, ca } = connect()
      const req = transport.request(
        new URL(route.replace(/^\//, ""), base),
        {
          method,
          headers: {
            ...headers,
            ...(payload !== undefined ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {})
          },
          ...(ca !== undefined ? { ca } : {}),
          timeout: 60_000
        },
        (res) => {
          const chunks: Array<Buffer> = []
          res.on("data", (c: Buffer) => chunks.push(c))
          res.on("error", reject)
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8")
            let json: unknown
            try {
              json = JSON.parse(text)
            } catch {
              json = undefined
            }
            resolve({ status: res.statusCode ?? 0, json, text })
          })
        }
      )
      req.on("timeout", () => req.destroy(new Error("no answer in 60 s")))
      req.on("error", (e) =>
        reject(new Error(`cannot reach the Ray Jobs API at ${shown}: ${e.message} (is the head running? set ray.address)`)))
      req.end(payload)
    })

  const submit = async (req: SubmitRequest): Promise<string> => {
    const placement = rayPlacement(options, req.step, req.kind)
    const runtimeEnv = rayRuntimeEnv(placement)
    const r = await api("POST", "/api/jobs/", {
      entrypoint: rayEntrypoint(placement, req.command),
      submission_id: req.jobId,
      ...rayResourceFields(placement, req.resources, req.scale?.memory),
      metadata: { anneal_step: req.step, anneal_key: req.key, anneal_name: req.name },
      ...(runtimeEnv !== undefined ? { runtime_env: runtimeEnv } : {})
    })
    const id = (r.json as { submission_id?: string } | undefined)?.submission_id
    if (r.status >= 300 || id === undefined) throw new Error(`Ray refused the job (HTTP ${r.status}): ${r.text.trim().slice(0, 300)}`)
    return id
  }

  const status = async (jobId: string): Promise<JobStatus> => {
    const r = await api("GET", `/api/jobs/${encodeURIComponent(jobId)}`)
    if (r.status === 404) return { phase: "gone", state: "UNKNOWN" }
    if (r.status >= 300 || r.json === undefined) throw new Error(`HTTP ${r.status}: ${r.text.trim().slice(0, 300)}`)
    return rayStatus(r.json as RayJobInfo)
  }

  /** Every job's state in one call (GET /api/jobs/ lists the cluster's jobs): the executor's batched poll. */
  const statusMany = async (jobIds: ReadonlyArray<string>): Promise<Map<string, JobStatus>> => {
    const r = await api("GET", "/api/jobs/")
    // a proxy or an old dashboard without the list: ask job by job
    if (r.status >= 300 || !Array.isArray(r.json)) return new Map(await Promise.all(jobIds.map(async (id) => [id, await status(id)] as const)))
    const known = new Map<string, RayJobInfo>()
    for (const info of r.json as Array<RayJobInfo & { submission_id?: string | null }>) {
      if (typeof info.submission_id === "string") known.set(info.submission_id, info)
    }
    return new Map(jobIds.map((id) => {
      const info = known.get(id)
      return [id, info === undefined ? { phase: "gone", state: "UNKNOWN" } : rayStatus(info)] as const
    }))
  }

  const cancel = async (jobId: string) => {
    const r = await api("POST", `/api/jobs/${encodeURIComponent(jobId)}/stop`)
    if (r.status >= 300 && r.status !== 404) throw new Error(`ray job stop ${jobId}: HTTP ${r.status}: ${r.text.trim().slice(0, 300)}`)
  }

  /** Ray's log of the job: what the entrypoint printed (the shell's, Node's words if the runner never started) */
  const jobOutput = async (jobId: string) => {
    const r = await api("GET", `/api/jobs/${encodeURIComponent(jobId)}/logs`)
    if (r.status >= 300) return undefined
    const logs = (r.json as { logs?: unknown } | undefined)?.logs
    return typeof logs === "string" ? logs.split("\n").slice(-200).join("\n") : undefined
  }

  /** a placement group of one bundle per node, one actor each running the node launcher (ray-gang.py) */
  const gangCommand = (gang: Gang, nodeLauncher: ReadonlyArray<string>, perNode: JobResources) => [
    gang.python, gangScript, "--cpus", String(perNode.cpus), "--gpus", String(perNode.gpus),
    "--strategy", options.gangStrategy ?? "SPREAD", nodeLauncher.at(-1)!, "--", ...nodeLauncher
  ]

  return {
    name: "ray",
    label: (id) => `ray job ${id}`,
    gangCommand,
    chooseJobId: (name) => `${name}-${randomBytes(4).toString("hex")}`,
    submit,
    status,
    statusMany,
    cancel,
    jobOutput
  }
}

export const makeRayExecutor = (options: RayOptions = {}): Executor => makeClusterExecutor(makeRayBackend(options), options)

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
  make: (config, { stateDir, project }) =>
    placedClusterExecutor(
      makeRayExecutor({ ...config, ...(stateDir !== undefined ? { stateDir } : {}), ...withRemote(config, project) }),
      config?.placement,
      project,
      config?.shardJobs === true ? (command) => rayShardRunner(makeRayBackend(config), command, config) : undefined
    ),
  describe: (config, step, kind, resources) =>
    describePlaced(config?.placement, step, kind, resources, () => describeRayPlacement(config ?? {}, step, kind, resources)),
  capacity: clusterCapacity
})

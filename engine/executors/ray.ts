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
import type { Executor } from "../spec.ts"
import { shellQuote } from "./cluster-job.ts"
import { placedClusterExecutor } from "./placement.ts"
import { rayShardRunner } from "./shard-jobs.ts"
import type { MakeContext } from "./registry.ts"
import { makeClusterExecutor, withRemote } from "./cluster-executor.ts"
import type { ClusterBackend, JobResources, JobStatus, SubmitRequest } from "./cluster-executor.ts"
import type { Gang } from "./cluster-job.ts"
import { rayAddress, rayPlacement, rayResourceFields } from "./ray-config.ts"
import type { RayConfig, RayOptions, RayPlacement } from "./ray-config.ts"

// the registration's half (ray-config.ts: settings, resources, the address, plan's line), here too for this module's users
export { describeRayPlacement, rayAddress, RayConfig, rayPlacement, rayResourceFields, redactAddress } from "./ray-config.ts"
export type { RayOptions, RayPlacement } from "./ray-config.ts"

// beside this module, in the sources and once built
const gangScript = fileURLToPath(new URL("./ray-gang.py", import.meta.url))

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
  const { base, shown } = rayAddress(options)
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

/** The executor of a run with `--executor ray`: ray-config.ts's registration loads this module for it. */
export const rayExecutor = (config: RayConfig | undefined, { stateDir, project }: MakeContext): Executor =>
  placedClusterExecutor(
    makeRayExecutor({ ...config, ...(stateDir !== undefined ? { stateDir } : {}), ...withRemote(config, project) }),
    config?.placement,
    project,
    config?.shardJobs === true ? (command) => rayShardRunner(makeRayBackend(config), command, config) : undefined
  )

/**
 * The Ray executor: each step is one Ray job submitted through the Jobs API (the dashboard's REST
 * endpoint, the same one `ray job submit` talks to), with `entrypoint_num_gpus`, `entrypoint_num_cpus`
 * and `entrypoint_memory` from the spec's devices; its status polled, `stop` on interrupt. The
 * submission id is chosen by the driver and recorded before submitting, so a driver that dies
 * mid-submission finds the job by that id instead of submitting a second one.
 *
 * Ray runs an entrypoint as a shell command line, so the runner's command is quoted word by word
 * (shellQuote); the worker's progress comes from the job's events file in the shared store, and its
 * logs from worker.log there (Ray's own job log holds the same lines).
 */
import { randomBytes } from "node:crypto"
import * as http from "node:http"
import type { Executor } from "../spec.ts"
import { shellQuote } from "./cluster-job.ts"
import { makeClusterExecutor } from "./cluster-executor.ts"
import type { ClusterBackend, ClusterOptions, JobStatus, SubmitRequest } from "./cluster-executor.ts"

export interface RayPlacement {
  /** a Ray runtime_env for the job (env_vars, working_dir, ...) */
  readonly runtimeEnv?: Readonly<Record<string, unknown>> | undefined
  /** custom Ray resources the job needs, e.g. {"a100": 1} */
  readonly resources?: Readonly<Record<string, number>> | undefined
  /** memory when the step names none, in GiB */
  readonly memoryGb?: number | undefined
}

export interface RayOptions extends ClusterOptions, RayPlacement {
  /** the Jobs API address (the dashboard), e.g. http://127.0.0.1:8265; default RAY_API_SERVER_ADDRESS or RAY_ADDRESS */
  readonly address?: string | undefined
  /** per-step settings, by step id or step kind (the id wins) */
  readonly steps?: Readonly<Record<string, RayPlacement>> | undefined
}

export const rayPlacement = (options: RayOptions, step: string, kind: string): RayPlacement => ({
  runtimeEnv: options.runtimeEnv,
  resources: options.resources,
  memoryGb: options.memoryGb,
  ...options.steps?.[kind],
  ...options.steps?.[step]
})

/** The Jobs API's resource fields for a request. */
export const rayResourceFields = (
  placement: RayPlacement,
  resources: { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined }
): Record<string, unknown> => {
  const memoryGb = resources.memoryGb ?? placement.memoryGb
  return {
    entrypoint_num_cpus: resources.cpus,
    entrypoint_num_gpus: resources.gpus,
    ...(memoryGb !== undefined && memoryGb > 0 ? { entrypoint_memory: Math.ceil(memoryGb * 1024 ** 3) } : {}),
    ...(placement.resources !== undefined ? { entrypoint_resources: placement.resources } : {})
  }
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
      return { phase: "failed", state: info.status, reason, exitCode: code }
    }
  }
}

export const makeRayBackend = (options: RayOptions = {}): ClusterBackend => {
  const address = (options.address ?? process.env.RAY_API_SERVER_ADDRESS ?? process.env.RAY_ADDRESS ?? "http://127.0.0.1:8265")
    .replace(/\/+$/, "")
  /**
   * One call to the Jobs API. node:http rather than fetch: fetch sends the Sec-Fetch-Mode header, and
   * Ray's dashboard refuses POSTs that look like they come from a browser.
   */
  const api = (method: "GET" | "POST", route: string, body?: unknown): Promise<{ status: number; json: unknown; text: string }> =>
    new Promise((resolve, reject) => {
      const payload = body !== undefined ? JSON.stringify(body) : undefined
      const req = http.request(
        new URL(route, address + "/"),
        {
          method,
          headers: payload !== undefined ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {},
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
        reject(new Error(`cannot reach the Ray Jobs API at ${address}: ${e.message} (is the head running? set ray.address)`)))
      req.end(payload)
    })

  const submit = async (req: SubmitRequest): Promise<string> => {
    const placement = rayPlacement(options, req.step, req.kind)
    const r = await api("POST", "/api/jobs/", {
      entrypoint: req.command.map(shellQuote).join(" "),
      submission_id: req.jobId,
      ...rayResourceFields(placement, req.resources),
      metadata: { anneal_step: req.step, anneal_key: req.key, anneal_name: req.name },
      ...(placement.runtimeEnv !== undefined ? { runtime_env: placement.runtimeEnv } : {})
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

  const cancel = async (jobId: string) => {
    const r = await api("POST", `/api/jobs/${encodeURIComponent(jobId)}/stop`)
    if (r.status >= 300 && r.status !== 404) throw new Error(`ray job stop ${jobId}: HTTP ${r.status}: ${r.text.trim().slice(0, 300)}`)
  }

  return {
    name: "ray",
    label: (id) => `ray job ${id}`,
    chooseJobId: (name) => `${name}-${randomBytes(4).toString("hex")}`,
    submit,
    status,
    cancel
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
  const fields = rayResourceFields(rayPlacement(options, step, kind), resources)
  const mem = fields.entrypoint_memory !== undefined ? `, ${Math.round(Number(fields.entrypoint_memory) / 1024 ** 3)} GiB` : ""
  return `ray: ${resources.gpus} GPU, ${resources.cpus} CPU${mem}`
}

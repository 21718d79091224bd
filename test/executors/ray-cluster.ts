/**
 * A one-node Ray cluster on loopback for the tests and the benchmark: `ray start --head` from the
 * project's Python environment with its own temp dir and free ports, 8 logical CPUs (or `cpus`) and 2 logical GPUs.
 * RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps Ray from swapping 127.0.0.1 for the machine's outside
 * address, so every port it opens is on loopback.
 *
 * Made to start on a loaded machine and never to outlive its test file:
 * - `rayCluster()` returns the handle before anything starts, so a test file registers `stop()` in
 *   afterAll before `start()` runs; `stop()` works at any moment: mid-start, after a failed or timed-out
 *   start (a start still running when the hook gave up is told to stop, and kills what it started).
 * - Every process Ray starts carries ANNEAL_TEST_CLUSTER=<this cluster> in its environment (Ray's
 *   daemons pass their environment on to workers and jobs), so `stop()` finds them all, whatever
 *   process group or parent they ended up with; an exit hook SIGKILLs them if the test process ends
 *   without `stop()`.
 * - `ray start` gives its raylet a fixed 30 s to register, which a busy 2-core machine misses again and
 *   again while the load lasts; fixtures/ray_start.py runs Ray's CLI with that wait turned into a
 *   poll bounded by the time this start has left. Any other failed start is cleaned up and retried
 *   with fresh ports and a fresh temp dir until one overall deadline. Ready means a trivial job ran
 *   to SUCCEEDED through the Jobs API, not that a port opened.
 * - The raylet also gives the dashboard agent (a Python process) about 15 s to write its port files,
 *   a wait no setting changes. Where PYTHONDONTWRITEBYTECODE is set (as on these machines), every Ray
 *   process compiled Ray's Python sources afresh, and on a busy machine the agent missed that wait on
 *   every try: Ray's package is compiled once (`compileall`) before the first start, and Ray's
 *   processes may write bytecode.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { execa } from "execa"
import { projectRoot, pythonExecutable } from "../../engine/python.ts"
import { freePorts, killOwnedNow, ownedProcesses, retryUntil, startReaper, stopOwned, waitFor } from "./cluster-ports.ts"

export interface RayCluster {
  /** the Jobs API (dashboard) address */
  readonly address: string
  readonly tempDir: string
  readonly stop: () => Promise<void>
}

export interface RayClusterHandle {
  /** starts the head (retrying within `deadlineMs`); rejects with what went wrong, having cleaned up */
  readonly start: (deadlineMs?: number) => Promise<RayCluster>
  /** stops every process this cluster started, at any stage, and removes its files; idempotent */
  readonly stop: () => Promise<void>
  /** the live processes this cluster started (what `stop()` would end) */
  readonly processes: () => Array<number>
}

export const rayBinary = (): string => path.join(path.dirname(pythonExecutable()), "ray")
const rayStartScript = path.join(projectRoot, "test", "executors", "fixtures", "ray_start.py")

/** Ray's package in the project's Python environment, if it can be found without importing it. */
const rayPackageDir = (): string | undefined => {
  const lib = path.join(path.dirname(path.dirname(pythonExecutable())), "lib")
  try {
    for (const v of fs.readdirSync(lib)) {
      const dir = path.join(lib, v, "site-packages", "ray")
      if (fs.existsSync(dir)) return dir
    }
  } catch {
    // not a venv layout (ANNEAL_PYTHON elsewhere): Ray then compiles as it imports
  }
  return undefined
}

/** The environment without PYTHONDONTWRITEBYTECODE: Ray's processes keep what they compile. */
const withBytecode = (): NodeJS.ProcessEnv => {
  const { PYTHONDONTWRITEBYTECODE: _drop, ...env } = process.env
  return env
}

/** Compiles Ray's Python sources once per environment, so no Ray process spends its start-up compiling them. */
const compileRay = async (timeLeftMs: number) => {
  const dir = rayPackageDir()
  if (dir === undefined || fs.existsSync(path.join(dir, "dashboard", "__pycache__"))) return
  await execa(pythonExecutable(), ["-m", "compileall", "-q", "-j", "0", dir], {
    env: withBytecode(),
    extendEnv: false,
    reject: false,
    stdin: "ignore",
    timeout: Math.max(1000, timeLeftMs)
  })
}
export const rayInstalled = (): boolean => fs.existsSync(rayBinary())

/** How long a start may take in all, retries included: generous for a loaded machine, still bounded. */
export const rayStartDeadlineMs = 360_000

/** One Jobs API call (node:http: Ray refuses what looks like browser traffic). */
const jobsApi = (address: string, method: "GET" | "POST", route: string, body?: unknown): Promise<{ status: number; json: unknown }> =>
  new Promise((resolve, reject) => {
    const payload = body !== undefined ? JSON.stringify(body) : undefined
    const req = http.request(new URL(route, address + "/"), {
      method,
      headers: payload !== undefined ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {},
      timeout: 30_000
    }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("error", reject)
      res.on("end", () => {
        let json: unknown
        try {
          json = JSON.parse(Buffer.concat(chunks).toString("utf8"))
        } catch {
          json = undefined
        }
        resolve({ status: res.statusCode ?? 0, json })
      })
    })
    req.on("timeout", () => req.destroy(new Error("no answer in 30 s")))
    req.on("error", reject)
    req.end(payload)
  })

/** `cpus`: the head's logical CPUs (8 by default; the curation bench gives it its worker count) */
export const rayCluster = (options: { readonly cpus?: number } = {}): RayClusterHandle => {
  const mark = `ANNEAL_TEST_CLUSTER=ray-${process.pid}-${randomBytes(4).toString("hex")}`
  const groups: Array<number> = []
  const tempDirs: Array<string> = []
  let stopped = false
  const find = () => ownedProcesses([mark], groups)
  const onExit = () => killOwnedNow(find)
  process.on("exit", onExit)
  // and for a test process killed by a signal, where neither afterAll nor the exit hook runs
  const dismissReaper = startReaper([mark])

  const killAll = async () => {
    await stopOwned(find)
    for (const d of tempDirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
  }

  const stop = async () => {
    stopped = true
    await killAll()
    process.off("exit", onExit)
    dismissReaper()
  }

  const startOnce = async (timeLeftMs: number): Promise<RayCluster> => {
    // short: Ray puts unix sockets under it (108-byte limit)
    const tempDir = fs.mkdtempSync("/tmp/aray-")
    tempDirs.push(tempDir)
    const [gcs, dashboard, client, agent, minWorker] = await freePorts(5)
    const env = {
      ...withBytecode(),
      ANNEAL_TEST_CLUSTER: mark.slice(mark.indexOf("=") + 1),
      RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER: "0",
      RAY_USAGE_STATS_ENABLED: "0",
      // no idle workers started ahead of time: they compete with the raylet for the two cores at startup
      RAY_enable_worker_prestart: "0",
      RAY_prestart_worker_first_driver: "0",
      // Ray's own wait for the GCS to write its port (default 30 s) is one a busy machine can miss
      RAY_gcs_server_port_wait_time_s: "120",
      ANNEAL_RAY_NODE_WAIT_S: String(Math.max(30, Math.floor(timeLeftMs / 1000) - 30))
    }
    const start = execa(pythonExecutable(), [
      rayStartScript,
      "start",
      "--head",
      "--node-ip-address=127.0.0.1",
      `--port=${gcs}`,
      "--dashboard-host=127.0.0.1",
      `--dashboard-port=${dashboard}`,
      `--ray-client-server-port=${client}`,
      `--dashboard-agent-listen-port=${agent}`,
      `--min-worker-port=${minWorker}`,
      `--max-worker-port=${minWorker! + 200}`,
      `--num-cpus=${options.cpus ?? 8}`,
      "--num-gpus=2",
      `--temp-dir=${tempDir}`,
      "--disable-usage-stats"
    ], { env, extendEnv: false, detached: true, reject: false, all: true, stdin: "ignore", timeout: Math.max(1000, timeLeftMs) })
    if (start.pid !== undefined) groups.push(start.pid)
    const address = `http://127.0.0.1:${dashboard}`
    try {
      const r = await start
      if (stopped) throw new Error("stopped while starting")
      if (r.exitCode !== 0) {
        throw new Error(`ray start ${r.timedOut ? "timed out" : `exited ${r.exitCode}`}: ${(r.all ?? "").split("\n").filter((l) => l.trim() !== "").slice(-6).join(" | ")}`)
      }
      // ready: the Jobs API answers and runs a job (its agent is up and a worker can start)
      const deadline = Date.now() + Math.max(1000, timeLeftMs)
      await waitFor("the Ray Jobs API", async () => ((await jobsApi(address, "GET", "/api/version")).status === 200 ? true : undefined), deadline - Date.now(), 500, () => stopped)
      const probe = `anneal-ready-${randomBytes(4).toString("hex")}`
      await waitFor("the readiness job to be accepted", async () => {
        const s = await jobsApi(address, "POST", "/api/jobs/", { entrypoint: "true", submission_id: probe, entrypoint_num_cpus: 0 })
        if (s.status === 200) return true
        // already submitted by an earlier try whose answer was lost
        if (s.status === 400 && JSON.stringify(s.json ?? "").includes("already exists")) return true
        throw new Error(`HTTP ${s.status}: ${JSON.stringify(s.json)}`)
      }, deadline - Date.now(), 1000, () => stopped)
      const ended = await waitFor("the readiness job to end", async () => {
        const s = await jobsApi(address, "GET", `/api/jobs/${probe}`)
        const job = s.json as { status?: string; message?: string } | undefined
        return job?.status === "SUCCEEDED" || job?.status === "FAILED" || job?.status === "STOPPED" ? job : undefined
      }, deadline - Date.now(), 500, () => stopped)
      if (ended.status !== "SUCCEEDED") throw new Error(`the readiness job ${ended.status}: ${ended.message ?? ""}`)
      if (stopped) throw new Error("stopped while starting")
      return { address, tempDir, stop }
    } catch (e) {
      // this attempt's processes and files: the next attempt starts from nothing
      await killAll()
      throw e
    }
  }

  const start = async (deadlineMs = rayStartDeadlineMs) => {
    const deadline = Date.now() + deadlineMs
    await compileRay(deadlineMs / 2)
    return retryUntil("starting a Ray head on loopback", (left) => startOnce(left), deadline - Date.now(), () => stopped)
  }

  return { start, stop, processes: find }
}

/** Starts a Ray head; the returned cluster's `stop()` ends it. Prefer `rayCluster()` in tests (stop registered first). */
export const startRay = (deadlineMs?: number): Promise<RayCluster> => {
  const handle = rayCluster()
  return handle.start(deadlineMs).catch(async (e: unknown) => {
    await handle.stop()
    throw e
  })
}

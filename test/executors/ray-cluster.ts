/**
 * A one-node Ray cluster on loopback for the tests and the benchmark: `ray start --head` from the
 * project's Python environment with its own temp dir and free ports, 8 logical CPUs and 2 logical GPUs.
 * RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps Ray from swapping 127.0.0.1 for the machine's outside
 * address, so every port it opens is on loopback. `stop()` ends the processes it started: the
 * process group of `ray start` (Ray's daemons stay in it) and their children, by id.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { execa } from "execa"
import { pythonExecutable } from "../../engine/python.ts"
import { freePorts, isRunning, sleep, waitFor } from "./cluster-ports.ts"

export interface RayCluster {
  /** the Jobs API (dashboard) address */
  readonly address: string
  readonly tempDir: string
  readonly stop: () => Promise<void>
}

export const rayBinary = (): string => path.join(path.dirname(pythonExecutable()), "ray")
export const rayInstalled = (): boolean => fs.existsSync(rayBinary())

/** Every live process whose process group is `pgid`, and all their descendants. */
const processTree = (pgid: number): Array<number> => {
  const procs: Array<{ pid: number; ppid: number; pgid: number }> = []
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (fields[0] === "Z") continue
      procs.push({ pid: Number(name), ppid: Number(fields[1]), pgid: Number(fields[2]) })
    } catch {
      // exited while listing
    }
  }
  const mine = new Set(procs.filter((p) => p.pgid === pgid).map((p) => p.pid))
  for (let grew = true; grew;) {
    grew = false
    for (const p of procs) {
      if (!mine.has(p.pid) && mine.has(p.ppid)) {
        mine.add(p.pid)
        grew = true
      }
    }
  }
  return [...mine]
}

const signalAll = (pids: ReadonlyArray<number>, signal: NodeJS.Signals) => {
  for (const pid of pids) {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
}

/** Ray gives its raylet a fixed 30 s to register; on a loaded 2-core machine that can pass, so retry. */
export const startRay = async (attempts = 3): Promise<RayCluster> => {
  for (let i = 1; ; i++) {
    try {
      return await startRayOnce()
    } catch (e) {
      if (i >= attempts) throw e
      process.stderr.write(`ray start failed (attempt ${i} of ${attempts}), retrying: ${(e as Error).message.split("\n").at(-1)}\n`)
    }
  }
}

const startRayOnce = async (): Promise<RayCluster> => {
  // short: Ray puts unix sockets under it (108-byte limit)
  const tempDir = fs.mkdtempSync("/tmp/aray-")
  const [gcs, dashboard, client, agent, minWorker] = await freePorts(5)
  // no idle workers started ahead of time: they compete with the raylet for the two cores at startup
  const env = {
    ...process.env,
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER: "0",
    RAY_USAGE_STATS_ENABLED: "0",
    RAY_enable_worker_prestart: "0",
    RAY_prestart_worker_first_driver: "0"
  }
  const start = execa(rayBinary(), [
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
    "--num-cpus=8",
    "--num-gpus=2",
    `--temp-dir=${tempDir}`,
    "--disable-usage-stats"
  ], { env, extendEnv: false, detached: true, reject: false, all: true, timeout: 180_000 })
  const pgid = start.pid!
  const address = `http://127.0.0.1:${dashboard}`
  const stop = async () => {
    let pids = processTree(pgid)
    signalAll(pids, "SIGTERM")
    const deadline = Date.now() + 8000
    while (pids.some(isRunning) && Date.now() < deadline) await sleep(200)
    pids = [...new Set([...pids.filter(isRunning), ...processTree(pgid)])]
    signalAll(pids, "SIGKILL")
    fs.rmSync(tempDir, { recursive: true, force: true })
  }
  try {
    const r = await start
    if (r.exitCode !== 0) throw new Error(`ray start exited ${r.exitCode}: ${(r.all ?? "").split("\n").slice(-10).join("\n")}`)
    await waitFor("the Ray Jobs API", async () => {
      const res = await fetch(`${address}/api/version`)
      return res.ok ? true : undefined
    }, 60_000, 500)
    return { address, tempDir, stop }
  } catch (e) {
    await stop()
    throw new Error(`could not start a Ray head on loopback: ${(e as Error).message}`)
  }
}

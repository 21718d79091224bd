/**
 * A data step's fan-out on a cluster without a shared filesystem ("sharedFilesystem": false), killed -9
 * mid-stage, on the real one-node Ray (test/executors/ray-cluster.ts) and the real one-node Slurm
 * (test/executors/slurm-cluster.ts), with the real SeaweedFS (test/helpers/s3-server.ts). In this mode the whole data step is one cluster job
 * (cache/remote/node-job.ts); its shard tasks run in worker processes on the node, and their completion
 * markers live in the node's scratch store (`<scratch>/store/resume/<key>/map/`), never on the driver.
 * The driver is `anneal run --executor <cluster> --json`, a process of its own, so it can be killed -9; the
 * jobs run in a mount namespace in which the driver's store is an empty tmpfs (as in remote-cluster.test.ts).
 *
 * The test waits until some shards are done on the node (their markers exist), then freezes the step's
 * shard workers (SIGSTOP) so the cut is exact: k markers, the rest unfinished. Then:
 *
 * - the driver and one shard worker (one that is mid-task) are killed -9, the job is left running: the
 *   killed worker's shard is retried alone on the node, the rerun reattaches to the same job (no second
 *   submission), and its output equals a clean local run's;
 * - the driver and the whole job (every process of it on the node, as when the node is lost) are killed
 *   -9 (on Slurm; on Ray the new attempt takes the same path as in the case below): the rerun submits a new attempt, which starts from exactly the k finished shards on the node's
 *   scratch store (its first progress report counts them) and redoes only the rest;
 * - the driver and only the job's own process (node-job.ts) are killed -9: the rest of the job (runner,
 *   step, shard workers) must end too before the rerun (on Ray it ran on after the job was reported
 *   failed, until cluster-runner.ts watched its parent), and the rerun goes as in the case above.
 *
 * In both, the markers of the shards finished before the kill are never rewritten, no process of the
 * killed run survives, nothing of the jobs' exchange is left in the remote, and no job is left live on
 * the cluster.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"
import type { ResultPromise } from "execa"
import { afterAll, beforeAll, describe, expect, test } from "vitest"
import { nodeBinary } from "../../engine/executors/cluster-executor.ts"
import type { ClusterBackend } from "../../engine/executors/cluster-executor.ts"
import { makeRayBackend } from "../../engine/executors/ray.ts"
import { makeSlurmBackend } from "../../engine/executors/slurm.ts"
import { projectRoot } from "../../engine/python.ts"
import { annealIndex } from "../helpers/project.ts"
import { nodeWithout } from "../helpers/node-without.ts"
import { s3Server, weedInstalled } from "../helpers/s3-server.ts"
import type { S3Server } from "../helpers/s3-server.ts"
import { clusterTestTimeoutMs, isRunning, jobWaitMs, killTracked, listProcesses, signalAll, waitFor, withDescendants } from "../executors/cluster-ports.ts"
import { rayBinary, rayCluster, rayInstalled, rayStartDeadlineMs } from "../executors/ray-cluster.ts"
import { slurmCluster, slurmInstalled, slurmStartDeadlineMs } from "../executors/slurm-cluster.ts"

const tasks = 64

const recipeText = (data: string) => `
import { clean, Instruction, recipe, source } from ${JSON.stringify(annealIndex)}

export default recipe("fanout-kill", () => {
  clean({ data: source.dataset(${JSON.stringify(data)}, Instruction) }, { minWords: 5, tasks: ${tasks}, workers: 2 }, { id: "clean" })
})
`

/** Instruction rows from a fixed seed, some too short for minWords (so clean removes some). */
const rows = (n: number): string => {
  let s = 7
  const r = () => (s = (s * 16807) % 2147483647) / 2147483647
  const words = Array.from({ length: 500 }, (_, i) => "word" + i.toString(36))
  const sentence = (k: number) => Array.from({ length: k }, () => words[Math.floor(r() * words.length)]).join(" ")
  const out: Array<string> = []
  for (let i = 0; i < n; i++) {
    out.push(JSON.stringify({ instruction: sentence(1 + Math.floor(r() * 20)), input: i % 5 === 0 ? sentence(4) : "", output: sentence(1 + Math.floor(r() * 30)) }))
  }
  return out.join("\n") + "\n"
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-nofs-fanout-"))
const s3 = s3Server()
let serverStarted: Promise<S3Server> | undefined
let server: S3Server
/** every driver this file started, stopped in afterAll whatever happened */
const drivers: Array<ResultPromise> = []

/** A cluster the tests run on: its handle, its section of anneal.config.json, and its backend (for the job's state). */
interface ClusterUnderTest {
  readonly name: "ray" | "slurm"
  readonly installed: () => string | undefined
  readonly handle: { readonly start: (deadlineMs?: number) => Promise<unknown>; readonly stop: () => Promise<void> }
  readonly startMs: number
  readonly section: () => Record<string, unknown>
  readonly backend: () => ClusterBackend
}

const ray = rayCluster()
const slurm = slurmCluster()
let rayAddress = ""
let slurmConf = ""
const clusters: ReadonlyArray<ClusterUnderTest> = [
  {
    name: "ray",
    installed: () => (rayInstalled() ? undefined : `Ray is not installed at ${rayBinary()}: run npx anneal setup`),
    handle: { start: async (ms) => (rayAddress = (await ray.start(ms)).address), stop: ray.stop },
    startMs: rayStartDeadlineMs,
    // Ray's jobs get the head daemons' environment, which lacks the S3 server's credentials
    section: () => ({ address: rayAddress, runtimeEnv: { env_vars: server.env } }),
    backend: () => makeRayBackend({ address: rayAddress })
  },
  {
    name: "slurm",
    installed: () => (slurmInstalled() ? undefined : "Slurm is not installed: run scripts/install-test-deps.sh as root"),
    handle: { start: async (ms) => (slurmConf = (await slurm.start(ms)).slurmConf), stop: slurm.stop },
    startMs: slurmStartDeadlineMs,
    // sbatch exports the driver's environment, with the S3 server's credentials, to the job
    section: () => ({ slurmConf }),
    backend: () => makeSlurmBackend({ slurmConf })
  }
]

afterAll(async () => {
  for (const d of drivers) if (d.pid !== undefined && isRunning(d.pid)) d.kill("SIGKILL")
  await Promise.allSettled(drivers)
  killTracked()
  await Promise.allSettled([ray.stop(), slurm.stop(), s3.stop()])
  fs.rmSync(root, { recursive: true, force: true })
}, 120_000)

interface Proc {
  readonly pid: number
  readonly ppid: number
  readonly cmd: string
}

/** Every live (not zombie) process with its parent and command line, from /proc. */
const processes = (): Array<Proc> =>
  listProcesses().flatMap((p) => {
    try {
      return [{ pid: p.pid, ppid: p.ppid, cmd: fs.readFileSync(`/proc/${p.pid}/cmdline`, "utf8") }]
    } catch {
      return [] // exited since
    }
  })

interface Event {
  readonly event: string
  readonly step?: string
  readonly status?: string
  readonly output?: string | null
  readonly message?: string
  readonly current?: number
  readonly unit?: string
  readonly error?: string
}

interface Project {
  readonly dir: string
  readonly recipe: string
  readonly store: string
  readonly scratch: string
  readonly bucket: string
}

const makeProject = async (cluster: ClusterUnderTest, name: string, data: string): Promise<Project> => {
  const dir = path.join(root, `${cluster.name}-${name}`)
  fs.mkdirSync(path.join(dir, "node_modules"), { recursive: true })
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "t", type: "module", private: true }))
  fs.symlinkSync(projectRoot, path.join(dir, "node_modules", "anneal"))
  fs.writeFileSync(path.join(dir, "recipe.ts"), recipeText(data))
  const store = path.join(dir, "store")
  fs.mkdirSync(store)
  const scratch = path.join(root, `${cluster.name}-${name}-scratch`)
  const bucket = `anneal-fanout-${cluster.name}-${name}-${process.pid}`
  await server.createBucket(bucket)
  fs.writeFileSync(path.join(dir, "anneal.config.json"), JSON.stringify({
    [cluster.name]: {
      ...cluster.section(),
      pollSeconds: 0.5,
      sharedFilesystem: false,
      remote: `s3://${bucket}/shared`,
      scratchDir: scratch,
      node: nodeWithout(root, store),
      // the data step is a job (a TS step asking for one CPU would run on the driver by default)
      placement: { cluster: ["clean"] },
      retry: { maxRetries: 0 }
    }
  }, null, 2))
  return { dir, recipe: path.join(dir, "recipe.ts"), store, scratch, bucket }
}

/** `anneal run` as its own process; its JSON events are collected as they come. */
const startDriver = (p: Project, executor: "ray" | "slurm" | "local", store = p.store) => {
  const events: Array<Event> = []
  const child = execa(nodeBinary(), [path.join(projectRoot, "bin", "anneal.js"), "run", p.recipe, "--executor", executor, "--json", "--store", store, "--jobs", "2"], {
    cwd: p.dir,
    env: server.env,
    reject: false,
    stdin: "ignore",
    buffer: { stdout: false, stderr: true }
  })
  drivers.push(child)
  let rest = ""
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const lines = (rest + chunk).split("\n")
    rest = lines.pop()!
    for (const l of lines) {
      try {
        events.push(JSON.parse(l) as Event)
      } catch {
        // not an event
      }
    }
  })
  return { child, events }
}

/** The ids of the jobs a driver reported submitting. */
const submittedIds = (cluster: ClusterUnderTest, events: ReadonlyArray<Event>): Array<string> =>
  logsOf(events).flatMap((m) => {
    const x = new RegExp(`^submitted ${cluster.name} job (\\S+)`).exec(m)
    return x === null ? [] : [x[1]!]
  })
const logsOf = (events: ReadonlyArray<Event>) => events.flatMap((e) => (e.event === "log" && e.step === "clean" ? [e.message!] : []))
const stepOf = (events: ReadonlyArray<Event>) => events.find((e) => e.event === "step" && e.step === "clean" && e.status !== "running")

/** The map stage's directory in the node's scratch store, once the step made it. */
const mapDirOf = (scratch: string): string | undefined => {
  const resume = path.join(scratch, "store", "resume")
  if (!fs.existsSync(resume)) return undefined
  for (const key of fs.readdirSync(resume)) {
    const dir = path.join(resume, key, "map")
    if (fs.existsSync(dir)) return dir
  }
  return undefined
}
const markersIn = (dir: string): Array<string> => {
  try {
    return fs.readdirSync(dir).filter((f) => f.endsWith(".done.json")).sort()
  } catch {
    return []
  }
}

/** The step's shard worker processes on the node: shard-main processes below the job's own (whose command line names the scratch dir). */
const shardWorkers = (scratch: string): Array<number> => {
  const procs = processes()
  const job = withDescendants(procs.filter((p) => p.cmd.includes(scratch)).map((p) => p.pid), procs)
  return procs.filter((p) => job.has(p.pid) && p.cmd.includes("shard-main") && p.cmd.includes("--serve")).map((p) => p.pid)
}

/** Every process of the job on the node: those naming the scratch dir and their descendants. */
const jobProcesses = (scratch: string): Array<number> => {
  const procs = processes()
  return [...withDescendants(procs.filter((p) => p.cmd.includes(scratch)).map((p) => p.pid), procs)]
}

/**
 * Runs the recipe on Ray until some of the map stage's shards are done on the node, and freezes the
 * step's shard workers there: the cut (which markers exist) cannot move until they are continued.
 */
const runUntilSomeShardsDone = async (cluster: ClusterUnderTest, p: Project) => {
  const first = startDriver(p, cluster.name)
  let exited = false
  void first.child.finally(() => (exited = true))
  const frozen = await waitFor("some shards of clean done on the node", () => {
    const dir = mapDirOf(p.scratch)
    if (dir === undefined || markersIn(dir).length === 0) return undefined
    const workers = shardWorkers(p.scratch)
    if (workers.length === 0) return undefined
    signalAll(workers, "SIGSTOP")
    return { dir, workers }
  }, jobWaitMs, 10, () => exited)
  const markers = new Map(markersIn(frozen.dir).map((m) => [m, fs.statSync(path.join(frozen.dir, m)).mtimeMs]))
  return { ...first, ...frozen, markers, jobId: submittedIds(cluster, first.events)[0] }
}

/**
 * Watches the markers that existed at the kill until `stop()`: a marker rewritten (a finished shard
 * redone) changes its mtime. Returns the changes seen.
 */
const watchMarkers = (dir: string, before: ReadonlyMap<string, number>) => {
  const changed = new Set<string>()
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      for (const [m, mtime] of before) {
        try {
          if (fs.statSync(path.join(dir, m)).mtimeMs !== mtime) changed.add(m)
        } catch {
          // gone: the job removes its resume dir once it published the output
        }
      }
      await new Promise((ok) => setTimeout(ok, 25))
    }
  })()
  return async () => {
    stopped = true
    await loop
    return [...changed]
  }
}

/** What must hold after the rerun whichever way the first run died. */
const expectCleanEnd = async (p: Project, again: { events: Array<Event> }) => {
  const done = stepOf(again.events)
  expect(done?.status, logsOf(again.events).join("\n")).toBe("ran")
  // the same artifact as a clean local run of the recipe
  const local = startDriver(p, "local", path.join(p.dir, "local-store"))
  const localEnd = await local.child
  expect(localEnd.exitCode, `${String(localEnd.stderr)}\n${JSON.stringify(local.events.filter((e) => e.event === "step" || e.event === "error"))}`).toBe(0)
  expect(done!.output).toBe(stepOf(local.events)?.output)
  // nothing of the jobs' exchange left in the remote
  expect(await server.client(p.bucket).list("shared/jobs/")).toEqual([])
  // no process of any attempt left on the node (the last job exits after its exit record and its collection)
  await waitFor("the job's processes to end", () => (jobProcesses(p.scratch).length === 0 ? true : undefined), 60_000).catch(() => {})
  expect(processes().filter((x) => x.cmd.includes(p.scratch)).map((x) => x.cmd.replace(/\0/g, " "))).toEqual([])
}

/** The phases the cluster gives these jobs now. */
const phasesOf = async (cluster: ClusterUnderTest, ids: ReadonlyArray<string>) => {
  const backend = cluster.backend()
  return Promise.all(ids.map(async (id) => (await backend.status(id)).phase))
}

for (const cluster of clusters) {
  describe.skipIf(!weedInstalled())(`${cluster.name}: a data step's fan-out killed -9 on a cluster without a shared filesystem`, () => {
    beforeAll(async () => {
      const missing = cluster.installed()
      if (missing !== undefined) throw new Error(missing)
      serverStarted ??= s3.start()
      ;[server] = await Promise.all([serverStarted, cluster.handle.start()])
    }, cluster.startMs + 60_000)

    test("the driver and one shard worker killed -9 mid-stage: the worker's shard is retried alone, the rerun reattaches to the job, and the output equals a clean run's", async () => {
      const data = path.join(root, `rows-${cluster.name}-a.jsonl`)
      fs.writeFileSync(data, rows(60_000))
      const p = await makeProject(cluster, "worker", data)
      const first = await runUntilSomeShardsDone(cluster, p)
      expect(first.jobId, logsOf(first.events).join("\n")).toBeDefined()
      const k = first.markers.size
      expect(k).toBeGreaterThan(0)
      expect(k, "the stage finished before the test could freeze it").toBeLessThan(tasks)
      // a worker mid-task: its task's temporary directory is named with its pid (fanout.ts executeTask)
      const busy = fs.readdirSync(first.dir).filter((f) => f.endsWith(".tmp"))
      const victim = first.workers.find((w) => busy.some((f) => f.includes(`.${w}.`))) ?? first.workers[0]!
      const driverTree = withDescendants([first.child.pid!], processes())
      signalAll([victim], "SIGKILL")
      signalAll([first.child.pid!], "SIGKILL")
      signalAll(first.workers.filter((w) => w !== victim), "SIGCONT")
      const killed = await first.child
      expect(killed.signal).toBe("SIGKILL")
      // no process of the killed driver survives it
      await waitFor("the killed driver's processes to end", () => ([...driverTree].every((pid) => !isRunning(pid)) ? true : undefined), 30_000).catch(() => {})
      expect([...driverTree].filter(isRunning)).toEqual([])

      const stopWatching = watchMarkers(first.dir, first.markers)
      const again = startDriver(p, cluster.name)
      const end = await again.child
      expect(await stopWatching(), "markers of shards finished before the kill were rewritten").toEqual([])
      expect(end.exitCode, `${String(end.stderr)}\n${logsOf(again.events).join("\n")}`).toBe(0)
      const logs = logsOf(again.events)
      // the rerun found the job it had submitted still running and followed it: one submission in all
      expect(submittedIds(cluster, again.events)).toEqual([])
      expect(logs.some((m) => m.startsWith(`reattached to ${cluster.name} job ${first.jobId} `)), logs.join("\n")).toBe(true)
      // the killed worker's shard (one not finished before the kill) was retried alone, on the node
      const retried = logs.flatMap((m) => {
        const x = /shard task (\d+) failed \(the shard worker was killed by SIGKILL\); retrying it alone/.exec(m)
        return x === null ? [] : [x[1]!]
      })
      expect(retried.length, logs.join("\n")).toBe(1)
      expect(first.markers.has(`${retried[0]}.done.json`)).toBe(false)
      await expectCleanEnd(p, again)
      // the one job ended well and is not live on the cluster (Slurm may have forgotten it already)
      expect((await phasesOf(cluster, [first.jobId!]))[0]).toMatch(/^(succeeded|gone)$/)
    }, clusterTestTimeoutMs)

    // the node's processes all lost at once; or only the job's own process (node-job), whose runner,
    // step and shard workers the cluster must then end itself before they race the new attempt
    // (the whole job lost is the same path on both clusters, the new attempt's resume from the node's
    // markers: taken on Slurm, where a job is cheap; the job's top process alone, on both: on Ray it was
    // the bug)
    for (const lost of cluster.name === "ray" ? (["top"] as const) : (["all", "top"] as const)) {
      test(`the driver and ${lost === "all" ? "the whole job" : "the job's top process alone"} killed -9 mid-stage: the rerun's new attempt redoes only the unfinished shards, and the output equals a clean run's`, async () => {
        const data = path.join(root, `rows-${cluster.name}-${lost}.jsonl`)
        fs.writeFileSync(data, rows(60_000))
        const p = await makeProject(cluster, `job-${lost}`, data)
        const first = await runUntilSomeShardsDone(cluster, p)
        expect(first.jobId, logsOf(first.events).join("\n")).toBeDefined()
        const k = first.markers.size
        expect(k).toBeGreaterThan(0)
        expect(k, "the stage finished before the test could freeze it").toBeLessThan(tasks)
        const driverTree = withDescendants([first.child.pid!], processes())
        const job = jobProcesses(p.scratch)
        // node-job's own Node process (on Ray, the shell of the job's entrypoint is its parent)
        const top = processes().filter((x) => x.cmd.split("\0")[0] === nodeBinary() && x.cmd.includes(p.scratch) && x.cmd.includes("node-job")).map((x) => x.pid)
        expect(top.length).toBe(1)
        signalAll([first.child.pid!, ...(lost === "all" ? job : top)], "SIGKILL")
        const killed = await first.child
        expect(killed.signal).toBe("SIGKILL")
        // the cluster has seen the job end (a driver restarted sooner reattaches, and learns it then)
        await waitFor("the cluster to see the job end", async () => ((await phasesOf(cluster, [first.jobId!]))[0] === "failed" ? true : undefined), 60_000)
        // and no process of the killed run is left: the driver's, and every one of the job's (with only its
        // top process killed, the cluster ends the rest; the shard workers, still frozen, wrote nothing since)
        await waitFor("the killed run's processes to end", () => ([...driverTree, ...job].every((pid) => !isRunning(pid)) ? true : undefined), 60_000).catch(() => {})
        expect([...driverTree, ...job].filter(isRunning).map((pid) => processes().find((x) => x.pid === pid)?.cmd.replace(/\0/g, " "))).toEqual([])

        const stopWatching = watchMarkers(first.dir, first.markers)
        const again = startDriver(p, cluster.name)
        const end = await again.child
        expect(await stopWatching(), "markers of shards finished before the kill were rewritten").toEqual([])
        expect(end.exitCode, `${String(end.stderr)}\n${logsOf(again.events).join("\n")}`).toBe(0)
        const resubmitted = submittedIds(cluster, again.events)
        expect(resubmitted.length, logsOf(again.events).join("\n")).toBe(1)
        // the new attempt started from the k shards finished on the node before the kill, no more (no
        // process of the lost job wrote one since), no fewer (none was redone)
        const firstCount = again.events.find((e) => e.event === "progress" && e.step === "clean" && e.unit === "shards")
        expect(firstCount?.current).toBe(k)
        await expectCleanEnd(p, again)
        // neither attempt is live on the cluster
        const phases = await phasesOf(cluster, [first.jobId!, resubmitted[0]!])
        expect(phases.filter((x) => x === "running" || x === "queued")).toEqual([])
      }, clusterTestTimeoutMs)
    }
  })
}

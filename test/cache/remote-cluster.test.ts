/**
 * Cluster jobs on nodes that share no filesystem with the driver ("sharedFilesystem": false), on the
 * real one-node Slurm (test/executors/slurm-cluster.ts) and the real one-node Ray
 * (test/executors/ray-cluster.ts), with the real SeaweedFS (test/helpers/s3-server.ts); every test runs
 * on each. Separate filesystems are simulated for real: every job runs in a mount namespace of its own
 * in which the driver's store directory is an empty tmpfs (the executor's `node` is a wrapper that does
 * that, on either cluster), so a job that read an input from, or wrote its output into, the driver's
 * store would fail; a control runs the recipe there with a shared filesystem and sees its first job
 * fail, unable to read its orders. A two-step recipe (the second reads the first's artifact) must build
 * the same artifacts as a local run, with the inputs downloaded into the node's scratch store, the
 * worker's log lines reaching the driver through the remote, and nothing of the job's exchange left in
 * the remote afterwards; a job killed -9 on its node keeps nothing, and a rerun runs only the step it
 * was running.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, test } from "vitest"
import type { EngineEvent } from "../../engine/events.ts"
import { makeSlurmExecutor } from "../../engine/executors/slurm.ts"
import { makeRayExecutor } from "../../engine/executors/ray.ts"
import { withRemote } from "../../engine/executors/cluster-executor.ts"
import type { ClusterOptions } from "../../engine/executors/cluster-executor.ts"
import { projectRoot } from "../../engine/python.ts"
import { runRecipe } from "../../engine/run.ts"
import type { Executor } from "../../engine/spec.ts"
import { annealIndex } from "../helpers/project.ts"
import { nodeWithout } from "../helpers/node-without.ts"
import { s3Server, weedInstalled } from "../helpers/s3-server.ts"
import type { S3Server } from "../helpers/s3-server.ts"
import { clusterTestTimeoutMs, jobWaitMs, killTracked, waitFor } from "../executors/cluster-ports.ts"
import { slurmCluster, slurmInstalled, slurmStartDeadlineMs } from "../executors/slurm-cluster.ts"
import type { SlurmCluster } from "../executors/slurm-cluster.ts"
import { rayBinary, rayCluster, rayInstalled, rayStartDeadlineMs } from "../executors/ray-cluster.ts"
import type { RayCluster } from "../executors/ray-cluster.ts"

const recipeText = `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Schema } from ${JSON.stringify(annealIndex)}

const make = defineStep({
  kind: "nofs-make", version: 1,
  params: Schema.Struct({ files: Schema.Int }),
  inputs: { data: Port.files() }, output: Port.files(),
  run: (ctx) => {
    const text = fs.readFileSync(ctx.inputs.data, "utf8")
    for (let i = 0; i < ctx.params.files; i++) {
      fs.mkdirSync(path.join(ctx.output, "d" + (i % 3)), { recursive: true })
      fs.writeFileSync(path.join(ctx.output, "d" + (i % 3), "part-" + i + ".txt"), (i + ":" + text).repeat(50))
    }
  }
})

const use = defineStep({
  kind: "nofs-use", version: 1,
  params: Schema.Struct({ waitFor: Schema.String }),
  executionOnly: ["waitFor"],
  inputs: { parts: Port.files() }, output: Port.files(),
  run: async (ctx) => {
    // where the step found its input and wrote its output: the test checks these are the node's
    ctx.log("paths " + JSON.stringify({ input: ctx.inputs.parts, output: ctx.output }))
    while (ctx.params.waitFor !== "" && !fs.existsSync(ctx.params.waitFor)) {
      if (ctx.signal.aborted) throw new Error("interrupted")
      await new Promise((ok) => setTimeout(ok, 100))
    }
    let n = 0
    let bytes = 0
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name))
        else { n++; bytes += fs.statSync(path.join(d, e.name)).size }
      }
    }
    walk(ctx.inputs.parts)
    fs.writeFileSync(path.join(ctx.output, "summary.txt"), n + " files, " + bytes + " bytes")
  }
})

export default recipe("nofs", () => {
  const parts = make({ data: source.files("data.txt") }, { files: 12 }, { id: "make" })
  use({ parts }, { waitFor: WAIT_FOR }, { id: "use" })
})
`

const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-nofs-"))
const s3 = s3Server()
const slurm = slurmCluster()
const ray = rayCluster()
let server: S3Server
let slurmHead: SlurmCluster
let rayHead: RayCluster

afterAll(async () => {
  killTracked()
  await Promise.allSettled([slurm.stop(), ray.stop(), s3.stop()])
  fs.rmSync(root, { recursive: true, force: true })
}, 120_000)

beforeAll(async () => {
  if (!slurmInstalled()) throw new Error("Slurm is not installed: run scripts/install-test-deps.sh as root")
  if (!rayInstalled()) throw new Error(`Ray is not installed at ${rayBinary()}: run npx anneal setup`)
  // the three at once: each start is mostly waiting
  ;[server, slurmHead, rayHead] = await Promise.all([s3.start(), slurm.start(), ray.start()])
  // the driver's remote client and, through sbatch's exported environment, the Slurm jobs' own credentials
  Object.assign(process.env, server.env)
}, Math.max(slurmStartDeadlineMs, rayStartDeadlineMs) + 60_000)

/** A cluster the tests run on: its executor with the test's settings, and the driver's line for a submitted job. */
interface ClusterUnderTest {
  readonly name: string
  readonly executor: (options: ClusterOptions) => Executor
  readonly submitted: RegExp
}

const clusters: ReadonlyArray<ClusterUnderTest> = [
  {
    name: "slurm",
    executor: (options) => makeSlurmExecutor({ slurmConf: slurmHead.slurmConf, pollSeconds: 0.5, ...options }),
    submitted: /^submitted slurm job \d+/
  },
  {
    name: "ray",
    // Ray's jobs get the environment of the head's daemons, which started without the S3 server's
    // credentials (a job then cannot reach the remote): they come as a Ray deployment gives its jobs
    // theirs, through the runtime_env
    executor: (options) => makeRayExecutor({ address: rayHead.address, pollSeconds: 0.5, runtimeEnv: { env_vars: server.env }, ...options }),
    submitted: /^submitted ray job \S+/
  }
]

/** The driver's step logs, to say why a step failed. */
const stepLogs = (store: string): string => {
  const logs = path.join(store, "logs")
  if (!fs.existsSync(logs)) return "(no logs)"
  return (fs.readdirSync(logs, { recursive: true }) as Array<string>)
    .filter((f) => fs.statSync(path.join(logs, f)).isFile())
    .map((f) => `== ${f}\n${fs.readFileSync(path.join(logs, f), "utf8")}`)
    .join("\n")
}

const runInto = async (store: string, recipe: string, executor: Executor | undefined, events: Array<EngineEvent> = []) => {
  const summary = await runRecipe({ recipe, store, executor, jobs: 2, reporter: { emit: (e) => events.push(e) }, fresh: true })
  return { summary, events, outputs: Object.fromEntries(summary.outputs) }
}

/** A project with the recipe; `use` waits for the file `waitFor` when one is named. */
const makeProject = (name: string, waitFor = ""): string => {
  const project = path.join(root, name)
  fs.mkdirSync(path.join(project, "node_modules"), { recursive: true })
  fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "t", type: "module", private: true }))
  fs.symlinkSync(projectRoot, path.join(project, "node_modules", "anneal"))
  fs.writeFileSync(path.join(project, "data.txt"), "no shared filesystem\n")
  fs.writeFileSync(path.join(project, "recipe.ts"), recipeText.replace("WAIT_FOR", JSON.stringify(waitFor)))
  return path.join(project, "recipe.ts")
}

/** Live processes whose command line holds `mark` (this test's own scratch path: nothing else has it). */
const processesWith = (mark: string): Array<number> =>
  fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).flatMap((d) => {
    try {
      return fs.readFileSync(`/proc/${d}/cmdline`, "utf8").includes(mark) ? [Number(d)] : []
    } catch {
      return []
    }
  })

// the tests at once, on both clusters: most of a job's time is waiting for its cluster, and overlapping those waits keeps this file short
describe.skipIf(!weedInstalled())("cluster jobs without a shared filesystem (Slurm and Ray + SeaweedFS)", () => {
  test("a configuration it cannot honour is refused with one line naming the setting", () => {
    expect(() => makeSlurmExecutor({ sharedFilesystem: false })).toThrow(/slurm: "sharedFilesystem": false needs a remote store/)
    expect(() => makeRayExecutor({ sharedFilesystem: false })).toThrow(/ray: "sharedFilesystem": false needs a remote store/)
    expect(() => withRemote({ sharedFilesystem: false, shardJobs: true, remote: "s3://b/p" }, {})).toThrow(/"shardJobs": true needs a shared filesystem/)
    expect(withRemote({ sharedFilesystem: false }, { remote: "s3://top/level" })).toEqual({ remote: "s3://top/level" })
  })

  for (const cluster of clusters) {
    test.concurrent(`${cluster.name}: the jobs cannot see the driver's store (the same recipe with a shared filesystem fails there)`, async () => {
      const recipe = makeProject(`project-control-${cluster.name}`)
      const driverStore = path.join(root, `driver-store-control-${cluster.name}`)
      fs.mkdirSync(driverStore)
      const { summary, events } = await runInto(driverStore, recipe, cluster.executor({ node: nodeWithout(root, driverStore), retry: { maxRetries: 0 } }))
      expect(summary.exitCode).toBe(1)
      // the runner on the node looks for its orders in the driver's store, and finds an empty directory there
      const failed = events.flatMap((e) => (e.event === "step" && e.status === "failed" ? [[e.step, e.error]] : []))
      expect(failed.map(([step]) => step)).toEqual(["make"])
      expect(failed[0]![1]).toContain(`cannot read ${driverStore}${path.sep}jobs${path.sep}`)
      expect(failed[0]![1]).toMatch(/[0-9a-f]{64}\/attempt-1\/job\.json: ENOENT/)
    }, clusterTestTimeoutMs)

    test.concurrent(`${cluster.name}: a two-step recipe builds the same artifacts as locally, exchanging inputs, logs and outputs through the remote`, async () => {
      const recipe = makeProject(`project-${cluster.name}`)
      const bucket = `anneal-nofs-${cluster.name}-${process.pid}`
      await server.createBucket(bucket)
      const driverStore = path.join(root, `driver-store-${cluster.name}`)
      fs.mkdirSync(driverStore)
      const scratch = path.join(root, `node-scratch-${cluster.name}`)
      const executor = cluster.executor({
        sharedFilesystem: false,
        remote: `s3://${bucket}/shared`,
        scratchDir: scratch,
        node: nodeWithout(root, driverStore)
      })

      const [local, remote] = await Promise.all([runInto(path.join(root, `local-store-${cluster.name}`), recipe, undefined), runInto(driverStore, recipe, executor)])
      const failed = remote.events.flatMap((e) => (e.event === "step" && e.status === "failed" ? [`${e.step}: ${e.error}`] : []))
      expect(failed, stepLogs(driverStore)).toEqual([])
      expect(remote.summary.exitCode).toBe(0)
      expect(remote.outputs).toEqual(local.outputs)
      // both steps ran as the cluster's jobs
      const submitted = remote.events.flatMap((e) => (e.event === "log" && cluster.submitted.test(e.message) ? [e.step] : []))
      expect(submitted.sort()).toEqual(["make", "use"])

      // the step's own log line came back through the remote; it read its input from the node's scratch
      // store (downloaded there) and wrote its output under the node's scratch directory
      const line = remote.events.flatMap((e) => (e.event === "log" && e.step === "use" && e.message.startsWith("paths ") ? [e.message] : []))[0]
      expect(line, "the use step's log line").toBeDefined()
      const paths = JSON.parse(line!.slice("paths ".length)) as { input: string; output: string }
      expect(paths.input).toBe(path.join(scratch, "store", "artifacts", remote.outputs.make!))
      expect(paths.output.startsWith(scratch + path.sep)).toBe(true)
      expect(fs.existsSync(path.join(scratch, "store", "artifacts", remote.outputs.make!))).toBe(true)

      // the remote holds both outputs (content-addressed) and nothing of the jobs' exchange any more
      const client = server.client(bucket)
      for (const h of Object.values(remote.outputs)) expect(await client.getBytes(`shared/artifacts/${h}.json`)).toBeDefined()
      expect(await client.list("shared/jobs/")).toEqual([])
      // and the driver's artifacts hash to their names (restored from the remote, committed here)
      for (const h of Object.values(remote.outputs)) expect(fs.existsSync(path.join(driverStore, "artifacts", h))).toBe(true)
    }, clusterTestTimeoutMs)

    test.concurrent(`${cluster.name}: a job killed -9 on its node mid-step: the step fails with nothing half-kept, and a rerun runs only that step`, async () => {
      const gate = path.join(root, `kill-gate-${cluster.name}`)
      const recipe = makeProject(`project-kill-${cluster.name}`, gate)
      const bucket = `anneal-nofs-kill-${cluster.name}-${process.pid}`
      await server.createBucket(bucket)
      const driverStore = path.join(root, `driver-store-kill-${cluster.name}`)
      fs.mkdirSync(driverStore)
      const scratch = path.join(root, `node-scratch-kill-${cluster.name}`)
      const executor = () => cluster.executor({
        sharedFilesystem: false,
        remote: `s3://${bucket}/shared`,
        scratchDir: scratch,
        // nothing kept once no job uses it: each job's collection empties the scratch store
        scratchMaxGb: 0,
        node: nodeWithout(root, driverStore),
        retry: { maxRetries: 0 }
      })
      const events: Array<EngineEvent> = []
      const first = runInto(driverStore, recipe, executor(), events)
      // `use` is running on the node (its log line came through the remote) and waits at the gate
      await waitFor("the use step to run on the node", () => (events.some((e) => e.event === "log" && e.step === "use" && e.message.startsWith("paths ")) ? true : undefined), jobWaitMs)
      const jobs = processesWith(scratch).filter((pid) => fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("node-job"))
      expect(jobs.length).toBeGreaterThan(0)
      for (const pid of jobs) process.kill(pid, "SIGKILL")
      const failed = await first
      expect(failed.summary.exitCode).toBe(1)
      const statusOf = (evs: ReadonlyArray<EngineEvent>) => Object.fromEntries(evs.flatMap((e) => (e.event === "step" ? [[e.step, e.status]] : [])))
      expect(statusOf(failed.events)).toEqual({ make: "ran", use: "failed" })
      // nothing of the killed attempt is kept: no job objects in the remote, only make's artifact here
      expect(await server.client(bucket).list("shared/jobs/")).toEqual([])
      expect(fs.readdirSync(path.join(driverStore, "artifacts")).filter((n) => /^[0-9a-f]{64}$/.test(n))).toEqual([failed.outputs.make])

      fs.writeFileSync(gate, "go")
      const again = await runInto(driverStore, recipe, executor())
      expect(again.summary.exitCode, stepLogs(driverStore)).toBe(0)
      expect(statusOf(again.events)).toEqual({ make: "cached", use: "ran" })
      const local = await runInto(path.join(root, `local-store-kill-${cluster.name}`), recipe, undefined)
      expect(again.outputs).toEqual(local.outputs)
      // the rerun's job collects the scratch store as it ends (after its exit record, so the driver may be
      // done first): with a cap of 0 no artifact is left, nor the killed job's directory and downloads
      const left = () => ["store/artifacts", "store/staging", "jobs"].flatMap((d) => {
        const dir = path.join(scratch, d)
        return fs.existsSync(dir) ? fs.readdirSync(dir).map((n) => `${d}/${n}`) : []
      })
      await waitFor("the scratch store's collection", () => (left().length === 0 ? true : undefined), 30_000).catch(() => {})
      expect(left()).toEqual([])
    }, clusterTestTimeoutMs)
  }
})

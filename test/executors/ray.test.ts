/**
 * The Ray executor against a real Ray head (`ray start --head` from the project's Python environment)
 * started on loopback for this file: the executor contract, plus the Jobs API's resource fields and a
 * job stopped from outside.
 */
import * as http from "node:http"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import { makeRayBackend, makeRayExecutor, rayStatus } from "../../engine/executors/ray.ts"
import { rayShardRunner } from "../../engine/executors/shard-jobs.ts"
import { shardCommand } from "../../steps/data/fanout.ts"
import type { RayOptions } from "../../engine/executors/ray.ts"
import * as fs from "node:fs"
import * as path from "node:path"
import { clusterTestTimeoutMs, jobWaitMs, killTracked, waitFor } from "./cluster-ports.ts"
import { expectSameArtifacts } from "./recipe-parity.ts"
import { executorContract } from "./contract.ts"
import { clusterShardParity, expectShardParity } from "./shard-parity.ts"
import { clusterDataSteps, expectClusterParity } from "./cluster-data-steps.ts"
import { distributedTrainingTests } from "./dist-training.ts"
import { rayBinary, rayCluster, rayInstalled, rayStartDeadlineMs } from "./ray-cluster.ts"
import type { RayCluster } from "./ray-cluster.ts"
import { projectRoot } from "../../engine/python.ts"
import { logsOf, makeStoreDir, outputFile, progressOf, respec, runSpec, startSpec, workerSpec } from "./specs.ts"

// jobs on a loaded machine: generous bounds (cluster-ports.ts), never waited out by a passing test
vi.setConfig({ testTimeout: clusterTestTimeoutMs })

let cluster: RayCluster | undefined
// the teardown exists before the start does: a start that fails or outlives its hook is stopped too
const ray = rayCluster()
afterAll(async () => {
  killTracked()
  await ray.stop()
}, 120_000)

beforeAll(async () => {
  if (!rayInstalled()) throw new Error(`Ray is not installed at ${rayBinary()}: run npx anneal setup`)
  cluster = await ray.start()
}, rayStartDeadlineMs + 60_000)

const options = (more: Partial<RayOptions> = {}): RayOptions => ({
  address: cluster!.address,
  pollSeconds: 0.5,
  ...more
})

/** GET on the Jobs API (node:http: Ray refuses what looks like browser traffic). */
const getJson = (route: string): Promise<unknown> =>
  new Promise((resolve, reject) => {
    http.get(new URL(route, cluster!.address + "/"), (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (c: Buffer) => chunks.push(c))
      res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))))
      res.on("error", reject)
    }).on("error", reject)
  })

const postJson = (route: string): Promise<void> =>
  new Promise((resolve, reject) => {
    const req = http.request(new URL(route, cluster!.address + "/"), { method: "POST" }, (res) => {
      res.resume()
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`POST ${route}: HTTP ${res.statusCode}`))))
    })
    req.on("error", reject)
    req.end()
  })

const jobIdOf = (messages: ReadonlyArray<string>): string => {
  const m = messages.map((s) => /^submitted ray job (\S+)/.exec(s)).find((x) => x !== null)
  if (m === undefined || m === null) throw new Error(`no submission among ${JSON.stringify(messages)}`)
  return m[1]!
}

// Every test at once, the longest (the recipes) first: a Ray job spends seconds starting (a supervisor
// actor per job), and overlapping those waits keeps this file to a few minutes on a 2-core machine.
describe.concurrent("ray", () => {
  describe("recipes on ray", () => {
    it("the demo and a recipe with a Python training step build the same artifacts as a local run", async () => {
      await expectSameArtifacts(() => makeRayExecutor(options()), (a, b, what) => expect(a, what).toEqual(b))
    })
  })

  describe("ray executor", () => {
    it("asks Ray for the step's resources: a step wanting more GPUs than the cluster has waits in Ray's queue", async () => {
      const store = makeStoreDir()
      // the test cluster has 2 GPUs
      const spec = workerSpec(store, { params: { steps: 1 }, gpus: 3, cpus: 1, memoryGb: 1 })
      const waiting = startSpec(makeRayExecutor(options()), spec)
      const jobId = await waitFor("the submission", () => (logsOf(waiting.events).length > 0 ? jobIdOf(logsOf(waiting.events)) : undefined), jobWaitMs)
      // Ray says why it is pending once its scheduler has looked at the job
      const job = await waitFor("Ray to say the job waits for resources", async () => {
        const j = (await getJson(`/api/jobs/${jobId}`)) as { status: string; message?: string | null }
        return j.status !== "PENDING" || (j.message ?? "").includes("waiting for resources") ? j : undefined
      }, jobWaitMs)
      expect(job.status).toBe("PENDING")
      expect(job.message).toContain("waiting for resources")
      expect(progressOf(waiting.events)).toEqual([])
      await waiting.interrupt()
      // Ray stops a pending job only once it could start; it must not have run
      expect(["PENDING", "STOPPED"]).toContain(((await getJson(`/api/jobs/${jobId}`)) as { status: string }).status)
    })

    it("a multi-node step: a placement group of 2 bundles, one actor each running torchrun with its node rank; one gloo group", async () => {
      const store = makeStoreDir()
      const base = workerSpec(store, { params: { nodes: 2, processes: 1 }, cpus: 2 })
      const impl = base.implementation as Extract<typeof base.implementation, { type: "command" }>
      const spec = { ...base, implementation: { ...impl, argv: [impl.argv[0]!, path.join(projectRoot, "test", "executors", "fixtures", "gang_worker.py"), impl.argv[2]!] } }
      const { error, result } = await runSpec(makeRayExecutor(options()), spec)
      expect(error?.message).toBeUndefined()
      expect(result?.metrics.world_size).toBe(2)
      const world = JSON.parse(outputFile(spec, "world.json")) as { world: number; sum: number; ranks: Array<{ rank: number; node_rank: number }> }
      expect(world.sum).toBe(1 + 2)
      expect(world.ranks.map((r) => [r.rank, r.node_rank])).toEqual([[0, 0], [1, 1]])
      // rank 1's own log is kept beside the step's log
      expect(fs.readFileSync(spec.logPath.replace(/\.log$/, ".rank1.log"), "utf8")).toContain("rank 1 of 2 joined on node 1")
    })

    it("data steps' shard tasks as Ray tasks, one Ray job a stage: clean and both semantic steps (a Python embedder in each task) write the same bytes as on this machine", async () => {
      // 3 shard tasks in one Ray task a stage, its embedder loading the model once (several array elements:
      // slurm.test.ts); Ray tasks start slowly here and wait for the training tests' CPUs, so one a stage
      const cases = await clusterShardParity(rayShardRunner(makeRayBackend(options()), shardCommand, { ...options(), maxTasks: 1 }), 3)
      expectShardParity(cases, expect)
      // one Ray job a stage (7), each of which ran every group to the end (none left for the driver to run again)
      const jobs = (await getJson("/api/jobs/")) as Array<{ status: string; submission_id: string; metadata?: Record<string, string> }>
      const shards = jobs.filter((j) => j.metadata?.anneal_step === "shards")
      expect(shards.map((j) => j.status)).toEqual(cases.flatMap((c) => c.stages.map(() => "SUCCEEDED")))
      for (const j of shards) {
        const log = (await getJson(`/api/jobs/${j.submission_id}/logs`)) as { logs: string }
        expect(log.logs).toMatch(/anneal shards: (\d+) of \1 groups done/)
      }
    })

    it("reports a job stopped from outside; the next run submits again and resumes from the checkpoint", async () => {
      const store = makeStoreDir()
      const spec = workerSpec(store, { params: { text: "stopped", steps: 60, delay: 0.3 } })
      const running = startSpec(makeRayExecutor(options()), spec)
      await waitFor("progress", () => (progressOf(running.events).length >= 3 ? true : undefined), jobWaitMs)
      const jobId = jobIdOf(logsOf(running.events))
      // what `ray job stop` does
      await postJson(`/api/jobs/${jobId}/stop`)
      const first = await running.done
      expect(first._tag).toBe("Failure")
      expect(String((first as { cause: unknown }).cause)).toMatch(/ray job \S+ STOPPED: stopped from outside anneal/)
      // same key, no more waiting per step: the rerun only has to show where it resumed from
      const outcome = await runSpec(makeRayExecutor(options()), respec(store, { ...spec, params: { ...spec.params, delay: 0 } }))
      expect(outcome.error?.message).toBeUndefined()
      expect(jobIdOf(logsOf(outcome.events))).not.toBe(jobId)
      // the retry is a new attempt, under a name of its own
      expect(jobId).toMatch(/-a1-\w+$/)
      expect(jobIdOf(logsOf(outcome.events))).toMatch(/-a2-\w+$/)
      const resumed = outcome.events.find((e) => e.event === "metric" && e.name === "resumed_from")
      expect(resumed !== undefined && resumed.event === "metric" ? Number(resumed.value) : 0).toBeGreaterThanOrEqual(3)
    })

    it("a job whose runner never starts (no Node at the configured path) fails with the shell's words, and Ray's job log stays in the step log", async () => {
      const store = makeStoreDir()
      const spec = workerSpec(store, { params: { steps: 1 } })
      const { error } = await runSpec(makeRayExecutor(options({ node: "/nonexistent/node" })), spec)
      expect(error?.message).toMatch(/^ray job \S+ FAILED: the step exited with an error, exit code 127 — .*\/nonexistent\/node.*(not found|No such file)/)
      expect(fs.readFileSync(spec.logPath, "utf8")).toMatch(/ray job \S+'s own output \(ray\):\n(.*\n)*.*\/nonexistent\/node/)
      // the job's files are gone from the store's jobs directory, its record is kept for the next attempt
      expect(fs.readdirSync(path.join(store, "jobs", spec.key))).toEqual(["record.json"])
    })
  })

  distributedTrainingTests("ray", { executor: () => makeRayExecutor(options()), killRank: true })

  executorContract("ray", {
    executor: () => makeRayExecutor(options()),
    driverConfig: () => ({ executor: "ray", ray: options() }),
    submissions: async (key) => {
      const jobs = (await getJson("/api/jobs/")) as ReadonlyArray<{ metadata?: Record<string, string> | null }>
      return jobs.filter((j) => j.metadata?.anneal_key === key).length
    },
    concurrent: true
  })
})

describe("ray job states", () => {
  it("turns Ray's endings into reasons a user can act on", () => {
    expect(rayStatus({ status: "STOPPED" }).reason).toContain("stopped from outside")
    expect(rayStatus({ status: "FAILED", error_type: "JOB_ENTRYPOINT_COMMAND_ERROR", driver_exit_code: 2, message: "Job entrypoint command failed with exit code 2, last available logs (truncated to 20,000 chars):\nboom" }))
      .toMatchObject({ phase: "failed", exitCode: 2, reason: "the step exited with an error, exit code 2" })
    expect(rayStatus({ status: "FAILED", error_type: "JOB_SUPERVISOR_ACTOR_DIED", message: "The job supervisor actor died" }).reason).toBe("The job supervisor actor died")
    expect(rayStatus({ status: "PENDING" }).phase).toBe("queued")
    expect(rayStatus({ status: "SUCCEEDED" }).phase).toBe("succeeded")
  })
})


// after the concurrent tests above: the shard executor it sets is the process's one (cluster-data-steps.ts)
describe("data steps as Ray tasks (issue 13)", () => {
  it("format, decontaminate (n-gram), dedup exact and dedup minhash: 8 shard tasks as Ray tasks write the bytes of one process here", async () => {
    // two Ray tasks a stage (one Ray job a stage): the 14 MinHash band tasks run 7 to a Ray task; 1, 3
    // and 8 tasks agree locally (fanout.test.ts)
    const cuts = [8]
    const runner = rayShardRunner(makeRayBackend(options()), shardCommand, { pollSeconds: 0.5, maxTasks: 2 })
    expectClusterParity(await clusterDataSteps(runner, cuts), cuts, expect)
  })
})

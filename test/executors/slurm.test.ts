/**
 * The Slurm executor against a real one-node Slurm (slurmctld, slurmd, munged from Debian's packages)
 * started on loopback for this file: the executor contract, plus what only Slurm has: sbatch's
 * resource flags, a job cancelled from outside, a job requeued by the cluster.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest"
import { describePlacement } from "../../engine/executor-config.ts"
import { makeSlurmExecutor, parseScontrol, slurmStatus } from "../../engine/executors/slurm.ts"
import type { SlurmOptions } from "../../engine/executors/slurm.ts"
import { nodeBinary } from "../../engine/executors/cluster-executor.ts"
import { slurmShardRunner } from "../../engine/executors/shard-jobs.ts"
import { shardCommand } from "../../steps/data/fanout.ts"
import { projectRoot } from "../../engine/python.ts"
import { clusterTestTimeoutMs, jobWaitMs, killTracked, track, waitFor } from "./cluster-ports.ts"
import { expectSameArtifacts, sftRecipe, trainRecipe } from "./recipe-parity.ts"
import { makeFixtures } from "../steps/train/helpers.ts"
import { executorContract } from "./contract.ts"
import { clusterShardParity, expectShardParity } from "./shard-parity.ts"
import { clusterDataSteps, expectClusterParity } from "./cluster-data-steps.ts"
import { distributedTrainingTests } from "./dist-training.ts"
import { logsOf, makeStoreDir, outputFile, progressOf, respec, runSpec, startSpec, workerSpec } from "./specs.ts"
import { slurmCluster, slurmInstalled, slurmStartDeadlineMs } from "./slurm-cluster.ts"
import type { SlurmCluster } from "./slurm-cluster.ts"

// jobs on a loaded machine: generous bounds (cluster-ports.ts), never waited out by a passing test
vi.setConfig({ testTimeout: clusterTestTimeoutMs })

let cluster: SlurmCluster | undefined
// the teardown exists before the start does: a start that fails or outlives its hook is stopped too
const slurm = slurmCluster()
afterAll(async () => {
  killTracked()
  await slurm.stop()
}, 120_000)

beforeAll(async () => {
  if (!slurmInstalled()) throw new Error("Slurm is not installed: run scripts/install-test-deps.sh as root")
  cluster = await slurm.start()
}, slurmStartDeadlineMs + 60_000)

const options = (more: Partial<SlurmOptions> = {}): SlurmOptions => ({
  slurmConf: cluster!.slurmConf,
  pollSeconds: 0.5,
  ...more
})

const scontrol = async (jobId: string) =>
  parseScontrol((await execa("scontrol", ["show", "job", "-o", jobId], { env: cluster!.env })).stdout)

const jobIdOf = (messages: ReadonlyArray<string>): string => {
  const m = messages.map((s) => /^submitted slurm job (\d+)/.exec(s)).find((x) => x !== null)
  if (m === undefined || m === null) throw new Error(`no submission among ${JSON.stringify(messages)}`)
  return m[1]!
}

// Every test at once, the longest (the recipes) first: most of a job's time is waiting (for the
// scheduler, for the worker's sleeps), and overlapping those waits keeps this file short.
describe.concurrent("slurm", () => {
  describe("recipes on slurm", () => {
    it("the demo and a recipe with a Python training step build the same artifacts as a local run", async () => {
      await expectSameArtifacts(() => makeSlurmExecutor(options()), (a, b, what) => expect(a, what).toEqual(b))
    })

    it("a real LoRA sft step (tiny Llama, CPU) builds the same adapter on Slurm as locally", async () => {
      process.env.ANNEAL_SFT_FIXTURES = await makeFixtures()
      await expectSameArtifacts(() => makeSlurmExecutor(options()), (a, b, what) => expect(a, what).toEqual(b), [sftRecipe])
    })

    it("data steps' shard tasks as job arrays: clean and both semantic steps (a Python embedder in each element) write the same bytes as on this machine", async () => {
      // 3 tasks in 2 array elements: one element runs two tasks, its embedder loading the model once
      expectShardParity(await clusterShardParity(slurmShardRunner({ ...options(), maxArraySize: 2 }, shardCommand, [projectRoot])), expect)
    })

    it("anneal run --executor slurm, killed mid-step and run again, attaches to the running job instead of submitting it twice", async () => {
      const project = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-slurm-cli-"))
      fs.writeFileSync(path.join(project, "anneal.config.json"), JSON.stringify({ slurm: { slurmConf: cluster!.slurmConf, pollSeconds: 0.5 } }))
      const recipe = path.join(project, "recipe.ts")
      fs.writeFileSync(recipe, `export { default } from ${JSON.stringify(trainRecipe)}\n`)
      const env = { FIXTURE_TRAIN_STEPS: "16", FIXTURE_TRAIN_DELAY: "0.5" }
      const args = [path.join(projectRoot, "bin", "anneal.js"), "run", recipe, "--executor", "slurm", "--json", "--store", path.join(project, ".anneal")]
      const first = track(execa(nodeBinary(), args, { cwd: project, env, reject: false, buffer: false, stdin: "ignore", stderr: "ignore" }))
      let seen = ""
      first.stdout!.on("data", (c: Buffer) => (seen += c.toString("utf8")))
      await waitFor("the training step's progress", () => (/"event":"progress","step":"train"/.test(seen) ? true : undefined), jobWaitMs)
      first.kill("SIGKILL")
      await first
      const submitted = /submitted slurm job (\d+)/.exec(seen.split("\n").filter((l) => l.includes('"step":"train"')).join("\n"))
      expect(submitted).not.toBeNull()

      const second = await track(execa(nodeBinary(), args, { cwd: project, env, reject: false, stdin: "ignore" }))
      expect(second.exitCode, second.stderr).toBe(0)
      expect(second.stdout).toContain(`reattached to slurm job ${submitted![1]} `)
      expect(second.stdout).not.toMatch(/submitted slurm job \d+"[^\n]*"step":"train"|"step":"train"[^\n]*submitted slurm job/)
      const key = /"event":"started","step":"train","kind":"fixture-train","key":"([0-9a-f]+)"/.exec(seen)?.[1]
      expect(key).toBeDefined()
      const jobs = (await execa("scontrol", ["show", "job", "-o"], { env: cluster!.env })).stdout.split("\n").filter((l) => l.includes(`-${key!.slice(0, 12)}-a`))
      expect(jobs.map((l) => parseScontrol(l).JobId)).toEqual([submitted![1]])
      fs.rmSync(project, { recursive: true, force: true })
    })
  })

  describe("slurm executor", () => {
    it("asks sbatch for the step's GPUs, CPUs and memory and the config's partition and time limit", async () => {
      const store = makeStoreDir()
      const spec = workerSpec(store, { params: { steps: 1 }, gpus: 1, cpus: 2, memoryGb: 1 })
      const executor = makeSlurmExecutor(options({ partition: "debug", timeLimit: "00:10:00", steps: { train: { timeLimit: "00:07:00" } } }))
      const { error, events } = await runSpec(executor, spec)
      expect(error?.message).toBeUndefined()
      const job = await scontrol(jobIdOf(logsOf(events)))
      expect(job.JobState).toBe("COMPLETED")
      expect(job.Partition).toBe("debug")
      expect(job.TimeLimit).toBe("00:07:00")
      expect(job.TRES).toContain("cpu=2")
      expect(job.TRES).toContain("mem=1G")
      expect(job.TresPerNode).toBe("gres:gpu:1")
    })

    it("a multi-node step: one srun task per node, each running torchrun with its node rank and node 0's address; one gloo group", async () => {
      // this machine runs one slurmd (Debian's Slurm is built without --enable-multiple-slurmd), so the
      // two "nodes" are two tasks of one node (gangOnOneNode); the launch is the same srun + torchrun
      const store = makeStoreDir()
      const base = workerSpec(store, { params: { nodes: 2, processes: 1 }, cpus: 2 })
      const impl = base.implementation as Extract<typeof base.implementation, { type: "command" }>
      const spec = { ...base, implementation: { ...impl, argv: [impl.argv[0]!, path.join(projectRoot, "test", "executors", "fixtures", "gang_worker.py"), impl.argv[2]!] } }
      const { error, events, result } = await runSpec(makeSlurmExecutor(options({ gangOnOneNode: true })), spec)
      expect(error?.message).toBeUndefined()
      expect(result?.metrics.world_size).toBe(2)
      const world = JSON.parse(outputFile(spec, "world.json")) as { world: number; sum: number; ranks: Array<{ rank: number; node_rank: number }> }
      expect(world.sum).toBe(1 + 2)
      expect(world.ranks.map((r) => [r.rank, r.node_rank])).toEqual([[0, 0], [1, 1]])
      // rank 1's own log is kept beside the step's log
      expect(fs.readFileSync(spec.logPath.replace(/\.log$/, ".rank1.log"), "utf8")).toContain("rank 1 of 2 joined on node 1")
      const job = await scontrol(jobIdOf(logsOf(events)))
      expect(job.NumTasks).toBe("2")
      expect(job.TRES).toContain("cpu=2")
    })

    it("reports a job cancelled from outside with Slurm's reason; the next run submits again and resumes from the checkpoint", async () => {
      const store = makeStoreDir()
      const spec = workerSpec(store, { params: { text: "cancelled", steps: 30, delay: 0.3 } })
      const executor = makeSlurmExecutor(options())
      const running = startSpec(executor, spec)
      await waitFor("progress", () => (progressOf(running.events).length >= 3 ? true : undefined), jobWaitMs)
      const jobId = jobIdOf(logsOf(running.events))
      await execa("scancel", [jobId], { env: cluster!.env })
      await running.done
      // same key, no more waiting per step: the rerun only has to show where it resumed from
      const outcome = await runSpec(makeSlurmExecutor(options()), respec(store, { ...spec, params: { ...spec.params, delay: 0 } }))
      // the first run's failure
      const first = await running.done
      expect(first._tag).toBe("Failure")
      expect(String((first as { cause: unknown }).cause)).toMatch(/slurm job \d+ CANCELLED: cancelled from outside anneal/)
      expect(String((first as { cause: unknown }).cause)).not.toMatch(/fibers/i)
      // the second run: a new attempt, under a name of its own
      expect(outcome.error?.message).toBeUndefined()
      const second = jobIdOf(logsOf(outcome.events))
      expect(second).not.toBe(jobId)
      expect((await scontrol(jobId)).JobName).toMatch(/-a1$/)
      expect((await scontrol(second)).JobName).toMatch(/-a2$/)
      const resumed = outcome.events.find((e) => e.event === "metric" && e.name === "resumed_from")
      expect(resumed !== undefined && resumed.event === "metric" ? Number(resumed.value) : 0).toBeGreaterThanOrEqual(3)
    })

    it("follows a job the cluster requeues: it runs again and resumes from its checkpoint", async () => {
      const store = makeStoreDir()
      const spec = workerSpec(store, { params: { text: "requeued", steps: 16, delay: 0.3 } })
      const running = startSpec(makeSlurmExecutor(options()), spec)
      await waitFor("progress", () => (progressOf(running.events).length >= 3 ? true : undefined), jobWaitMs)
      const jobId = jobIdOf(logsOf(running.events))
      await execa("scontrol", ["requeue", jobId], { env: cluster!.env })
      // Slurm holds a requeued job back for a while (BeginTime); let it start again now
      await waitFor("the job to be pending again", async () => ((await scontrol(jobId)).JobState === "PENDING" ? true : undefined), jobWaitMs)
      await execa("scontrol", ["update", `JobId=${jobId}`, "StartTime=now"], { env: cluster!.env })
      const exit = await running.done
      expect(exit._tag, String((exit as { cause?: unknown }).cause)).toBe("Success")
      const resumedFrom = running.events.filter((e) => e.event === "metric" && e.name === "resumed_from").map((e) => (e.event === "metric" ? Number(e.value) : 0))
      expect(resumedFrom[0]).toBe(0)
      expect(resumedFrom.at(-1)).toBeGreaterThanOrEqual(3)
      expect(outputFile(spec)).toBe("requeued trained for 16 steps\n")
      expect((await scontrol(jobId)).Restarts).toBe("1")
    })

    it("a job whose runner never starts (no Node at the configured path) fails with the shell's words, and Slurm's output stays in the step log", async () => {
      const store = makeStoreDir()
      const spec = workerSpec(store, { params: { steps: 1 } })
      const { error } = await runSpec(makeSlurmExecutor(options({ node: "/nonexistent/node" })), spec)
      expect(error?.message).toMatch(/^slurm job \d+ FAILED: the step exited with an error, reason NonZeroExitCode, exit code 127 — .*\/nonexistent\/node: not found$/)
      expect(fs.readFileSync(spec.logPath, "utf8")).toMatch(/slurm job \d+'s own output \(slurm\):\n(.*\n)*.*\/nonexistent\/node: not found/)
      // the job's files are gone, its record is kept for the next attempt
      expect(fs.readdirSync(path.join(store, "jobs", spec.key))).toEqual(["record.json"])
    })

    it("sbatch gets the arguments anneal plan shows for the step", async () => {
      const store = makeStoreDir()
      const config = { partition: "debug", memoryGb: 1, timeLimit: "00:09:00" }
      // no memory named by the step: the config's default applies, in the plan and in the job
      const spec = workerSpec(store, { params: { steps: 1 }, gpus: 1, cpus: 2 })
      const { error, events } = await runSpec(makeSlurmExecutor(options(config)), spec)
      expect(error?.message).toBeUndefined()
      const job = await scontrol(jobIdOf(logsOf(events)))
      expect(describePlacement("slurm", { slurm: config }, "train", "test-train", { gpus: 1, cpus: 2, memoryGb: 0 }))
        .toBe("slurm: sbatch --requeue --cpus-per-task=2 --mem=1024M --gres=gpu:1 --partition=debug --time=00:09:00 --signal=B:USR1@120")
      expect(job.TRES).toContain("cpu=2")
      expect(job.TRES).toContain("mem=1G")
      expect(job.TresPerNode).toBe("gres:gpu:1")
      expect(job.TimeLimit).toBe("00:09:00")
      expect(job.Requeue).toBe("1")
    })
  })

  distributedTrainingTests("slurm", { executor: () => makeSlurmExecutor(options({ gangOnOneNode: true })), killRank: true })

  executorContract("slurm", {
    executor: () => makeSlurmExecutor(options()),
    driverConfig: () => ({ executor: "slurm", slurm: options() }),
    submissions: async (key) => {
      const r = await execa("scontrol", ["show", "job", "-o"], { env: cluster!.env })
      return r.stdout.split("\n").filter((l) => l.includes(`-${key.slice(0, 12)}-a`)).length
    },
    concurrent: true
  })
})

describe("slurm job states", () => {
  it("turns Slurm's endings into reasons a user can act on", () => {
    expect(slurmStatus("TIMEOUT", "TimeLimit", "0:15")).toMatchObject({ phase: "failed", reason: expect.stringContaining("hit its time limit") })
    expect(slurmStatus("PREEMPTED", "None", "0:15").reason).toContain("preempted")
    expect(slurmStatus("NODE_FAIL", "None", "0:0").reason).toContain("node failed")
    expect(slurmStatus("OUT_OF_MEMORY", "OutOfMemory", "0:125").reason).toContain("ran out of memory")
    expect(slurmStatus("FAILED", "NonZeroExitCode", "3:0")).toMatchObject({ phase: "failed", exitCode: 3, reason: expect.stringContaining("exit code 3") })
    expect(slurmStatus("COMPLETED", "None", "0:0").phase).toBe("succeeded")
    expect(slurmStatus("PENDING", "Resources", "0:0").phase).toBe("queued")
    expect(slurmStatus("CANCELLED by 0", "None", "0:15").state).toBe("CANCELLED")
  })

  it("reads scontrol's one-line job records", () => {
    const f = parseScontrol("JobId=7 JobName=anneal-x JobState=TIMEOUT Reason=TimeLimit Dependency=(null) ExitCode=0:15 TRES=cpu=2,mem=1G,node=1")
    expect(f).toMatchObject({ JobId: "7", JobState: "TIMEOUT", Reason: "TimeLimit", ExitCode: "0:15", TRES: "cpu=2,mem=1G,node=1" })
  })
})


// after the concurrent tests above: the shard executor it sets is the process's one (cluster-data-steps.ts)
describe("data steps as Slurm job arrays (issue 13)", () => {
  it("format, decontaminate (n-gram), dedup exact and dedup minhash: 8 shard tasks as array elements write the bytes of one process here", async () => {
    // at most 2 array elements a stage: the 14 MinHash band tasks run 7 to an element; 1, 3 and 8 tasks
    // agree locally (fanout.test.ts)
    const cuts = [8]
    const runner = slurmShardRunner({ slurmConf: cluster!.slurmConf, pollSeconds: 0.5, maxArraySize: 2 }, shardCommand, [projectRoot])
    expectClusterParity(await clusterDataSteps(runner, cuts), cuts, expect)
  })
})

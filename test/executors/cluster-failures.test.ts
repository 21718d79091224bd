/**
 * A cluster executor's calls that fail (the backend, the job's files, the remote it follows a job
 * through, its cancel) fail the step in Effect's error channel with one line naming the backend, or,
 * while interrupting, are written to the step's log: never a defect (a fiber that dies). A fake backend
 * stands in for the cluster; runSpec throws when the executor dies instead of failing.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Cause from "effect/Cause"
import * as Exit from "effect/Exit"
import { describe, expect, it } from "vitest"
import { makeClusterExecutor } from "../../engine/executors/cluster-executor.ts"
import type { ClusterBackend, JobStatus } from "../../engine/executors/cluster-executor.ts"
import { attemptFiles, newRecord, readRecord, writeRecord } from "../../engine/executors/cluster-job.ts"
import { withPlacement } from "../../engine/executors/placement.ts"
import type { Executor } from "../../engine/spec.ts"
import { makeStoreDir, runSpec, startSpec, workerSpec } from "./specs.ts"

const fast = { pollSeconds: 0.05, followSeconds: 0.02, fileWaitSeconds: 0.2 }

/** A backend whose jobs run until cancelled; `over` replaces any of its calls. */
const fakeBackend = (over: Partial<ClusterBackend> = {}): ClusterBackend => {
  let next = 0
  return {
    name: "fake",
    label: (id) => `fake job ${id}`,
    submit: async () => String(++next),
    status: async (): Promise<JobStatus> => ({ phase: "running", state: "RUNNING" }),
    cancel: async () => {},
    ...over
  }
}

const oneLine = (message: string | undefined) => {
  expect(message).toBeDefined()
  expect(message!.split("\n")).toHaveLength(1)
  return message!
}

const waitFor = async (what: string, ok: () => boolean, ms = 10_000) => {
  const until = Date.now() + ms
  while (!ok()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe.concurrent("a cluster executor's failing calls fail the step, naming the backend", () => {
  it("a cluster that stops answering: the step fails once the queries keep failing", async () => {
    const store = makeStoreDir()
    const spec = workerSpec(store, { step: "sft" })
    let asked = 0
    const executor = makeClusterExecutor(fakeBackend({
      status: async () => {
        asked += 1
        throw new Error("connection refused")
      }
    }), fast)
    const { error } = await runSpec(executor, spec)
    expect(error?.step).toBe("sft")
    expect(oneLine(error?.message)).toBe("fake: querying fake job 1: connection refused")
    expect(asked).toBeGreaterThanOrEqual(10)
  })

  it("a backend that throws instead of rejecting, when submitting", async () => {
    const store = makeStoreDir()
    const spec = workerSpec(store, { step: "eval" })
    const executor = makeClusterExecutor(fakeBackend({
      submit: () => {
        throw new Error("sbatch: not on PATH")
      }
    }), fast)
    const { error } = await runSpec(executor, spec)
    expect(error?.step).toBe("eval")
    expect(oneLine(error?.message)).toBe("fake: submitting the job: sbatch: not on PATH")
  })

  it("a multi-node launch the backend cannot build", async () => {
    const store = makeStoreDir()
    const spec = workerSpec(store, { step: "pretrain", params: { nodes: 2, gpusPerNode: 1 } })
    const executor = makeClusterExecutor(fakeBackend({
      gangCommand: () => {
        throw new Error("no srun on this cluster")
      }
    }), fast)
    const { error } = await runSpec(executor, spec)
    expect(error?.step).toBe("pretrain")
    expect(oneLine(error?.message)).toBe("fake: building the job's command: no srun on this cluster")
  })

  it("following a job through the remote that cannot start (reattaching to a recorded job)", async () => {
    const store = makeStoreDir()
    const spec = workerSpec(store, { step: "dedup" })
    const stateDir = path.join(store, "jobs")
    // a driver that died left a live job recorded; its attempt dir has a directory where the mirror
    // keeps the job's events file, which it cannot clear
    const rec = newRecord("fake", stateDir, spec.key, spec.step, 1, "41")
    writeRecord(stateDir, rec)
    fs.mkdirSync(attemptFiles(rec.attemptDir).events, { recursive: true })
    const executor = makeClusterExecutor(fakeBackend(), { ...fast, sharedFilesystem: false, remote: "s3://bucket/anneal" })
    const { error } = await runSpec(executor, spec)
    expect(error?.step).toBe("dedup")
    expect(oneLine(error?.message)).toMatch(/^fake: following the job through the remote: .*events\.jsonl/)
  })

  it("an interrupt whose cancel fails: written to the step's log, and the interruption completes", async () => {
    const store = makeStoreDir()
    const spec = workerSpec(store, { step: "train" })
    const executor = makeClusterExecutor(fakeBackend({
      cancel: async () => {
        throw new Error("scancel: permission denied")
      }
    }), fast)
    const run = startSpec(executor, spec)
    await waitFor("the submission", () => readRecord(path.join(store, "jobs"), spec.key)?.jobId !== undefined)
    await run.interrupt()
    const exit = await run.done
    expect(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause), Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "succeeded").toBe(true)
    expect(fs.readFileSync(spec.logPath, "utf8")).toContain("[anneal] could not cancel the job: scancel: permission denied")
    expect(readRecord(path.join(store, "jobs"), spec.key)?.ended).toBe("interrupted")
  })
})

describe("the routing executor", () => {
  it("a driver that cannot be prepared for its steps fails the step placed there, naming the executor", async () => {
    const never = (name: string): Executor => ({
      name,
      run: () => {
        throw new Error(`${name} should not run`)
      }
    })
    const executor = withPlacement(never("fake"), never("local"), { default: "local" }, async () => {
      throw new Error("cannot load the shard runner")
    })
    const store = makeStoreDir()
    const spec = workerSpec(store, { step: "clean" })
    const { error } = await runSpec(executor, spec)
    expect(error?.step).toBe("clean")
    expect(oneLine(error?.message)).toBe("fake: preparing the driver for clean: cannot load the shard runner")
  })
})

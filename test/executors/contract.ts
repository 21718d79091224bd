/**
 * The contract every executor keeps (STYLE.md point 4): one suite, run by local.test.ts, slurm.test.ts
 * and ray.test.ts against their executor. It runs the fixture worker (fixtures/worker.py, a tiny
 * training loop that checkpoints every step) as a command step and checks what a user would notice:
 * the artifact and metrics of a successful step, the worker's own error message on failure, progress
 * arriving while the step runs, interruption stopping the worker before `run` returns, a rerun of an
 * interrupted step resuming from its checkpoint, the GPUs asked for being the GPUs the worker sees,
 * and, where jobs outlive their driver, a restarted driver attaching to the running job instead of
 * submitting it again.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { execa } from "execa"
import { Cause, Exit } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { EngineEvent } from "../../engine/events.ts"
import type { ProjectConfig } from "../../engine/executor-config.ts"
import { nodeBinary } from "../../engine/executors/cluster-executor.ts"
import { projectRoot } from "../../engine/python.ts"
import type { Executor, StepSpec } from "../../engine/spec.ts"
import { isRunning, jobWaitMs, track, waitFor } from "./cluster-ports.ts"
import { logsOf, makeStoreDir, outputFile, progressOf, respec, runSpec, startSpec, workerSpec } from "./specs.ts"

export interface ContractTarget {
  readonly executor: () => Executor
  /**
   * The project config a separate driver process builds the same executor from, for the restart test;
   * absent where a step cannot outlive its driver (local steps are the driver's children).
   */
  readonly driverConfig?: () => ProjectConfig
  /** how many times the cluster was given a job for this key */
  readonly submissions?: (key: string) => Promise<number>
  /** run the tests at the same time (each has its own keys): a cluster's per-job latency then overlaps */
  readonly concurrent?: boolean
}

const workerPid = (spec: StepSpec): number | undefined => {
  try {
    return Number(fs.readFileSync(path.join(spec.resumeDir, "worker.pid"), "utf8"))
  } catch {
    return undefined
  }
}

const metricOf = (events: ReadonlyArray<EngineEvent>, name: string) =>
  events.filter((e): e is Extract<EngineEvent, { event: "metric" }> => e.event === "metric" && e.name === name).at(-1)?.value

/** Starts the driver process; resolves its events as they arrive. */
const startDriver = (configPath: string, spec: StepSpec) => {
  const specPath = path.join(path.dirname(configPath), `${spec.runId}-driver-spec.json`)
  fs.writeFileSync(specPath, JSON.stringify(spec))
  // tracked: a test that times out leaves no driver behind (the test file's afterAll kills it)
  const child = track(execa(nodeBinary(), ["--import", "tsx", path.join(projectRoot, "test", "executors", "driver.ts"), configPath, specPath], {
    cwd: projectRoot,
    reject: false,
    buffer: false,
    stdin: "ignore",
    stderr: "inherit"
  }))
  const lines: Array<Record<string, unknown>> = []
  let pending = ""
  child.stdout!.on("data", (chunk: Buffer) => {
    const parts = (pending + chunk.toString("utf8")).split("\n")
    pending = parts.pop() ?? ""
    for (const p of parts) if (p.trim() !== "") lines.push(JSON.parse(p) as Record<string, unknown>)
  })
  return { child, lines }
}

export const executorContract = (name: string, target: ContractTarget) =>
  (target.concurrent === true ? describe.concurrent : describe)(`executor contract: ${name}`, () => {
    let store: string
    beforeAll(() => {
      store = makeStoreDir()
    })
    afterAll(() => {
      fs.rmSync(store, { recursive: true, force: true })
    })

    it("runs a step: its artifact, its final metrics, and its progress in order", async () => {
      const spec = workerSpec(store, { params: { text: "hello", steps: 3 } })
      const { result, error, events } = await runSpec(target.executor(), spec)
      expect(error?.message).toBeUndefined()
      expect(outputFile(spec)).toBe("hello trained for 3 steps\n")
      expect(result?.metrics.final_loss).toBeCloseTo(2 / 3)
      expect(progressOf(events).map((p) => [p.current, p.total, p.unit])).toEqual([[1, 3, "steps"], [2, 3, "steps"], [3, 3, "steps"]])
      expect(fs.readFileSync(spec.logPath, "utf8").length).toBeGreaterThan(0)
    })

    it("fails a step with the worker's own error message", async () => {
      const spec = workerSpec(store, { params: { mode: "fail" } })
      const { result, error } = await runSpec(target.executor(), spec)
      expect(result).toBeUndefined()
      expect(error?.message).toContain("boom: the worker could not parse its input")
      expect(error?.step).toBe("train")
    })

    it("gives the worker the GPUs, CPUs and memory the step asks for", async () => {
      const one = workerSpec(store, { params: { steps: 1 }, gpus: 1, cpus: 2, memoryGb: 1 })
      const none = workerSpec(store, { params: { steps: 1 }, gpus: 0, cpus: 1 })
      const [a, b] = await Promise.all([runSpec(target.executor(), one), runSpec(target.executor(), none)])
      expect(a.error?.message).toBeUndefined()
      expect(b.error?.message).toBeUndefined()
      expect(metricOf(a.events, "visible_gpus")).toBe(1)
      expect(metricOf(b.events, "visible_gpus")).toBe(0)
    })

    it("streams progress while the step runs, stops the worker on interrupt, and a rerun resumes from its checkpoint", async () => {
      const spec = workerSpec(store, { params: { text: "long", steps: 40, delay: 0.25 } })
      const running = startSpec(target.executor(), spec)
      await waitFor("two progress events", () => (progressOf(running.events).length >= 2 ? true : undefined), jobWaitMs)
      const pid = workerPid(spec)
      expect(pid).toBeDefined()
      await running.interrupt()
      const exit = await running.done
      expect(Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)).toBe(true)
      // the worker is gone by the time run() has returned
      expect(isRunning(pid!)).toBe(false)
      const reached = progressOf(running.events).at(-1)!.current
      expect(reached).toBeLessThan(40)

      const again = respec(store, { ...spec, params: { text: "long", steps: 40, delay: 0 } })
      const { error, events } = await runSpec(target.executor(), again)
      expect(error?.message).toBeUndefined()
      expect(metricOf(events, "resumed_from")).toBeGreaterThanOrEqual(2)
      expect(outputFile(again)).toBe("long trained for 40 steps\n")
    })

    it.skipIf(target.driverConfig === undefined)(
      "a driver killed mid-step and restarted attaches to the running job instead of submitting it again",
      async () => {
        const configPath = path.join(store, `driver-config-${Date.now()}.json`)
        fs.writeFileSync(configPath, JSON.stringify(target.driverConfig!()))
        const spec = workerSpec(store, { params: { text: "survivor", steps: 12, delay: 0.5 } })
        const first = startDriver(configPath, spec)
        await waitFor("the first driver to see progress", () => (first.lines.some((l) => l.event === "progress") ? true : undefined), jobWaitMs)
        first.child.kill("SIGKILL")
        await first.child
        const submitted = first.lines.filter((l) => l.event === "log").map((l) => String(l.message)).find((m) => m.startsWith("submitted "))
        expect(submitted).toBeDefined()
        const jobLabel = submitted!.replace(/^submitted /, "").replace(/ \(attempt \d+\)$/, "")

        const again = respec(store, spec)
        const second = startDriver(configPath, again)
        await second.child
        const done = second.lines.find((l) => l.done === true)
        expect(done?.ok, JSON.stringify(done)).toBe(true)
        const messages = second.lines.filter((l) => l.event === "log").map((l) => String(l.message))
        expect(messages.some((m) => m.startsWith(`reattached to ${jobLabel} `))).toBe(true)
        expect(messages.some((m) => m.startsWith("submitted "))).toBe(false)
        expect(outputFile(again)).toBe("survivor trained for 12 steps\n")
        if (target.submissions !== undefined) expect(await target.submissions(spec.key)).toBe(1)
      }
    )
  })

export { logsOf }

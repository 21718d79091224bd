/**
 * Step specs for the executor tests, laid out as the engine lays them out in a store: staging/,
 * resume/<key>/, logs/, and the spec file beside the log (command steps read it as their argument).
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Cause, Effect, Exit, Fiber, Option } from "effect"
import type { EngineEvent } from "../../engine/events.ts"
import { projectRoot, pythonEnvVars, pythonExecutable } from "../../engine/python.ts"
import type { ExecResult, Executor, StepSpec } from "../../engine/spec.ts"
import { StepExecutionError } from "../../engine/spec.ts"

export const workerScript = path.join(projectRoot, "test", "executors", "fixtures", "worker.py")

export const makeStoreDir = (): string => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-exec-"))
  for (const d of ["staging", "resume", "logs"]) fs.mkdirSync(path.join(root, d), { recursive: true })
  return root
}

export const newKey = (): string => randomBytes(32).toString("hex")

export interface WorkerSpecOptions {
  readonly step?: string
  readonly key?: string
  readonly params?: Record<string, unknown>
  readonly gpus?: number
  readonly cpus?: number
  readonly memoryGb?: number
}

let counter = 0

/** A command step running the fixture worker (test/executors/fixtures/worker.py). */
export const workerSpec = (store: string, o: WorkerSpecOptions = {}): StepSpec => {
  const step = o.step ?? "train"
  const key = o.key ?? newKey()
  const n = ++counter
  const output = path.join(store, "staging", `${key.slice(0, 16)}-${process.pid}-${n}`)
  fs.mkdirSync(output, { recursive: true })
  const resumeDir = path.join(store, "resume", key)
  fs.mkdirSync(resumeDir, { recursive: true })
  const logPath = path.join(store, "logs", `${step}-${n}.log`)
  const specPath = logPath.replace(/\.log$/, ".spec.json")
  const spec: StepSpec = {
    specVersion: 1,
    runId: n,
    step,
    kind: "test-train",
    version: 1,
    key,
    params: o.params ?? {},
    inputs: {},
    inputHashes: {},
    output,
    resumeDir,
    logPath,
    devices: { gpus: Array.from({ length: o.gpus ?? 0 }, (_, i) => i), cpus: o.cpus ?? 1, memoryGb: o.memoryGb },
    seed: 0,
    recipe: path.join(projectRoot, "test", "executors", "fixtures", "no-recipe.ts"),
    implementation: {
      type: "command",
      argv: [pythonExecutable(), workerScript, specPath],
      env: { ...pythonEnvVars(), ANNEAL_SPEC: specPath }
    }
  }
  fs.writeFileSync(specPath, JSON.stringify(spec, null, 2) + "\n")
  return spec
}

/** A fresh staging directory for running the same key again (the engine makes one per run). */
export const respec = (store: string, spec: StepSpec): StepSpec => {
  const again = workerSpec(store, { step: spec.step, key: spec.key, params: spec.params, gpus: spec.devices.gpus.length, cpus: spec.devices.cpus, memoryGb: spec.devices.memoryGb })
  return again
}

export interface Outcome {
  readonly result?: ExecResult
  readonly error?: StepExecutionError
  readonly events: ReadonlyArray<EngineEvent>
}

/** Runs a spec to the end, collecting its events. */
export const runSpec = async (executor: Executor, spec: StepSpec): Promise<Outcome> => {
  const events: Array<EngineEvent> = []
  const exit = await Effect.runPromiseExit(executor.run(spec, (e) => events.push(e)))
  if (Exit.isSuccess(exit)) return { result: exit.value, events }
  const failure = Cause.findErrorOption(exit.cause)
  if (Option.isSome(failure) && failure.value instanceof StepExecutionError) return { error: failure.value, events }
  throw new Error(`the executor died instead of failing: ${Cause.pretty(exit.cause)}`)
}

/** Starts a spec in a fiber; `interrupt()` interrupts it and resolves once the executor has stopped. */
export const startSpec = (executor: Executor, spec: StepSpec) => {
  const events: Array<EngineEvent> = []
  const fiber = Effect.runFork(executor.run(spec, (e) => events.push(e)))
  return {
    events,
    interrupt: () => Effect.runPromise(Fiber.interrupt(fiber)),
    done: Effect.runPromiseExit(Fiber.join(fiber))
  }
}

export const outputFile = (spec: StepSpec, name = "model.txt"): string => fs.readFileSync(path.join(spec.output, name), "utf8")

export const progressOf = (events: ReadonlyArray<EngineEvent>) =>
  events.filter((e): e is Extract<EngineEvent, { event: "progress" }> => e.event === "progress")
export const logsOf = (events: ReadonlyArray<EngineEvent>) =>
  events.filter((e): e is Extract<EngineEvent, { event: "log" }> => e.event === "log").map((e) => e.message)

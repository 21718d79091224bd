/**
 * Shared by the model-surgery tests: one Python process per batch of fixture/reference jobs
 * (model-tools.py), and running a step's implementation directly with a hand-built StepContext.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Schema } from "effect"
import { execa } from "execa"
import { pythonEnvVars, pythonExecutable } from "../../../engine/python.ts"
import { runImplementation } from "../../../engine/step.ts"
import type { StepDefinition } from "../../../engine/step.ts"

export const here = path.dirname(fileURLToPath(import.meta.url))
export const tools = path.join(here, "model-tools.py")

/** Every temp dir of a test file lives under one root, which the file's afterAll removes. */
const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-model-tests-"))
export const removeTempDirs = (): void => {
  if (process.env.ANNEAL_KEEP_TEST_DIRS === undefined) fs.rmSync(root, { recursive: true, force: true })
}

export const tempDir = (prefix: string): string => fs.mkdtempSync(path.join(root, `${prefix}-`))

/** Runs model-tools.py jobs ([cmd, ...args]) in one Python process; returns each job's result. */
export const runTools = async (jobs: ReadonlyArray<ReadonlyArray<string>>): Promise<Array<any>> => {
  const dir = tempDir("jobs")
  const jobsFile = path.join(dir, "jobs.json")
  const resultsFile = path.join(dir, "results.json")
  fs.writeFileSync(jobsFile, JSON.stringify(jobs))
  await execa(pythonExecutable(), [tools, "batch", jobsFile, resultsFile], {
    env: { ...process.env, ...pythonEnvVars() },
    all: true
  }).catch((e: any) => {
    throw new Error(`model-tools.py failed: ${String(e.all ?? e.message).split("\n").slice(-15).join("\n")}`)
  })
  const results = JSON.parse(fs.readFileSync(resultsFile, "utf-8")) as Array<any>
  fs.rmSync(dir, { recursive: true, force: true })
  return results
}

/** Runs a TS step's `run` into a fresh output directory, as the executor would. */
export const runStep = async <I extends Record<string, any>>(
  step: { readonly definition: StepDefinition<any, any, any, any> },
  inputs: I,
  params: unknown,
  options: { readonly seed?: number; readonly output?: string } = {}
): Promise<string> => {
  const def = step.definition as StepDefinition
  const decoded = Schema.decodeUnknownSync(def.params as Schema.Codec<unknown, unknown>, { onExcessProperty: "error" })(params)
  const output = options.output ?? tempDir("out")
  fs.mkdirSync(output, { recursive: true })
  const metrics: Record<string, number | string> = {}
  await Effect.runPromise(
    runImplementation(def, {
      step: def.kind,
      key: "test",
      params: decoded,
      inputs: inputs as any,
      output,
      resumeDir: tempDir("resume"),
      gpus: [],
      cpus: 1,
      seed: options.seed ?? 0,
      signal: new AbortController().signal,
      progress: () => {},
      metric: (name, value) => {
        metrics[name] = value
      },
      log: () => {}
    })
  )
  return output
}

export interface CompareReport {
  readonly only_a: ReadonlyArray<string>
  readonly only_b: ReadonlyArray<string>
  readonly tensors: Record<string, { equal: boolean; max_abs: number; max_abs_value: number; mismatched: number; numel: number; dtype_a: string; dtype_b: string; shape_equal: boolean }>
}

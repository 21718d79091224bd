/**
 * A step spec is everything an executor needs to run one step, as plain JSON: it can be written to a
 * file and run by another process or on another machine (`anneal exec-step SPEC.json`), which is how
 * the Slurm and Ray executors run TS steps. Python and other subprocess workers read it as their
 * first argument (see python/anneal_worker/protocol.py and DESIGN.md's worker protocol).
 */
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"
import type { EngineEvent } from "./events.ts"

export interface StepSpec {
  readonly specVersion: 1
  readonly runId: number
  readonly step: string
  readonly kind: string
  readonly version: number
  readonly key: string
  /** decoded params, encoded back to JSON (defaults filled in) */
  readonly params: Record<string, unknown>
  /** input port -> artifact directory (or source file) path; array ports map to arrays */
  readonly inputs: Record<string, string | ReadonlyArray<string>>
  /** input port -> artifact content hash(es), for self-describing outputs */
  readonly inputHashes: Record<string, string | ReadonlyArray<string>>
  /** an empty directory the step fills; committed to the store only when the step succeeds */
  readonly output: string
  /** survives interruption; keyed by the step key, so a rerun of the same key resumes from it */
  readonly resumeDir: string
  readonly logPath: string
  readonly devices: { readonly gpus: ReadonlyArray<number>; readonly cpus: number; readonly memoryGb?: number | undefined }
  /** the step's declared `seed` param (part of the key); absent for a kind that declares none */
  readonly seed?: number | undefined
  /** the recipe module, imported by `anneal exec-step` so custom step kinds are registered */
  readonly recipe: string
  /** the call's `executor` option: where a cluster executor runs the step (engine/executors/placement.ts) */
  readonly placement?: "local" | "cluster" | undefined
  /** how to run it: in-process TS (by kind), or a command (argument array, never a shell string) */
  readonly implementation:
    | { readonly type: "ts" }
    | {
      readonly type: "command"
      readonly argv: ReadonlyArray<string>
      readonly env: Readonly<Record<string, string>>
      readonly cwd?: string | undefined
    }
}

export interface ExecResult {
  /** final metrics the step reported (last value per name) */
  readonly metrics: Record<string, number | string>
}

/**
 * A step that did not produce its output: the executor's failure, in Effect's error channel. The run
 * settles the step as failed with this message (exit 1); it is never a bad-input error.
 */
export class StepExecutionError extends Data.TaggedError("StepExecutionError")<{
  readonly step: string
  readonly message: string
  readonly exitCode?: number | undefined
  readonly cause?: unknown
}> {
  constructor(step: string, message: string, exitCode?: number | undefined, cause?: unknown) {
    super({ step, message, exitCode, cause })
  }
}

/**
 * Runs one spec. The scheduler decides when, the rebuilder whether; an executor only decides where and
 * how. Interrupting the returned effect must stop the work (SIGTERM, then SIGKILL, to a subprocess's
 * whole process group; an in-process step is waited for) before the effect completes: nothing may write
 * into `output` after that, since the engine then discards it. Failures go in the error channel as
 * StepExecutionError; the engine also turns any defect into a failed step, never an interruption.
 */
export interface Executor {
  readonly name: string
  readonly run: (spec: StepSpec, emit: (event: EngineEvent) => void) => Effect.Effect<ExecResult, StepExecutionError>
  /** ends what the executor keeps between steps (the local executor's warm Python process); the run calls it at its end */
  readonly close?: (() => Promise<void>) | undefined
}

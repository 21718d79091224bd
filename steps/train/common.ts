/**
 * What the training step kinds share: Schema building blocks that mirror the Python config dataclasses
 * (each worker's dataclass is the source of truth for names, defaults and types; the TS Schema copies
 * it and test/steps/train/config-agreement.test.ts checks they agree), and the command that starts a
 * worker, under torchrun when it runs on more than one process.
 */
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Schema from "effect/Schema"
import { seedParam, withDefault } from "../../engine/params.ts"
import { checkPythonEnv, projectRoot, pythonEnvVars } from "../../engine/python.ts"
import type { CommandContext, CommandSpec, Resources } from "../../engine/step.ts"

export const trainDir = path.dirname(fileURLToPath(import.meta.url))

export { seedParam, withDefault } from "../../engine/params.ts"

/** A nullable field: null means "from the preset, else the worker's default". */
export const fromPreset = <S extends Schema.Top>(schema: S) => withDefault(Schema.NullOr(schema), null)

export const PositiveInt = Schema.Int.check(Schema.isGreaterThan(0))
export const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
export const PositiveNumber = Schema.Finite.check(Schema.isGreaterThan(0))
export const NonNegativeNumber = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
export const Probability = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThan(1))
/** optimizer steps, or -1 for "train for numEpochs" */
export const MaxSteps = Schema.Int.check(Schema.makeFilter((n: number) => n > 0 || n === -1 || "a positive integer, or -1 for numEpochs"))
export const LrScheduler = Schema.Literals(["linear", "cosine", "constant", "constant_with_warmup"])

/** A param's doc, as the annotation `anneal steps` and docs/steps.md print. */
export const describe = (description: string) => ({ description })

/** The fine-tuning loop's fields shared by sft and dpo, in their dataclasses' order (pretrain has its own defaults). */
export const fineTuneLoopFields = {
  maxGradNorm: withDefault(PositiveNumber, 1).annotate(describe("gradient clipping norm")),
  microBatchSize: withDefault(PositiveInt, 4).annotate(
    describe("examples per process per forward pass; global batch = microBatchSize x gradientAccumulationSteps x processes")
  ),
  gradientAccumulationSteps: withDefault(PositiveInt, 1).annotate(describe("micro batches per optimizer step")),
  maxSteps: withDefault(MaxSteps, -1).annotate(describe("optimizer steps; -1 trains for numEpochs instead")),
  numEpochs: withDefault(PositiveNumber, 1).annotate(describe("passes over the data when maxSteps is -1")),
  gradientCheckpointing: withDefault(Schema.Boolean, false).annotate(describe("recompute activations to save memory"))
}

/** Fields every training kind has, in the order the dataclasses declare them (the run block). */
export const runFields = {
  saveSteps: withDefault(NonNegativeInt, 0).annotate(
    describe("checkpoint into the resume dir every N optimizer steps (0: never); a rerun resumes from the newest")
  ),
  loggingSteps: withDefault(PositiveInt, 1).annotate(describe("a progress line every N optimizer steps")),
  processes: withDefault(PositiveInt, 1).annotate(
    describe("CPU data-parallel processes (torchrun + gloo); on GPUs the scheduler's gpus count decides")
  ),
  allowPickle: withDefault(Schema.Boolean, false).annotate(describe("load pickle (.bin) weights; only for files you trust")),
  seed: seedParam()
}

/** Checkpoint cadence and log cadence cannot change a training result. */
export const trainingExecutionOnly = ["saveSteps", "loggingSteps"] as const

/** The Python files a worker's output depends on besides its own script. */
export const workerSourceFiles = (script: string): ReadonlyArray<string> => [
  script,
  ...["protocol.py", "datasets.py", "training.py", "templates.py"].map((f) =>
    path.join(projectRoot, "python", "anneal_worker", f)
  )
]

/**
 * `python WORKER.py SPEC.json`, or with N > 1 processes (the GPUs assigned, else the `processes` param)
 * `python -m torch.distributed.run --standalone --nproc_per_node N WORKER.py SPEC.json`.
 */
export const trainingCommand = (script: string) =>
<P>(ctx: CommandContext<P>): CommandSpec => {
  const python = checkPythonEnv()
  const requested = (ctx.params as { readonly processes?: number }).processes ?? 1
  const processes = ctx.gpus.length > 1 ? ctx.gpus.length : requested
  const argv = processes > 1
    ? [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", String(processes), script, ctx.specPath]
    : [python, script, ctx.specPath]
  return { argv, env: pythonEnvVars() }
}

/** One GPU (or CPU with --allow-cpu); a multi-process CPU run takes one CPU slot per process. */
export const trainingResources = (p: { readonly processes?: number }): Resources => ({
  gpus: 1,
  cpuFallback: true,
  cpus: p.processes ?? 1
})

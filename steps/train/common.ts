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
import { distribution, type DistributedParams, torchrunArgv, worldSize } from "./torchrun.ts"

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
    describe("examples per process per forward pass; global batch = microBatchSize x gradientAccumulationSteps x world size")
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
  nodes: withDefault(PositiveInt, 1).annotate(
    describe("machines the step runs on (torchrun on each; more than 1 needs the Slurm or Ray executor)")
  ),
  gpusPerNode: withDefault(Schema.NullOr(PositiveInt), null).annotate(
    describe("processes (one per GPU) on each node; null: the processes param (CPU), or the GPUs assigned")
  ),
  processes: withDefault(PositiveInt, 1).annotate(
    describe("processes per node when gpusPerNode is null (CPU data parallelism over gloo)")
  ),
  strategy: withDefault(Schema.Literals(["ddp", "fsdp", "deepspeed"]), "ddp").annotate(
    describe("how several processes share the work: ddp (replicas), fsdp (sharded), deepspeed (ZeRO; CUDA only)")
  ),
  fsdpSharding: withDefault(Schema.Literals(["full-shard", "shard-grad-op"]), "full-shard").annotate(
    describe("fsdp: shard parameters too (full-shard, ZeRO-3 like) or only gradients and optimizer states")
  ),
  fsdpAutoWrap: withDefault(Schema.Boolean, true).annotate(describe("fsdp: wrap each transformer layer (else the model as one unit)")),
  fsdpActivationCheckpointing: withDefault(Schema.Boolean, false).annotate(
    describe("fsdp: recompute each layer's activations in the backward pass")
  ),
  fsdpCpuOffload: withDefault(Schema.Boolean, false).annotate(describe("fsdp: keep parameters and gradients on CPU when not in use")),
  deepspeedStage: withDefault(Schema.Int.check(Schema.makeFilter((n: number) => n === 2 || n === 3 || "2 or 3")), 2).annotate(
    describe("deepspeed: ZeRO stage, 2 or 3")
  ),
  deepspeedConfig: withDefault(Schema.NullOr(Schema.Record(Schema.String, Schema.Unknown)), null).annotate(
    describe("deepspeed: a DeepSpeed config (the JSON file's content) used as it is instead of the generated one")
  ),
  allowPickle: withDefault(Schema.Boolean, false).annotate(describe("load pickle (.bin) weights; only for files you trust")),
  seed: seedParam()
}

/**
 * Left out of the key: checkpoint and log cadence, and how the processes share the work (strategy and
 * its FSDP / ZeRO-stage options), which changes memory and speed but not the math: the same global batch
 * and optimizer give the same weights up to floating-point reduction order (docs/training-steps.md
 * states the tolerance and the test that holds ddp and fsdp to it). The world size (nodes, gpusPerNode,
 * processes) is in the key because it sets the global batch, and a deepspeedConfig is too because it can
 * set anything (optimizer, precision, batch).
 */
export const trainingExecutionOnly = [
  "saveSteps", "loggingSteps", "strategy", "fsdpSharding", "fsdpAutoWrap", "fsdpActivationCheckpointing", "fsdpCpuOffload",
  "deepspeedStage"
] as const

/** The Python files a worker's output depends on besides its own script. */
export const workerSourceFiles = (script: string): ReadonlyArray<string> => [
  script,
  ...["protocol.py", "datasets.py", "training.py", "templates.py", "distributed.py", "tokenized.py"].map((f) =>
    path.join(projectRoot, "python", "anneal_worker", f)
  )
]

/**
 * `python WORKER.py SPEC.json` for one process, else torchrun on this machine (steps/train/torchrun.ts:
 * loopback rendezvous on a port the kernel picks, no restarts). A torchrun command never starts from
 * the warm Python process (engine/warm-workers.ts takes only `python SCRIPT.py ...`). A multi-node step
 * keeps the plain `python WORKER.py SPEC.json`: the cluster executor that launches the gang builds each
 * node's torchrun argv itself (`torchrunArgv`), and the local executor refuses it with one line rather
 * than silently training a different global batch.
 */
export const trainingCommand = (script: string) =>
<P>(ctx: CommandContext<P>): CommandSpec => {
  const python = checkPythonEnv()
  const d = distribution(ctx.params as DistributedParams, ctx.gpus.length)
  const argv = d.nodes === 1 && worldSize(d) > 1
    ? torchrunArgv({ python, script, args: [ctx.specPath], nodes: 1, processesPerNode: d.processesPerNode })
    : [python, script, ctx.specPath]
  return { argv, env: pythonEnvVars() }
}

/**
 * The whole gang: one GPU per process (nodes x processes per node), CPU fallback allowed, and a CPU slot
 * per process. The scheduler grants it all at once or waits. `nodes` and `processesPerNode` say how the
 * totals split over machines, for the cluster executors.
 */
export const trainingResources = (p: DistributedParams): Resources & { readonly nodes: number; readonly processesPerNode: number } => {
  const d = distribution(p)
  return {
    gpus: worldSize(d),
    cpuFallback: true,
    cpus: worldSize(d),
    nodes: d.nodes,
    processesPerNode: d.processesPerNode
  }
}

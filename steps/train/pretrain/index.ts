/**
 * `pretrain`: trains a causal LM on packed Text documents (worker.py), from scratch (a tokenizer plus a
 * Llama- or phi-style architecture) or continued from a Model. Output: a Hugging Face model directory.
 *
 * Scaling to phi-1.5 (arXiv 2309.05463) on GPUs: architecture "phi", hiddenSize 2048, numLayers 24,
 * numHeads 32, intermediateSize 8192, partialRotaryFactor 0.5, seqLen 2048, preset "phi-1.5",
 * and a global batch of 2048 sequences (microBatchSize x gradientAccumulationSteps x GPUs).
 */
import * as path from "node:path"
import * as Schema from "effect/Schema"
import { Text } from "../../../engine/rows.ts"
import { defineStep, Port } from "../../../engine/step.ts"
import {
  describe, fromPreset, LrScheduler, MaxSteps, NonNegativeInt, NonNegativeNumber, PositiveInt, PositiveNumber, Probability,
  runFields, trainDir, trainingCommand, trainingExecutionOnly, trainingResources, withDefault, workerSourceFiles
} from "../common.ts"

const script = path.join(trainDir, "pretrain", "worker.py")

/** What each preset sets (PRESETS in worker.py); the agreement test checks the two tables agree. */
export const pretrainPresets = {
  none: {},
  "phi-1.5": {
    learningRate: 2e-4, lrScheduler: "constant", warmupSteps: 0, weightDecay: 0.1, adamBeta1: 0.9, adamBeta2: 0.98,
    adamEpsilon: 1e-7
  }
}
/** What a null optimizer field becomes when the preset does not set it (DEFAULTS in worker.py). */
export const pretrainDefaults = {
  learningRate: 3e-4, lrScheduler: "cosine", warmupSteps: 0, weightDecay: 0, adamBeta1: 0.9, adamBeta2: 0.999,
  adamEpsilon: 1e-8
}

/** Mirrors PretrainConfig in worker.py (same fields and defaults; null = from the preset). */
export const PretrainParams = Schema.Struct({
  architecture: withDefault(Schema.Literals(["llama", "phi"]), "llama").annotate(describe(
    "from scratch: llama (pre-norm, rotary, SwiGLU) or phi (partial rotary, attention and MLP in parallel, GELU)"
  )),
  hiddenSize: withDefault(PositiveInt, 64).annotate(describe("model width (from scratch)")),
  numLayers: withDefault(PositiveInt, 2).annotate(describe("transformer blocks (from scratch)")),
  numHeads: withDefault(PositiveInt, 4).annotate(describe("attention heads; must divide hiddenSize")),
  intermediateSize: withDefault(PositiveInt, 256).annotate(describe("MLP width (from scratch)")),
  partialRotaryFactor: withDefault(PositiveNumber.check(Schema.isLessThanOrEqualTo(1)), 0.5).annotate(
    describe("fraction of each head's dims with rotary embeddings (phi only; phi-1.5: 0.5)")
  ),
  ropeTheta: withDefault(PositiveNumber, 10000).annotate(describe("rotary base frequency")),
  tieWordEmbeddings: withDefault(Schema.Boolean, false).annotate(describe("share input and output embeddings")),
  seqLen: withDefault(PositiveInt, 128).annotate(describe("tokens per packed training sequence (phi-1.5: 2048)")),
  preset: withDefault(Schema.Literals(["none", "phi-1.5"]), "none").annotate({
    description: "optimizer hyperparameters for the fields left null: phi-1.5 = arXiv 2309.05463",
    presets: pretrainPresets,
    presetDefaults: pretrainDefaults
  }),
  learningRate: fromPreset(PositiveNumber).annotate(describe("peak learning rate")),
  lrScheduler: fromPreset(LrScheduler).annotate(describe("learning-rate schedule after warmup")),
  warmupSteps: fromPreset(NonNegativeInt).annotate(describe("linear warmup, in optimizer steps")),
  weightDecay: fromPreset(NonNegativeNumber).annotate(describe("AdamW weight decay")),
  adamBeta1: fromPreset(Probability).annotate(describe("AdamW beta1")),
  adamBeta2: fromPreset(Probability).annotate(describe("AdamW beta2")),
  adamEpsilon: fromPreset(PositiveNumber).annotate(describe("AdamW epsilon")),
  maxGradNorm: withDefault(PositiveNumber, 1).annotate(describe("gradient clipping norm")),
  microBatchSize: withDefault(PositiveInt, 8).annotate(
    describe("sequences per process per forward pass; global batch = microBatchSize x gradientAccumulationSteps x world size")
  ),
  gradientAccumulationSteps: withDefault(PositiveInt, 1).annotate(describe("micro batches per optimizer step")),
  maxSteps: withDefault(MaxSteps, 100).annotate(describe("optimizer steps; -1 trains for numEpochs over the packed data")),
  numEpochs: withDefault(PositiveNumber, 1).annotate(describe("passes over the data when maxSteps is -1")),
  gradientCheckpointing: withDefault(Schema.Boolean, false).annotate(describe("recompute activations to save memory")),
  ...runFields
})
export type PretrainParams = typeof PretrainParams.Type

export const pretrain = defineStep({
  kind: "pretrain",
  version: 1,
  description: "pretrain a causal LM on packed text, from scratch (llama / phi) or continued",
  params: PretrainParams,
  inputs: {
    data: Port.describe(Port.optional(Port.dataset(Text)), "documents, tokenized into the resume dir and packed into seqLen blocks"),
    tokens: Port.describe(Port.optional(Port.files()), "instead of data: a tokenize step's memory-mapped token shards"),
    tokenizer: Port.describe(Port.optional(Port.tokenizer()), "from scratch: the vocabulary"),
    model: Port.describe(Port.optional(Port.model()), "continued pretraining: the starting weights and tokenizer")
  },
  output: Port.model(),
  checkParams: (_params, inputs) =>
    (inputs.data > 0) === (inputs.tokens > 0)
      ? { param: "data", message: "give one of the inputs data (a Text dataset) or tokens (a tokenize step's output)" }
      : undefined,
  resources: trainingResources,
  executionOnly: trainingExecutionOnly,
  sourceFiles: workerSourceFiles(script),
  command: trainingCommand(script)
})

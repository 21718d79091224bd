/**
 * `sft` and `sft-lora`: supervised fine-tuning with TRL (worker.py), full or LoRA, with NEFTune and
 * completion-only loss. `sft` outputs a Model (LoRA merged into the base), `sft-lora` the PEFT Adapter.
 *
 * Platypus (arXiv 2308.07317) at full scale: preset "platypus" on a Llama-2 13B base, maxLength 4096,
 * global batch 16 (microBatchSize x gradientAccumulationSteps x GPUs), numEpochs 1.
 */
import * as path from "node:path"
import * as Schema from "effect/Schema"
import type { Dataset } from "../../../engine/artifact.ts"
import type { Instruction, Messages, PromptCompletion, Row, Text } from "../../../engine/rows.ts"
import { defineStep, Port } from "../../../engine/step.ts"
import {
  fromPreset, LrScheduler, NonNegativeInt, NonNegativeNumber, PositiveInt, PositiveNumber, Probability,
  describe, fineTuneLoopFields, runFields, trainDir, trainingCommand, trainingExecutionOnly, trainingResources, withDefault, workerSourceFiles
} from "../common.ts"

const script = path.join(trainDir, "sft", "worker.py")

/** What each preset sets (PRESETS in worker.py); the agreement test checks the two tables agree. */
export const sftPresets = {
  none: {},
  platypus: {
    adapter: "lora", loraR: 16, loraAlpha: 16, loraDropout: 0.05, loraTargetModules: ["gate_proj", "up_proj", "down_proj"],
    learningRate: 4e-4, lrScheduler: "cosine", warmupSteps: 100, weightDecay: 0
  }
}
/** What a null field becomes when the preset does not set it (DEFAULTS in worker.py). */
export const sftDefaults = {
  adapter: "lora", loraR: 8, loraAlpha: 16, loraDropout: 0.05, loraTargetModules: ["q_proj", "v_proj"],
  learningRate: 2e-4, lrScheduler: "linear", warmupSteps: 0, weightDecay: 0
}

/** Mirrors SftConfig in worker.py (null = from the preset, else sftDefaults). */
export const SftParams = Schema.Struct({
  preset: withDefault(Schema.Literals(["none", "platypus"]), "none").annotate({
    description: "hyperparameters for the fields left null: platypus = arXiv 2308.07317",
    presets: sftPresets,
    presetDefaults: sftDefaults
  }),
  adapter: fromPreset(Schema.Literals(["lora", "full"])).annotate(
    describe("lora trains adapters on a frozen base (merged into the output); full trains every weight")
  ),
  loraR: fromPreset(PositiveInt).annotate(describe("LoRA rank")),
  loraAlpha: fromPreset(PositiveNumber).annotate(describe("LoRA scale (alpha / r)")),
  loraDropout: fromPreset(Probability).annotate(describe("dropout on the LoRA path")),
  loraTargetModules: fromPreset(Schema.Array(Schema.NonEmptyString).check(Schema.isMinLength(1))).annotate(
    describe("module names to adapt (e.g. q_proj, gate_proj), or [\"all-linear\"]")
  ),
  useRslora: withDefault(Schema.Boolean, false).annotate(describe("scale adapters by alpha/sqrt(r) instead of alpha/r")),
  neftuneNoiseAlpha: withDefault(Schema.NullOr(PositiveNumber), null).annotate(
    describe("NEFTune noise scale alpha (paper: 5-15); null: off")
  ),
  template: withDefault(Schema.Literals(["alpaca", "chat"]), "alpaca").annotate(
    describe("how instruction rows become prompts: the Alpaca prompt, or a user turn in the tokenizer's chat template")
  ),
  completionOnlyLoss: withDefault(Schema.Boolean, true).annotate(
    describe("loss on completion tokens only; false also trains on the prompt")
  ),
  maxLength: withDefault(PositiveInt, 512).annotate(describe("tokens per example; longer ones are truncated")),
  learningRate: fromPreset(PositiveNumber).annotate(describe("peak learning rate")),
  lrScheduler: fromPreset(LrScheduler).annotate(describe("learning-rate schedule after warmup")),
  warmupSteps: fromPreset(NonNegativeInt).annotate(describe("linear warmup, in optimizer steps")),
  weightDecay: fromPreset(NonNegativeNumber).annotate(describe("AdamW weight decay")),
  ...fineTuneLoopFields,
  ...runFields
})
export type SftParams = typeof SftParams.Type

const common = {
  params: SftParams,
  resources: trainingResources,
  executionOnly: trainingExecutionOnly,
  sourceFiles: workerSourceFiles(script),
  command: trainingCommand(script)
} as const

/**
 * The row formats sft trains on. A port of a union of dataset handles: each of these fits, a Preference
 * dataset does not (a compile error), and the worker checks the rows at run time.
 */
export type SftData =
  | Dataset<Instruction & Row>
  | Dataset<PromptCompletion & Row>
  | Dataset<Messages & Row>
  | Dataset<Text & Row>
const sftData = Port.anyDataset() as unknown as Port<SftData>

const inputs = {
  model: Port.describe(Port.model(), "the base model"),
  data: Port.describe(sftData, "instruction, prompt-completion, messages or text rows")
}

export const sft = defineStep({
  kind: "sft",
  version: 1,
  description: "supervised fine-tuning (full, or LoRA merged into the base) with TRL",
  inputs,
  output: Port.model(),
  ...common
})

export const sftLora = defineStep({
  kind: "sft-lora",
  version: 1,
  description: "supervised fine-tuning with LoRA, saving the PEFT adapter",
  inputs,
  output: Port.adapter(),
  ...common
})

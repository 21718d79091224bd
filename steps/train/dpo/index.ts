/**
 * `dpo` and `dpo-lora`: Direct Preference Optimization with TRL (worker.py) on a Preference dataset.
 * With LoRA the reference is the adapter-disabled model. `dpo` outputs a Model (adapters merged),
 * `dpo-lora` the PEFT Adapter.
 */
import * as path from "node:path"
import * as Schema from "effect/Schema"
import { Preference } from "../../../engine/rows.ts"
import { defineStep, Port } from "../../../engine/step.ts"
import {
  describe, LrScheduler, NonNegativeInt, NonNegativeNumber, PositiveInt, PositiveNumber, Probability, fineTuneLoopFields, runFields,
  trainDir, trainingCommand, trainingExecutionOnly, trainingResources, withDefault, workerSourceFiles
} from "../common.ts"

const script = path.join(trainDir, "dpo", "worker.py")

export const DpoLossType = Schema.Literals([
  "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
  "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"
])

/** Mirrors DpoConfig in worker.py. */
export const DpoParams = Schema.Struct({
  beta: withDefault(PositiveNumber, 0.1).annotate(describe("strength of the KL penalty toward the reference (TRL default 0.1)")),
  lossType: withDefault(Schema.Array(DpoLossType).check(Schema.isMinLength(1)), ["sigmoid"]).annotate(
    describe("TRL loss name(s); several are summed with equal weights")
  ),
  adapter: withDefault(Schema.Literals(["lora", "full"]), "lora").annotate(
    describe("lora: adapters on a frozen base (reference = adapters disabled); full: every weight (reference = a frozen copy)")
  ),
  loraR: withDefault(PositiveInt, 8).annotate(describe("LoRA rank")),
  loraAlpha: withDefault(PositiveNumber, 16).annotate(describe("LoRA scale (alpha / r)")),
  loraDropout: withDefault(Probability, 0).annotate(describe("dropout on the LoRA path")),
  loraTargetModules: withDefault(Schema.Array(Schema.NonEmptyString).check(Schema.isMinLength(1)), ["q_proj", "v_proj"])
    .annotate(describe("module names to adapt (e.g. q_proj, gate_proj), or [\"all-linear\"]")),
  maxLength: withDefault(PositiveInt, 512).annotate(describe("tokens per prompt + answer; longer pairs are truncated")),
  learningRate: withDefault(PositiveNumber, 5e-6).annotate(describe("peak learning rate")),
  lrScheduler: withDefault(LrScheduler, "linear").annotate(describe("learning-rate schedule after warmup")),
  warmupSteps: withDefault(NonNegativeInt, 0).annotate(describe("linear warmup, in optimizer steps")),
  weightDecay: withDefault(NonNegativeNumber, 0).annotate(describe("AdamW weight decay")),
  ...fineTuneLoopFields,
  ...runFields
})
export type DpoParams = typeof DpoParams.Type

const common = {
  params: DpoParams,
  inputs: {
    model: Port.describe(Port.model(), "the policy to tune, and its reference"),
    data: Port.describe(Port.dataset(Preference), "prompt, chosen and rejected answers")
  },
  resources: trainingResources,
  executionOnly: trainingExecutionOnly,
  sourceFiles: workerSourceFiles(script),
  command: trainingCommand(script)
} as const

export const dpo = defineStep({
  kind: "dpo",
  version: 1,
  description: "DPO preference tuning with TRL (LoRA merged into the base, or full)",
  output: Port.model(),
  ...common
})

export const dpoLora = defineStep({
  kind: "dpo-lora",
  version: 1,
  description: "DPO preference tuning with LoRA, saving the PEFT adapter",
  output: Port.adapter(),
  ...common
})

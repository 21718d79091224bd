/**
 * `dpo` and `dpo-lora`: Direct Preference Optimization with TRL (worker.py) on a Preference dataset.
 * With LoRA the reference is the adapter-disabled model. `dpo` outputs a Model (adapters merged),
 * `dpo-lora` the PEFT Adapter.
 */
import * as path from "node:path"
import { Schema } from "effect"
import { Preference } from "../../../engine/rows.ts"
import { defineStep, Port } from "../../../engine/step.ts"
import {
  LrScheduler, NonNegativeInt, NonNegativeNumber, PositiveInt, PositiveNumber, Probability, fineTuneLoopFields, runFields,
  trainDir, trainingCommand, trainingExecutionOnly, trainingResources, withDefault, workerSourceFiles
} from "../common.ts"

const script = path.join(trainDir, "dpo", "worker.py")

export const DpoLossType = Schema.Literals([
  "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
  "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"
])

/** Mirrors DpoConfig in worker.py. */
export const DpoParams = Schema.Struct({
  beta: withDefault(PositiveNumber, 0.1),
  loss_type: withDefault(Schema.Array(DpoLossType).check(Schema.isMinLength(1)), ["sigmoid"]),
  adapter: withDefault(Schema.Literals(["lora", "full"]), "lora"),
  lora_r: withDefault(PositiveInt, 8),
  lora_alpha: withDefault(PositiveNumber, 16),
  lora_dropout: withDefault(Probability, 0),
  lora_target_modules: withDefault(Schema.Array(Schema.NonEmptyString).check(Schema.isMinLength(1)), ["q_proj", "v_proj"]),
  max_length: withDefault(PositiveInt, 512),
  learning_rate: withDefault(PositiveNumber, 5e-6),
  lr_scheduler: withDefault(LrScheduler, "linear"),
  warmup_steps: withDefault(NonNegativeInt, 0),
  weight_decay: withDefault(NonNegativeNumber, 0),
  ...fineTuneLoopFields,
  ...runFields
})
export type DpoParams = typeof DpoParams.Type

const common = {
  params: DpoParams,
  inputs: { model: Port.model(), data: Port.dataset(Preference) },
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

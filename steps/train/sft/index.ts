/**
 * `sft` and `sft-lora`: supervised fine-tuning with TRL (worker.py), full or LoRA, with NEFTune and
 * completion-only loss. `sft` outputs a Model (LoRA merged into the base), `sft-lora` the PEFT Adapter.
 *
 * Platypus (arXiv 2308.07317) at full scale: preset "platypus" on a Llama-2 13B base, max_length 4096,
 * global batch 16 (micro_batch_size x gradient_accumulation_steps x GPUs), num_epochs 1.
 */
import * as path from "node:path"
import { Schema } from "effect"
import type { Dataset } from "../../../engine/artifact.ts"
import type { Instruction, Messages, PromptCompletion, Row, Text } from "../../../engine/rows.ts"
import { defineStep, Port } from "../../../engine/step.ts"
import {
  fromPreset, LrScheduler, NonNegativeInt, NonNegativeNumber, PositiveInt, PositiveNumber, Probability,
  fineTuneLoopFields, runFields, trainDir, trainingCommand, trainingExecutionOnly, trainingResources, withDefault, workerSourceFiles
} from "../common.ts"

const script = path.join(trainDir, "sft", "worker.py")

/** Mirrors SftConfig in worker.py (null = from the preset, else the worker's DEFAULTS). */
export const SftParams = Schema.Struct({
  preset: withDefault(Schema.Literals(["none", "platypus"]), "none"),
  adapter: fromPreset(Schema.Literals(["lora", "full"])),
  lora_r: fromPreset(PositiveInt),
  lora_alpha: fromPreset(PositiveNumber),
  lora_dropout: fromPreset(Probability),
  lora_target_modules: fromPreset(Schema.Array(Schema.NonEmptyString).check(Schema.isMinLength(1))),
  use_rslora: withDefault(Schema.Boolean, false),
  /** NEFTune noise scale (paper: 5-15); null: off */
  neftune_noise_alpha: withDefault(Schema.NullOr(PositiveNumber), null),
  template: withDefault(Schema.Literals(["alpaca", "chat"]), "alpaca"),
  completion_only_loss: withDefault(Schema.Boolean, true),
  max_length: withDefault(PositiveInt, 512),
  learning_rate: fromPreset(PositiveNumber),
  lr_scheduler: fromPreset(LrScheduler),
  warmup_steps: fromPreset(NonNegativeInt),
  weight_decay: fromPreset(NonNegativeNumber),
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

const inputs = { model: Port.model(), data: sftData }

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

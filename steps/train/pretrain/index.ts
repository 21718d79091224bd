/**
 * `pretrain`: trains a causal LM on packed Text documents (worker.py), from scratch (a tokenizer plus a
 * Llama- or phi-style architecture) or continued from a Model. Output: a Hugging Face model directory.
 *
 * Scaling to phi-1.5 (arXiv 2309.05463) on GPUs: architecture "phi", hidden_size 2048, num_layers 24,
 * num_heads 32, intermediate_size 8192, partial_rotary_factor 0.5, seq_len 2048, preset "phi-1.5",
 * and a global batch of 2048 sequences (micro_batch_size x gradient_accumulation_steps x GPUs).
 */
import * as path from "node:path"
import { Schema } from "effect"
import { Text } from "../../../engine/rows.ts"
import { defineStep, Port } from "../../../engine/step.ts"
import {
  fromPreset, LrScheduler, MaxSteps, NonNegativeInt, NonNegativeNumber, PositiveInt, PositiveNumber, Probability,
  runFields, trainDir, trainingCommand, trainingExecutionOnly, trainingResources, withDefault, workerSourceFiles
} from "../common.ts"

const script = path.join(trainDir, "pretrain", "worker.py")

/** Mirrors PretrainConfig in worker.py (same names, defaults and types; null = from the preset). */
export const PretrainParams = Schema.Struct({
  architecture: withDefault(Schema.Literals(["llama", "phi"]), "llama"),
  hidden_size: withDefault(PositiveInt, 64),
  num_layers: withDefault(PositiveInt, 2),
  num_heads: withDefault(PositiveInt, 4),
  intermediate_size: withDefault(PositiveInt, 256),
  partial_rotary_factor: withDefault(PositiveNumber.check(Schema.isLessThanOrEqualTo(1)), 0.5),
  rope_theta: withDefault(PositiveNumber, 10000),
  tie_word_embeddings: withDefault(Schema.Boolean, false),
  seq_len: withDefault(PositiveInt, 128),
  preset: withDefault(Schema.Literals(["none", "phi-1.5"]), "none"),
  learning_rate: fromPreset(PositiveNumber),
  lr_scheduler: fromPreset(LrScheduler),
  warmup_steps: fromPreset(NonNegativeInt),
  weight_decay: fromPreset(NonNegativeNumber),
  adam_beta1: fromPreset(Probability),
  adam_beta2: fromPreset(Probability),
  adam_epsilon: fromPreset(PositiveNumber),
  max_grad_norm: withDefault(PositiveNumber, 1),
  micro_batch_size: withDefault(PositiveInt, 8),
  gradient_accumulation_steps: withDefault(PositiveInt, 1),
  max_steps: withDefault(MaxSteps, 100),
  num_epochs: withDefault(PositiveNumber, 1),
  gradient_checkpointing: withDefault(Schema.Boolean, false),
  ...runFields
})
export type PretrainParams = typeof PretrainParams.Type

export const pretrain = defineStep({
  kind: "pretrain",
  version: 1,
  description: "pretrain a causal LM on packed text, from scratch (llama / phi) or continued",
  params: PretrainParams,
  inputs: {
    data: Port.dataset(Text),
    /** from scratch: the vocabulary */
    tokenizer: Port.optional(Port.tokenizer()),
    /** continued pretraining: the starting weights and tokenizer */
    model: Port.optional(Port.model())
  },
  output: Port.model(),
  resources: trainingResources,
  executionOnly: trainingExecutionOnly,
  sourceFiles: workerSourceFiles(script),
  command: trainingCommand(script)
})

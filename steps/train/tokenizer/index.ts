/** `tokenizer`: trains a byte-level BPE tokenizer on a Text dataset (worker.py), saved in Hugging Face format. */
import * as path from "node:path"
import { Schema } from "effect"
import { Text } from "../../../engine/rows.ts"
import { defineStep, Port } from "../../../engine/step.ts"
import { PositiveInt, trainDir, trainingCommand, withDefault, workerSourceFiles } from "../common.ts"

const script = path.join(trainDir, "tokenizer", "worker.py")

/** Mirrors TokenizerConfig in worker.py. */
export const TokenizerParams = Schema.Struct({
  vocab_size: withDefault(PositiveInt.check(Schema.isGreaterThanOrEqualTo(260)), 1024),
  min_frequency: withDefault(PositiveInt, 2),
  eos_token: withDefault(Schema.NonEmptyString, "<|endoftext|>"),
  pad_token: withDefault(Schema.NonEmptyString, "<|pad|>"),
  model_max_length: withDefault(PositiveInt, 2048)
})

export const tokenizer = defineStep({
  kind: "tokenizer",
  version: 1,
  description: "train a byte-level BPE tokenizer on a Text dataset",
  params: TokenizerParams,
  inputs: { data: Port.dataset(Text) },
  output: Port.tokenizer(),
  resources: { cpus: 1 },
  sourceFiles: workerSourceFiles(script),
  command: trainingCommand(script)
})

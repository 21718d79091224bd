/** `tokenizer`: trains a byte-level BPE tokenizer on a Text dataset (worker.py), saved in Hugging Face format. */
import * as path from "node:path"
import * as Schema from "effect/Schema"
import { Text } from "../../../engine/rows.ts"
import { defineStep, Port } from "../../../engine/step.ts"
import { describe, PositiveInt, trainDir, trainingCommand, withDefault, workerSourceFiles } from "../common.ts"

const script = path.join(trainDir, "tokenizer", "worker.py")

/** Mirrors TokenizerConfig in worker.py. BPE training is deterministic: no seed. */
export const TokenizerParams = Schema.Struct({
  vocabSize: withDefault(PositiveInt.check(Schema.isGreaterThanOrEqualTo(260)), 1024).annotate(
    describe("size of the vocabulary, special tokens and the 256 byte symbols included")
  ),
  minFrequency: withDefault(PositiveInt, 2).annotate(describe("a merge must occur at least this many times in the corpus")),
  eosToken: withDefault(Schema.NonEmptyString, "<|endoftext|>").annotate(
    describe("end-of-text token, also bos/unk; separates documents when pretraining")
  ),
  padToken: withDefault(Schema.NonEmptyString, "<|pad|>").annotate(describe("padding token, kept apart from eos")),
  modelMaxLength: withDefault(PositiveInt, 2048).annotate(describe("longest sequence models using this tokenizer expect"))
})

export const tokenizer = defineStep({
  kind: "tokenizer",
  version: 1,
  description: "train a byte-level BPE tokenizer on a Text dataset",
  params: TokenizerParams,
  inputs: { data: Port.describe(Port.dataset(Text), "the corpus the merges are learned from") },
  output: Port.tokenizer(),
  resources: { cpus: 1 },
  sourceFiles: workerSourceFiles(script),
  command: trainingCommand(script)
})

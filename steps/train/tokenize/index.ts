/**
 * `tokenize`: a Text corpus encoded with a tokenizer into memory-mapped token shards (worker.py,
 * anneal_worker/tokenized.py; nanoGPT's uint16/uint32 layout), the `tokens` input of `pretrain`.
 *
 * Its own cached output, so that every pretrain of one corpus with one tokenizer (a sweep over learning
 * rates, a longer run, a different seqLen) reads the same tokens instead of encoding the corpus again,
 * and a corpus larger than memory is encoded once, streaming. `pretrain` given `data` instead tokenizes
 * the same way into its resume dir (kept until the step succeeds, so a resumed run does not encode again).
 */
import * as path from "node:path"
import * as Schema from "effect/Schema"
import { Text } from "../../../engine/rows.ts"
import { defineStep, Port } from "../../../engine/step.ts"
import { describe, PositiveInt, trainDir, trainingCommand, withDefault, workerSourceFiles } from "../common.ts"

const script = path.join(trainDir, "tokenize", "worker.py")

/** Mirrors TokenizeConfig in worker.py. Deterministic: no seed. */
export const TokenizeParams = Schema.Struct({
  shardTokens: withDefault(PositiveInt, 134_217_728).annotate(
    describe("tokens per shard file (2^27: 256 MiB of uint16)")
  )
})

export const tokenize = defineStep({
  kind: "tokenize",
  version: 1,
  description: "encode a Text corpus into memory-mapped token shards for pretrain",
  params: TokenizeParams,
  inputs: {
    data: Port.describe(Port.dataset(Text), "the documents; each is followed by the end-of-text token"),
    tokenizer: Port.describe(Port.optional(Port.tokenizer()), "the vocabulary"),
    model: Port.describe(Port.optional(Port.model()), "instead of tokenizer: a model directory's tokenizer")
  },
  output: Port.files(),
  checkParams: (_params, inputs) =>
    (inputs.tokenizer > 0) === (inputs.model > 0)
      ? { param: "tokenizer", message: "give one of the inputs tokenizer or model" }
      : undefined,
  resources: { cpus: 1 },
  sourceFiles: workerSourceFiles(script),
  command: trainingCommand(script)
})

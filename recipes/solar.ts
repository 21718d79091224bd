/**
 * SOLAR 10.7B (arXiv 2312.15166) at toy scale: depth up-scaling (DUS), then continued pretraining to
 * heal the seam, instruction tuning and DPO alignment.
 *
 *   textbook-corpus -> tokenizer -> pretrain (llama, n = 4 layers)             the base model
 *     -> upscale (drop m = 1: layers [0, 3) of one copy then [1, 4) of another, s = 2(n - m) = 6)
 *     -> pretrain (continued, on the same corpus: the seam at layer 3 recovers quickly)
 *     -> sft (textbook instructions) -> dpo (textbook preferences) -> eval (textbook quiz)
 *   and the base itself -> eval, so eval-compare shows base vs up-scaled side by side.
 *
 *   npx anneal run recipes/solar.ts --allow-cpu
 *   npx anneal show compare --recipe recipes/solar.ts
 *
 * Scaling up to the paper (on GPUs): base = source.model("path/to/mistral-7b") (32 layers, Mistral 7B
 * weights in a Llama-2 architecture) and `drop: 8` -> 48 layers, 10.7B params; continued pretraining on
 * a general corpus; instruction tuning on open instruction data plus math-focused instructions; DPO on
 * preference data. The upscale itself is the native `upscale` step (no Python, streams tensor by
 * tensor); `mergekit: fs.readFileSync("solar.yml", "utf8")` would take SOLAR's mergekit passthrough
 * config instead of `drop`.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { defineStep, dpo, evalCompare, evaluate, Port, Preference, pretrain, recipe, Schema, sft, tokenizer, upscale } from "anneal"
import type { Dataset } from "anneal"
import { fields, textbookCorpus, textbookInstructions, textbookQuiz, topics } from "./textbooks.ts"

/**
 * Preference pairs about the textbook topics: the chosen answer names the field that studies a topic,
 * the rejected one another field (SOLAR used real preference data; this only gives DPO a signal to fit).
 */
export const textbookPreferences = defineStep({
  kind: "textbook-preferences",
  version: 1,
  description: "preference pairs (right vs wrong field) about the textbook topics",
  params: Schema.Struct({}),
  inputs: {},
  output: Port.dataset(Preference),
  run: async (ctx) => {
    const rows: Array<Preference> = topics.flatMap((t, i) => {
      const wrong = fields.filter((f) => f !== t.field)
      return [0, 1].map((k) => ({
        prompt: `Which field studies ${t.name}?`,
        chosen: ` ${t.field}.`,
        rejected: ` ${wrong[(i + k) % wrong.length]}.`
      }))
    })
    await fs.writeFile(path.join(ctx.output, "data.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
    await fs.writeFile(path.join(ctx.output, "dataset.json"), JSON.stringify({ format: "preference", rows: rows.length }) + "\n")
    ctx.metric("rows", rows.length)
  }
})

export default recipe("solar", () => {
  const corpus = textbookCorpus({}, { variants: 4 }, { id: "corpus" })
  const vocab = tokenizer({ data: corpus }, { vocabSize: 1024 }, { id: "tokenizer" })
  const base = pretrain({ data: corpus, tokenizer: vocab }, {
    architecture: "llama", // SOLAR: Mistral 7B weights in a Llama-2 architecture
    hiddenSize: 64, // 4096
    numLayers: 4, // n = 32
    numHeads: 4, // 32
    intermediateSize: 256, // 14336
    seqLen: 128,
    learningRate: 1e-3,
    maxSteps: 150
  }, { id: "base" })

  // DUS: n = 4, m = 1 -> 6 layers (SOLAR: n = 32, m = 8 -> 48)
  const upscaled = upscale({ models: [base] }, { drop: 1 }, { id: "upscale" })

  const healed = pretrain({ data: corpus, model: upscaled }, {
    seqLen: 128,
    learningRate: 5e-4,
    maxSteps: 60 // SOLAR: continued pretraining on its full corpus
  }, { id: "continued-pretrain" })

  const instructions = textbookInstructions({}, { variants: 4 }, { id: "instructions" })
  const tuned = sft({ model: healed, data: instructions }, {
    adapter: "full",
    template: "alpaca",
    learningRate: 5e-4,
    numEpochs: 1,
    microBatchSize: 8,
    maxLength: 128
  }, { id: "sft" })

  const preferences: Dataset<Preference> = textbookPreferences({}, {}, { id: "preferences" })
  const aligned = dpo({ model: tuned, data: preferences }, {
    beta: 0.1,
    adapter: "full", // a toy model: tune every weight, the reference is a frozen copy
    learningRate: 5e-4, // SOLAR: 5e-6 at 10.7B; a toy model on 50 pairs needs a larger step
    maxLength: 64,
    microBatchSize: 8,
    numEpochs: 3
  }, { id: "dpo" })

  const quiz = textbookQuiz({}, {}, { id: "quiz" })
  const evalOf = (model: typeof base, id: string) =>
    evaluate({ model, benchmarks: [quiz] }, { localTaskNames: ["textbook_quiz"] }, { id })
  evalCompare({ reports: [evalOf(base, "eval-base"), evalOf(aligned, "eval-solar")] }, { names: ["base (4 layers)", "DUS + CPT + SFT + DPO (6 layers)"] }, { id: "compare" })
})

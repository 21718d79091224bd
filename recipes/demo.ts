/**
 * The demo: from raw instructions to an evaluated, merged model, at toy scale, in about two minutes on
 * two CPU cores. Data: recipes/data/demo/ (made by recipes/data/generate-demo.ts); recipes/curation.ts
 * is the curation part alone (TypeScript steps only, seconds).
 *
 *   instructions -> clean -> dedup (exact) -> dedup (minhash) -> decontaminate (13-gram vs benchmark)
 *     -> as text -> tokenizer (byte-level BPE)
 *     -> questions only -> pretrain (a tiny Llama: the language of the questions, none of the answers) = base
 *     -> as Question/Answer -> sft-lora with NEFTune -> lora-merge = "lora"
 *                           -> sft (full, a second fine-tune) = "full"
 *     -> TIES merge of lora and full over the base = "ties"
 *     -> eval of base, lora, full and ties on the quiz (a local lm-eval task) -> eval-compare
 *
 *   npm run demo                          # = npx anneal run recipes/demo.ts, after `anneal setup`
 *   npx anneal show compare --recipe recipes/demo.ts
 *
 * The quiz (data/demo/quiz.jsonl) asks what the fine-tuning rows teach, in their words: a unit's factor
 * for amounts the rows never use, and which definition belongs to a term. The base is pretrained on the
 * instructions alone, so the compare table shows what fine-tuning added. Every step is seeded: a rerun
 * on a fresh store gives the same numbers. The training steps ask for a GPU and take the CPU when there
 * is none (`allowCpu` below, said once when the run starts), so the demo needs no --allow-cpu.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { dedup, decontaminate, defineStep, evalCompare, evaluate, format, Instruction, loraMerge, merge, Port } from "anneal"
import { pretrain, PromptCompletion, readRows, recipe, Schema, sft, sftLora, source, Text, tokenizer } from "anneal"
import { clean } from "anneal"
import type { AnyDataset, Dataset, Model } from "anneal"

/** Instruction rows -> Text rows of the instructions alone: what the base model is pretrained on. */
const questions = defineStep({
  kind: "demo-questions",
  version: 1,
  description: "the instructions of Instruction rows as Text rows (no answers)",
  params: Schema.Struct({}),
  inputs: { data: Port.dataset(Instruction) },
  output: Port.dataset(Text),
  run: async (ctx) => {
    const out: Array<string> = []
    for await (const row of readRows(ctx.inputs.data, Instruction)) out.push(JSON.stringify({ text: row.instruction }))
    fs.writeFileSync(path.join(ctx.output, "data.jsonl"), out.join("\n") + "\n")
    ctx.metric("rows", out.length)
  }
})

/** Instruction rows -> prompt-completion rows in the eval's own template ("Question: ...\nAnswer:"). */
const questionAnswer = defineStep({
  kind: "demo-question-answer",
  version: 1,
  description: "Instruction rows as prompt-completion rows in lm-eval's local-task template",
  params: Schema.Struct({}),
  inputs: { data: Port.dataset(Instruction) },
  output: Port.dataset(PromptCompletion),
  run: async (ctx) => {
    const out: Array<string> = []
    for await (const row of readRows(ctx.inputs.data, Instruction)) {
      const question = row.input ? `${row.instruction}\n${row.input}` : row.instruction
      out.push(JSON.stringify({ prompt: `Question: ${question}\nAnswer:`, completion: ` ${row.output}` }))
    }
    fs.writeFileSync(path.join(ctx.output, "data.jsonl"), out.join("\n") + "\n")
    ctx.metric("rows", out.length)
  }
})

/** The sizes of the run; the test suite runs the same pipeline with smaller ones (test/recipes/demo.test.ts). */
export interface DemoScale {
  /** optimizer steps of pretraining */
  readonly pretrainSteps: number
  /** passes of each fine-tune over the curated rows */
  readonly sftEpochs: number
}

export const demoScale: DemoScale = { pretrainSteps: 60, sftEpochs: 2 }

/** Python steps ask for a GPU; without one they run on CPU (the engine says so once). */
const cpuOk = { allowCpu: true } as const

/** The whole pipeline; `dataDir` holds instructions.jsonl, benchmark.jsonl and quiz.jsonl. */
export const demoPipeline = (dataDir: string, scale: DemoScale = demoScale) => {
  const raw = source.dataset(path.join(dataDir, "instructions.jsonl"), Instruction)
  const benchmark = source.dataset(path.join(dataDir, "benchmark.jsonl"))
  const quiz: AnyDataset = source.dataset(path.join(dataDir, "quiz.jsonl"))

  // curation (as in recipes/curation.ts)
  const cleaned = clean({ data: raw }, { minChars: 10 })
  const exact = dedup({ data: cleaned }, { method: "exact", keep: "longest" }, { id: "dedup-exact" })
  const near = dedup({ data: exact }, { method: "minhash", minhash: { threshold: 0.8 } }, { id: "dedup-minhash" })
  const curated: Dataset<Instruction> = decontaminate(
    { data: near, benchmarks: [benchmark] },
    { n: 13, benchmark: { question: "question", choices: "choices", answer: "answer" } }
  )

  // a base model: a vocabulary from all the curated text, pretraining on the questions alone
  const text = format({ data: curated }, { to: "text" }, { id: "as-text" })
  const vocab = tokenizer({ data: text }, { vocabSize: 512 }, { id: "tokenizer", ...cpuOk })
  const base = pretrain({ data: questions({ data: curated }, {}, { id: "questions" }), tokenizer: vocab }, {
    architecture: "llama", hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 128, seqLen: 128,
    microBatchSize: 8, maxSteps: scale.pretrainSteps, learningRate: 3e-3, seed: 1
  }, { id: "pretrain", ...cpuOk })

  // two fine-tunes on the answers, in the quiz's template: LoRA with NEFTune (folded in), and full
  const qa = questionAnswer({ data: curated }, {}, { id: "question-answer" })
  const tuning = { numEpochs: scale.sftEpochs, microBatchSize: 16, maxLength: 96, lrScheduler: "cosine", seed: 1 } as const
  const adapter = sftLora({ model: base, data: qa }, {
    ...tuning, loraR: 16, loraAlpha: 32, loraTargetModules: ["all-linear"], learningRate: 1e-2,
    // NEFTune's noise is alpha / sqrt(L * d) per element: at d = 64 the paper's 5 would bury this model's
    // embeddings (norm ~0.2) under noise of norm ~0.5, and the adapter learns nothing; 1 keeps it below
    neftuneNoiseAlpha: 1
  }, { id: "sft-lora", ...cpuOk })
  const lora = loraMerge({ model: base, adapter }, {}, { id: "lora-merge" })
  const full = sft({ model: base, data: qa }, { ...tuning, adapter: "full", learningRate: 3e-3 }, { id: "sft-full", ...cpuOk })
  const ties = merge({ models: [lora, full], base }, {
    method: "ties",
    models: [{ parameters: { weight: 0.5, density: 0.7 } }, { parameters: { weight: 0.5, density: 0.7 } }]
  }, { id: "merge-ties" })

  // the quiz for each model, side by side
  const models: ReadonlyArray<readonly [string, Model]> = [["base", base], ["lora", lora], ["full", full], ["ties", ties]]
  const reports = models.map(([name, model]) =>
    evaluate({ model, benchmarks: [quiz] }, { localTaskNames: ["demo_quiz"], seed: 1 }, { id: `eval-${name}`, ...cpuOk })
  )
  return evalCompare({ reports }, { names: models.map(([name]) => name) }, { id: "compare" })
}

export default recipe("demo", () => {
  demoPipeline("data/demo")
})

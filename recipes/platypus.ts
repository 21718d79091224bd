/**
 * Platypus (arXiv 2308.07317): a small, carefully curated instruction set, then LoRA on the MLP and
 * merging. This file holds the data stage (the Open-Platypus curation), on a small generated Instruction
 * set with planted duplicates, paraphrases and benchmark leaks (recipes/data/generate-platypus.ts):
 *
 *   clean -> dedup exact -> dedup semantic -> decontaminate (13-gram) -> decontaminate (semantic)
 *
 * Run: npx anneal run recipes/platypus.ts. Each step writes report.json (what it removed and why)
 * beside its data.jsonl; `anneal show <step>` prints where. The training stage builds on `curate`.
 */
import { clean, decontaminate, decontaminateSemantic, dedup, dedupSemantic, evalCompare, evaluate, Instruction } from "anneal"
import { loraMerge, merge, pretrain, recipe, sft, sftLora, source, tokenizer } from "anneal"
import type { AnyDataset, Dataset, Model, Report } from "anneal"
import { textbookCorpus, textbookInstructions } from "./textbooks.ts"

/** Which benchmark fields hold the question, the choices and the answer (an index into the choices). */
export const benchmarkFields = { question: "question", choices: "choices", answer: "answer" }

/** The Open-Platypus curation: raw Instruction rows and benchmark samples in, curated rows out. */
export const curate = (raw: Dataset<Instruction>, benchmarks: ReadonlyArray<AnyDataset>): Dataset<Instruction> => {
  // drop rows missing an instruction or output (Platypus), repair unicode and whitespace
  const cleaned = clean({ data: raw }, { minChars: 10 }, { id: "clean" })
  // key = instruction + input; keep the longest output (longer answers carry the explanations)
  const exact = dedup({ data: cleaned }, { method: "exact", keep: "longest" }, { id: "dedup-exact" })
  // all-MiniLM-L6-v2 cosine >= 0.8 to a kept row, keeping the more detailed answer (the article;
  // the authors' notebook used { threshold: 0.7, keep: "first" })
  const semantic = dedupSemantic({ data: exact }, { threshold: 0.8, keep: "longest" }, { id: "dedup-semantic" })
  // the GPT-3 / lm-eval 13-gram convention, then Platypus' cosine >= 0.8 against benchmark questions
  const ngram = decontaminate({ data: semantic, benchmarks }, { n: 13, benchmark: benchmarkFields }, { id: "decontaminate-ngram" })
  return decontaminateSemantic(
    { data: ngram, benchmarks },
    { threshold: 0.8, benchmark: benchmarkFields },
    { id: "decontaminate-semantic" }
  )
}

// ---------------------------------------------------------------------------------------------
// Model stage (training steps: steps/train; lora-merge and merge: steps/model)
//
//   tiny Llama base (pretrained on recipes/textbooks.ts' corpus)
//     -> sft-lora, preset platypus (LoRA on gate/up/down, r 16, alpha 16, dropout 0.05, Alpaca template,
//        loss on answers only) on the curated rows -> lora-merge into the base ("platypus")
//     -> a second fine-tune of the same base on broad instructions ("instruct")
//     -> TIES merge of the two over the base -> eval each model on the benchmark -> eval-compare
//
// At full scale: the base is Llama-2 13B (`source.model("path/to/Llama-2-13b-hf")` instead of
// tinyLlamaBase), lr 4e-4 (13B) / 3e-4 (70B), global batch 16, 1 epoch, 100 warmup steps, cutoff 4096
// (maxLength), and the second model a broad fine-tune of the same base (Instruct, Beluga) or a
// specialist one (Camel); the eval preset "leaderboard-v1" gives the Open LLM Leaderboard v1 suite.

/** A tiny Llama (the architecture with gate/up/down projections) pretrained on the textbook corpus. */
export const tinyLlamaBase = (): Model => {
  const corpus = textbookCorpus({}, { variants: 2 }, { id: "base-corpus" })
  const vocab = tokenizer({ data: corpus }, { vocabSize: 1024 }, { id: "base-tokenizer" })
  return pretrain({ data: corpus, tokenizer: vocab }, {
    architecture: "llama", hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 128, seqLen: 128,
    maxSteps: 100, learningRate: 1e-3
  }, { id: "base" })
}

/** LoRA on the MLP, fold, merge with a second fine-tune, evaluate each on the benchmark. */
export const platypusModels = (base: Model, curated: Dataset<Instruction>, bench: AnyDataset): Report => {
  const adapter = sftLora({ model: base, data: curated }, {
    preset: "platypus",
    warmupSteps: 5, // paper: 100
    numEpochs: 3, // paper: 1 (on 25k rows)
    microBatchSize: 4, // paper: global batch 16
    maxLength: 512 // paper: 4096
  }, { id: "sft-platypus" })
  const platypus = loraMerge({ model: base, adapter }, {}, { id: "lora-merge" })
  const broad = textbookInstructions({}, { variants: 2 }, { id: "instruct-data" })
  const instruct = sft({ model: base, data: broad }, { learningRate: 1e-3, numEpochs: 2 }, { id: "sft-instruct" })
  const merged = merge({ models: [platypus, instruct], base }, {
    method: "ties",
    models: [{ parameters: { weight: 0.5, density: 0.5 } }, { parameters: { weight: 0.5, density: 0.5 } }]
  }, { id: "merge-ties" })
  const models: ReadonlyArray<readonly [string, Model]> = [["base", base], ["platypus", platypus], ["instruct", instruct], ["ties", merged]]
  const reports = models.map(([name, model]) =>
    evaluate({ model, benchmarks: [bench] }, { localTaskNames: ["platypus_bench"] }, { id: `eval-${name}` })
  )
  return evalCompare({ reports }, { names: models.map(([name]) => name) }, { id: "compare" })
}

export default recipe("platypus", () => {
  const raw = source.dataset("data/platypus-train.jsonl", Instruction)
  const bench = source.dataset("data/platypus-bench.jsonl")
  const curated = curate(raw, [bench])
  platypusModels(tinyLlamaBase(), curated, bench)
})

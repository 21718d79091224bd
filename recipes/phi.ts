/**
 * phi-1.5 (arXiv 2309.05463) at toy scale: pretraining from scratch on "textbook-quality" synthetic data.
 *
 *   textbook-corpus -> tokenizer (byte-level BPE) -> pretrain (phi architecture, phi-1.5 preset) -> eval
 *                   '-> textbook-quiz ------------------------------------------------------------'
 *
 *   npx anneal run recipes/phi.ts --allow-cpu      # a few minutes on CPU at the default tiny scale
 *   npx anneal show eval --recipe recipes/phi.ts
 *
 * Scaling up to the paper (on GPUs, remove --allow-cpu): phi-1.5 is 1.3B params, 24 layers, hidden 2048,
 * MLP 8192, 32 heads x 64 dims, rotary on 32 of them (partialRotaryFactor 0.5), context 2048, a
 * 51,200-token vocabulary, trained for 150B tokens with a global batch of 2048 sequences, Adam betas
 * (0.9, 0.98), eps 1e-7, weight decay 0.1, constant lr 2e-4 and no warmup (the preset). The values the
 * paper used are in the comments beside each param below; the corpus would come from a real generator
 * (20k seed topics and an LLM writing textbook sections), not these templates.
 */
import { evaluate, pretrain, recipe, tokenizer } from "anneal"
import type { AnyDataset, Dataset, Model, Report, Text, Tokenizer } from "anneal"
import { textbookCorpus, textbookQuiz } from "./textbooks.ts"

/** The toy-scale phi model and its training run; exported so other recipes (neftune.ts) start from it. */
export const phiBase = (): { corpus: Dataset<Text>; vocab: Tokenizer; model: Model } => {
  const corpus = textbookCorpus({}, { variants: 4 }, { id: "corpus" })
  const vocab = tokenizer({ data: corpus }, {
    vocabSize: 1024 // phi-1.5: 51,200 (the codegen-mono tokenizer)
  }, { id: "tokenizer" })
  const model = pretrain({ data: corpus, tokenizer: vocab }, {
    architecture: "phi", // attention and MLP in parallel, partial rotary embeddings
    preset: "phi-1.5", // Adam (0.9, 0.98), eps 1e-7, weight decay 0.1, constant lr, no warmup
    learningRate: 1e-3, // phi-1.5: 2e-4 (the preset's); a 100k-param model wants a larger step
    hiddenSize: 64, // 2048
    numLayers: 2, // 24
    numHeads: 4, // 32 (head dim 64)
    intermediateSize: 256, // 8192
    partialRotaryFactor: 0.5, // 0.5 (32 of 64 head dims)
    seqLen: 128, // 2048
    microBatchSize: 8, // global batch 2048 sequences = micro batch x accumulation x GPUs
    gradientAccumulationSteps: 1,
    maxSteps: 200, // 150B tokens / (2048 x 2048) ~ 36k steps
    saveSteps: 100 // checkpoints for mid-step resume
  }, { id: "pretrain" })
  return { corpus, vocab, model }
}

/** A multiple-choice quiz on the corpus' topics ({question, choices, answer}). */
export const phiQuiz = (): AnyDataset => textbookQuiz({}, {}, { id: "quiz" })

export const phiEval = (model: Model, quiz: AnyDataset, id: string): Report => {
  // phi-1.5 was evaluated zero-shot on WinoGrande, ARC, BoolQ, SIQA, PIQA, HellaSwag, OpenBookQA (add
  // `tasks: [...]` when their data is in the local datasets cache); here, a quiz on the corpus' topics
  return evaluate({ model, benchmarks: [quiz] }, { localTaskNames: ["textbook_quiz"] }, { id })
}

export default recipe("phi", () => {
  const { model } = phiBase()
  phiEval(model, phiQuiz(), "eval")
})

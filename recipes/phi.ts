/**
 * phi-1.5 (arXiv 2309.05463) at toy scale: pretraining from scratch on "textbook-quality" synthetic data
 * written by a teacher model.
 *
 *   textbook-corpus -> tokenizer -> pretrain (the teacher) -> generate (textbook mode) -> dedup (MinHash)
 *     -> decontaminate (against the quiz) -> pretrain (the student) -> eval (teacher and student)
 *
 *   npx anneal run recipes/phi.ts --allow-cpu      # a few minutes on CPU at the default tiny scale
 *   npx anneal show eval-student --recipe recipes/phi.ts
 *
 * The teacher here is a tiny model pretrained in the recipe on recipes/textbooks.ts' template corpus (the
 * seed-topic generator); at full scale it is a strong instruction model (phi-1.5's data came from
 * GPT-3.5), reached through `backend: "openai"` (any OpenAI-compatible server: vLLM, TGI, llama.cpp's
 * server, a hosted API with `apiKeyEnv`) or `backend: "vllm"` on local GPUs. See docs/generate.md.
 * recipes/closed-loop.ts is the same chain with the teacher quantized to GGUF and served by llama.cpp's
 * server, which its generate step starts itself (`backend: "llama-server"`).
 *
 * Scaling up to the paper (on GPUs, remove --allow-cpu): phi-1.5 is 1.3B params, 24 layers, hidden 2048,
 * MLP 8192, 32 heads x 64 dims, rotary on 32 of them (partialRotaryFactor 0.5), context 2048, a
 * 51,200-token vocabulary, trained for 150B tokens with a global batch of 2048 sequences, Adam betas
 * (0.9, 0.98), eps 1e-7, weight decay 0.1, constant lr 2e-4 and no warmup (the preset). Its synthetic
 * data: ~20B tokens of textbooks and exercises seeded from ~20k hand-picked topics (plus phi-1's 7B
 * tokens), about 80% of the 150B tokens trained. The values the paper used are in the comments beside
 * each param below.
 */
import { decontaminate, dedup, evaluate, generateTextbook, pretrain, recipe, tokenizer } from "anneal"
import type { AnyDataset, Dataset, Model, Report, Text, Tokenizer } from "anneal"
import { textbookCorpus, textbookQuiz, topics } from "./textbooks.ts"

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

/** The quiz's fields, for decontamination (the eval step reads the same rows). */
const quizFields = { question: "question", choices: "choices", answer: "answer" }

/**
 * The synthetic textbook corpus: the teacher writes a section per (topic, audience, style) seed, then
 * near-duplicates and anything overlapping the quiz are removed before the student sees it.
 */
export const phiSynthetic = (teacher: Model, quiz: AnyDataset): Dataset<Text> => {
  const written = generateTextbook({ model: teacher }, {
    topics: topics.map((t) => t.name), // phi-1.5: ~20k hand-picked topics
    audiences: ["young children", "high school students", "college students"],
    styles: ["a textbook chapter", "a story", "a worked example", "review questions"],
    perTopic: 4, // phi-1.5: enough (topic, audience, style) draws for ~20B tokens
    // the toy teacher is a base model trained on textbooks.ts' chapters: it continues a chapter opening
    // (a chat teacher takes the default instruction, docs/generate.md)
    template: "Chapter: {topic}, for {audience}, as {style}.\n\n{topic} is",
    keepPrompt: true, // the rows start with the chapter opening the teacher continued
    maxNewTokens: 96, // a textbook section runs to ~1-2k tokens
    temperature: 0.9,
    seed: 0
  }, { id: "generate" })
  const unique = dedup({ data: written }, {
    method: "minhash", // datatrove's defaults: word 5-grams, 14 bands x 8 rows
    keep: "first"
  }, { id: "dedup" })
  return decontaminate({ data: unique, benchmarks: [quiz] }, {
    n: 5, // lm-evaluation-harness uses 13-grams, datatrove 12; the quiz's questions are a few words long
    minTokens: 4,
    benchmark: quizFields
  }, { id: "decontaminate" })
}

export default recipe("phi", () => {
  const quiz = phiQuiz()
  const { vocab, model: teacher } = phiBase()
  const synthetic = phiSynthetic(teacher, quiz)
  const student = pretrain({ data: synthetic, tokenizer: vocab }, {
    architecture: "phi",
    preset: "phi-1.5",
    learningRate: 1e-3, // phi-1.5: 2e-4
    hiddenSize: 64, // 2048
    numLayers: 2, // 24
    numHeads: 4, // 32
    intermediateSize: 256, // 8192
    partialRotaryFactor: 0.5,
    seqLen: 128, // 2048
    microBatchSize: 8,
    maxSteps: 200, // ~36k steps for 150B tokens
    saveSteps: 100
  }, { id: "pretrain-student" })
  phiEval(teacher, quiz, "eval")
  phiEval(student, quiz, "eval-student")
})

/**
 * The closed loop in one recipe: a teacher trained here is quantized to the GGUF file llama.cpp and Ollama
 * users run, served by llama.cpp's server, and asked through its OpenAI-compatible API to write the
 * textbook corpus a student is pretrained on.
 *
 *   textbook-corpus -> tokenizer -> pretrain (the teacher) -> quantize (GGUF q8_0) -> generate (textbook
 *     mode, backend llama-server: the step serves the GGUF on loopback) -> dedup (MinHash)
 *     -> decontaminate (against the quiz) -> pretrain (the student) -> eval (teacher and student)
 *
 *   npx anneal setup --with llama-cpp                  # once per machine (npm test does it)
 *   npx anneal run recipes/closed-loop.ts --allow-cpu
 *   npx anneal show eval-student --recipe recipes/closed-loop.ts
 *
 * `generate` starts llama-server itself, on 127.0.0.1 and the CPU slots the scheduler granted, waits for
 * it to load, and stops it when the step ends (also when it fails or is killed). Its request cache is keyed
 * by the GGUF's sha256 (and the llama.cpp commit), not by a URL: a rerun never asks the server again,
 * and a changed seed topic asks only for that topic's sections. With a server already running elsewhere
 * (vLLM, TGI, a hosted API), use `backend: "openai"` with `baseUrl` and `apiModel` instead.
 *
 * `closedLoop(scale)` is exported so a test runs the same wiring at a smaller size
 * (test/recipes/closed-loop.test.ts). The paper-scale values (phi-1.5) are in recipes/phi.ts.
 */
import { decontaminate, dedup, evaluate, generateTextbook, pretrain, quantize, recipe, tokenizer } from "anneal"
import type { Dataset, Model, Text } from "anneal"
import { textbookCorpus, textbookQuiz, topics as builtinTopics } from "./textbooks.ts"

export interface ClosedLoopScale {
  /** seed topics the teacher writes about (default: the names of textbooks.ts' topics) */
  readonly topics?: ReadonlyArray<string>
  /** (audience, style) pairs per topic */
  readonly perTopic?: number
  /** tokens per generated section */
  readonly maxNewTokens?: number
  readonly teacherSteps?: number
  readonly studentSteps?: number
  /** tokens per packed student training sequence (the teacher's context stays 128: prompt + section fit in it) */
  readonly studentSeqLen?: number
  /** documents per topic and template in the teacher's corpus */
  readonly corpusVariants?: number
  /** the GGUF type the teacher is served in (q8_0: near-lossless; q4_K_M needs widths divisible by 256) */
  readonly ggufType?: "f16" | "q8_0" | "q4_K_M"
}

const model = { architecture: "llama", hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 256, seqLen: 128 } as const

export const closedLoop = (scale: ClosedLoopScale = {}): { teacher: Model; gguf: Model; synthetic: Dataset<Text>; student: Model } => {
  const corpus = textbookCorpus({}, { variants: scale.corpusVariants ?? 4 }, { id: "corpus" })
  const quiz = textbookQuiz({}, {}, { id: "quiz" })
  const vocab = tokenizer({ data: corpus }, { vocabSize: 1024 }, { id: "tokenizer" })
  const teacher = pretrain({ data: corpus, tokenizer: vocab }, {
    ...model, learningRate: 1e-3, microBatchSize: 8, maxSteps: scale.teacherSteps ?? 200, saveSteps: 100
  }, { id: "pretrain-teacher" })

  // the file llama.cpp and Ollama users run: llama.cpp's own converter, then llama-quantize
  const gguf = quantize({ model: teacher }, { format: "gguf", type: scale.ggufType ?? "q8_0" }, { id: "quantize" })

  const written = generateTextbook({ model: gguf }, {
    backend: "llama-server", // the step serves the GGUF with llama.cpp's server on loopback
    api: "completions", // the tiny teacher is a base model: it continues a chapter opening (no chat template)
    concurrency: 2, // llama-server's parallel slots
    serverThreads: 2, // CPU slots claimed; the server's --threads
    topics: scale.topics ?? builtinTopics.map((t) => t.name),
    audiences: ["young children", "high school students", "college students"],
    styles: ["a textbook chapter", "a story", "a worked example"],
    perTopic: scale.perTopic ?? 3,
    template: "Chapter: {topic}, for {audience}, as {style}.\n\n{topic} is",
    keepPrompt: true,
    maxNewTokens: scale.maxNewTokens ?? 96,
    temperature: 0.9,
    seed: 0
  }, { id: "generate" })
  const unique = dedup({ data: written }, { method: "minhash", keep: "first" }, { id: "dedup" })
  const synthetic = decontaminate({ data: unique, benchmarks: [quiz] }, {
    n: 5,
    minTokens: 4,
    benchmark: { question: "question", choices: "choices", answer: "answer" }
  }, { id: "decontaminate" })

  const student = pretrain({ data: synthetic, tokenizer: vocab }, {
    ...model, seqLen: scale.studentSeqLen ?? model.seqLen, learningRate: 1e-3, microBatchSize: 8, maxSteps: scale.studentSteps ?? 200,
    saveSteps: 100
  }, { id: "pretrain-student" })

  evaluate({ model: teacher, benchmarks: [quiz] }, { localTaskNames: ["textbook_quiz"] }, { id: "eval-teacher" })
  evaluate({ model: student, benchmarks: [quiz] }, { localTaskNames: ["textbook_quiz"] }, { id: "eval-student" })
  return { teacher, gguf, synthetic, student }
}

export default recipe("closed-loop", () => {
  closedLoop()
})

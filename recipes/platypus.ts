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
import type { AnyDataset, Dataset } from "../engine/artifact.ts"
import { recipe, source } from "../engine/graph.ts"
import { Instruction } from "../engine/rows.ts"
import { clean, decontaminate, decontaminateSemantic, dedup, dedupSemantic } from "../steps/data/index.ts"

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

export default recipe("platypus", () => {
  const raw = source.dataset("data/platypus-train.jsonl", Instruction)
  const bench = source.dataset("data/platypus-bench.jsonl")
  curate(raw, [bench])
})

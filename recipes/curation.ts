/**
 * Curation only: the Platypus-style curation of the demo's instruction set, in TypeScript steps only (no
 * Python, no GPU), in a few seconds. Data: recipes/data/demo/ (made by recipes/data/generate-demo.ts).
 * recipes/demo.ts goes on from the same curation to training, merging and evaluation.
 *
 *   instructions -> clean -> dedup (exact) -> dedup (minhash) -> decontaminate (13-gram vs benchmark)
 *                                                                   |-> format: prompt-completion (Alpaca)
 *                                                                   |-> format: text
 *                                                                   '-> stats (a custom step, below)
 *
 *   npx anneal run recipes/curation.ts        # then change a param below and run again: only what it feeds reruns
 *   npx anneal plan recipes/curation.ts       # what would run, and why
 *   npx anneal show stats --recipe recipes/curation.ts
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { clean, decontaminate, dedup, defineStep, format, Instruction, Port, readRows, recipe, Schema, source } from "anneal"

/** A custom step, declared the way built-in steps are: rows in, a small report out. */
const stats = defineStep({
  kind: "curation-stats",
  version: 1,
  description: "row count and answer lengths of an instruction dataset",
  params: Schema.Struct({ longAnswerChars: Schema.Int }),
  inputs: { data: Port.dataset(Instruction) },
  output: Port.report(),
  run: async (ctx) => {
    let rows = 0
    let chars = 0
    let long = 0
    for await (const row of readRows(ctx.inputs.data, Instruction)) {
      rows++
      chars += row.output.length
      if (row.output.length >= ctx.params.longAnswerChars) long++
    }
    const report = { rows, meanAnswerChars: rows === 0 ? 0 : Math.round(chars / rows), longAnswers: long }
    fs.writeFileSync(path.join(ctx.output, "report.json"), JSON.stringify(report, null, 2) + "\n")
    ctx.metric("rows", rows)
    ctx.metric("mean_answer_chars", report.meanAnswerChars)
  }
})

export default recipe("curation", () => {
  const raw = source.dataset("data/demo/instructions.jsonl", Instruction)
  const benchmark = source.dataset("data/demo/benchmark.jsonl")

  const cleaned = clean({ data: raw }, { minChars: 10 })
  const exact = dedup({ data: cleaned }, { method: "exact", keep: "longest" }, { id: "dedup-exact" })
  const near = dedup({ data: exact }, { method: "minhash", minhash: { threshold: 0.8 } }, { id: "dedup-minhash" })
  const curated = decontaminate(
    { data: near, benchmarks: [benchmark] },
    { n: 13, benchmark: { question: "question", choices: "choices", answer: "answer" } }
  )

  format({ data: curated }, { to: "prompt-completion", template: "alpaca" }, { id: "to-prompt-completion" })
  format({ data: curated }, { to: "text" }, { id: "to-text" })
  stats({ data: curated }, { longAnswerChars: 60 }, { id: "stats" })
})

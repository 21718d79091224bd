/** The README's recipe example, checked by tsc so the README cannot drift from the API. */
import { recipe, source, Instruction, clean, dedup, decontaminate, sftLora, loraMerge, merge, evaluate } from "anneal"

export default recipe("platypus", () => {
  const raw = source.dataset("data/train.jsonl", Instruction)     // hashed by content
  const bench = source.dataset("data/arc-sample.jsonl")
  const base = source.model("models/llama-13b")                    // a Hugging Face model directory
  const beluga = source.model("models/beluga-13b")

  const curated = decontaminate({ data: dedup({ data: clean({ data: raw }) }), benchmarks: [bench] })
  const adapter = sftLora({ model: base, data: curated }, { preset: "platypus" })   // LoRA on gate/up/down
  const platypus = loraMerge({ model: base, adapter })
  const merged = merge({ models: [platypus, beluga], base }, { method: "ties", parameters: { weight: 0.5, density: 0.5 } })
  evaluate({ model: merged, benchmarks: [bench] })
})

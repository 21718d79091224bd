/**
 * A recipe: a typed DAG of steps. Run it with `npx anneal run recipe.ts`; run it again and nothing
 * reruns. Change a param below and only that step and what it feeds rerun (`npx anneal plan recipe.ts`
 * says why). `npx tsc` type-checks it: wiring a dataset of the wrong row type does not compile.
 *
 *   data/instructions.jsonl -> clean -> dedup -> word-counts (a custom step, below)
 *                                            '-> format (to plain text)
 */
import { clean, dedup, defineStep, format, Instruction, Port, readRows, recipe, Schema, source, writeReport } from "anneal"

/** A custom step, declared the way built-in steps are: instruction rows in, a small report out. */
const wordCounts = defineStep({
  kind: "word-counts",
  version: 1, // part of every key of this kind: bump it when a change could change the output
  description: "row count and the most common first words of the instructions",
  params: Schema.Struct({ top: Schema.Int }),
  inputs: { data: Port.dataset(Instruction) },
  output: Port.report(),
  run: async (ctx) => {
    const counts = new Map<string, number>()
    let rows = 0
    for await (const row of readRows(ctx.inputs.data, Instruction)) {
      rows++
      const first = row.instruction.trim().split(/\s+/)[0]?.toLowerCase() ?? ""
      counts.set(first, (counts.get(first) ?? 0) + 1)
    }
    const firstWords = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, ctx.params.top)
    writeReport(ctx.output, { rows, firstWords: Object.fromEntries(firstWords) })
    ctx.metric("rows", rows)
  }
})

export default recipe("my-recipe", () => {
  const raw = source.dataset("data/instructions.jsonl", Instruction) // hashed by content

  const cleaned = clean({ data: raw }) // NFKC, whitespace, drops empty rows
  const unique = dedup({ data: cleaned }, { method: "exact" })

  wordCounts({ data: unique }, { top: 5 })
  format({ data: unique }, { to: "text" })
})

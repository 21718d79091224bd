/** A recipe with one slow custom step (progress + loss, stops when interrupted) and a step after it. */
import { annealIndex } from "./recipe-dir.ts"

export const slowRecipe = (options: { steps: number; ms: number }) => `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, Schema } from "${annealIndex}"

const train = defineStep({
  kind: "toy-train",
  version: 1,
  params: Schema.Struct({ steps: Schema.Int, ms: Schema.Int }),
  inputs: {},
  output: Port.files(),
  run: async (ctx) => {
    for (let i = 1; i <= ctx.params.steps; i++) {
      if (ctx.signal.aborted) throw new Error("interrupted")
      await new Promise((r) => setTimeout(r, ctx.params.ms))
      ctx.progress({ current: i, total: ctx.params.steps, unit: "steps", loss: 4 / Math.sqrt(i), tokensPerSecond: 2048 })
    }
    ctx.metric("loss", 4 / Math.sqrt(ctx.params.steps))
    fs.writeFileSync(path.join(ctx.output, "model.txt"), "trained")
  }
})

const evaluate = defineStep({
  kind: "toy-eval",
  version: 1,
  params: Schema.Struct({}),
  inputs: { model: Port.files() },
  output: Port.files(),
  run: (ctx) => {
    ctx.metric("accuracy", 0.75)
    fs.writeFileSync(path.join(ctx.output, "score.txt"), "0.75")
  }
})

export default recipe("toy", () => {
  const model = train({}, { steps: ${options.steps}, ms: ${options.ms} }, { id: "train" })
  evaluate({ model }, {}, { id: "eval" })
})
`

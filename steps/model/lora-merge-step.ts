/**
 * `lora-merge`: folds a PEFT LoRA adapter into its base model (W + scale * B A), giving a full Model,
 * as Platypus did before merging fine-tunes.
 *
 * ```ts
 * const folded = loraMerge({ model: base, adapter: sftAdapter })
 * ```
 */
import * as Schema from "effect/Schema"
import { defineStep, Port } from "../../engine/step.ts"

/** The folding (safetensors reading and writing) loads when the step runs, not with the step kinds. */
const foldLora = async (...args: Parameters<typeof import("./lora.ts").foldLora>) => (await import("./lora.ts")).foldLora(...args)

export const LoraMergeParams = Schema.Struct({})

export const loraMerge = defineStep({
  kind: "lora-merge",
  version: 1,
  description: "fold a LoRA adapter into its base model (W + alpha/r * B A)",
  params: LoraMergeParams,
  inputs: {
    model: Port.describe(Port.model(), "the base model the adapter was trained on"),
    adapter: Port.describe(Port.adapter(), "a PEFT LoRA adapter")
  },
  output: Port.model(),
  resources: { cpus: 1 },
  run: async (ctx) => {
    const r = await foldLora(ctx.inputs.model, ctx.inputs.adapter, ctx.output, {
      signal: ctx.signal,
      progress: (done, total) => ctx.progress({ current: done, total, unit: "tensors" })
    })
    ctx.metric("folded_modules", r.folded)
    ctx.metric("replaced_modules", r.replaced)
  }
})

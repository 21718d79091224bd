/**
 * `upscale`: depth up-scaling. With `drop: m` (SOLAR's DUS) the output stacks layers [0, n-m) of the
 * model and then its layers [m, n), s = 2(n-m) layers; with `slices` any list of layer ranges from the
 * `models` input (mergekit's passthrough). config.json gets the new layer count and per-layer lists.
 *
 * ```ts
 * const solar = upscale({ models: [mistral] }, { drop: 8 })            // 32 layers -> 48
 * const frank = upscale({ models: [a, b] }, { slices: [{ model: 0, layer_range: [0, 20] }, { model: 1, layer_range: [10, 32] }] })
 * ```
 */
import { Schema } from "effect"
import { defineStep, Port } from "../../engine/step.ts"
import { configLayerCount } from "./layers.ts"
import { mergekitToPlan, parseMergekitConfig } from "./mergekit-config.ts"
import { readConfig } from "./model-dir.ts"
import { SettingsSchema } from "./params.ts"
import { PlanError } from "./plan.ts"
import type { MergePlan } from "./plan.ts"
import { parseDtypeName } from "./safetensors/dtype.ts"
import { runPlan } from "./merge-step.ts"
import { DtypeName, MergekitYaml, SliceSourceSchema, withDefault } from "./schema.ts"

export const UpscaleParams = Schema.Struct({
  /** DUS: m, the layers dropped from the end of the first copy and the start of the second */
  drop: Schema.optional(Schema.Int.check(Schema.isGreaterThan(0))),
  /** or: the output's layers as slices of the inputs, in order (mergekit passthrough) */
  slices: Schema.optional(Schema.Array(SliceSourceSchema).check(Schema.isMinLength(1))),
  /** passthrough's `scale` parameter (e.g. [{filter: "o_proj", value: 0.5}]) */
  parameters: Schema.optional(SettingsSchema),
  dtype: Schema.optional(DtypeName),
  /** a mergekit passthrough YAML config instead */
  mergekit: Schema.optional(MergekitYaml),
  max_shard_bytes: withDefault(Schema.Int.check(Schema.isGreaterThan(0)), 5 * 1024 ** 3)
})
export type UpscaleParams = typeof UpscaleParams.Type

/** DUS as slices: [0, n-m) then [m, n) of the same model. */
export const dusSlices = (n: number, m: number): ReadonlyArray<readonly [number, number]> => {
  if (m >= n) throw new PlanError(`drop ${m} must be smaller than the model's ${n} layers`)
  return [[0, n - m], [m, n]]
}

export const upscale = defineStep({
  kind: "upscale",
  version: 1,
  description: "depth up-scaling (SOLAR's DUS) and layer-slice stacking (mergekit passthrough)",
  params: UpscaleParams,
  inputs: { models: Port.many(Port.model()) },
  output: Port.model(),
  resources: { cpus: 1 },
  run: async (ctx) => {
    const p = ctx.params
    const dirs = ctx.inputs.models
    if (dirs.length === 0) throw new PlanError("upscale needs at least one model")
    const given = [p.drop !== undefined, p.slices !== undefined, p.mergekit !== undefined].filter(Boolean).length
    if (given !== 1) throw new PlanError("give exactly one of drop, slices or mergekit")
    let plan: MergePlan
    const outDtype = p.dtype !== undefined ? parseDtypeName(p.dtype) : undefined
    if (p.mergekit !== undefined) {
      const cfg = parseMergekitConfig(p.mergekit)
      if (cfg.method !== "passthrough") throw new PlanError(`upscale takes a passthrough config, got merge_method ${cfg.method}: use the merge step`)
      plan = mergekitToPlan(cfg, { models: dirs.length, hasBase: false }, ctx.seed)
    } else {
      let slices: ReadonlyArray<{ model: number; layers: readonly [number, number]; parameters?: any }>
      if (p.drop !== undefined) {
        if (dirs.length !== 1) throw new PlanError(`drop (DUS) takes one model, got ${dirs.length}`)
        const config = await readConfig(dirs[0]!)
        const n = configLayerCount(config)?.value
        if (n === undefined) throw new PlanError(`${dirs[0]}/config.json: no num_hidden_layers`)
        slices = dusSlices(n, p.drop).map((layers) => ({ model: 0, layers }))
      } else {
        slices = p.slices!.map((s, i) => {
          if (s.model === "base" || s.model >= dirs.length) throw new PlanError(`slices[${i}].model: ${s.model} is not an index into models (${dirs.length})`)
          return { model: s.model, layers: s.layer_range, parameters: s.parameters }
        })
      }
      plan = { method: "passthrough", slices: slices.map((s) => ({ sources: [s] })), parameters: p.parameters, outDtype, seed: ctx.seed, donor: 0 }
    }
    await runPlan(ctx, { ...plan, outDtype: plan.outDtype ?? outDtype, maxShardBytes: p.max_shard_bytes }, dirs)
  }
})

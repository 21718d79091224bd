/**
 * `upscale`: depth up-scaling. With `drop: m` (SOLAR's DUS) the output stacks layers [0, n-m) of the
 * model and then its layers [m, n), s = 2(n-m) layers; with `slices` any list of layer ranges from the
 * `models` input (mergekit's passthrough). config.json gets the new layer count and per-layer lists.
 *
 * ```ts
 * const solar = upscale({ models: [mistral] }, { drop: 8 })            // 32 layers -> 48
 * const frank = upscale({ models: [a, b] }, { slices: [{ model: 0, layerRange: [0, 20] }, { model: 1, layerRange: [10, 32] }] })
 * ```
 */
import * as Schema from "effect/Schema"
import { defineStep, Port } from "../../engine/step.ts"
import { configLayerCount } from "./layers.ts"
import { MergekitConfigError, mergekitToPlan, parseMergekitConfig } from "./mergekit-config.ts"
import { SettingsSchema } from "./params.ts"
import { checkSlice, PlanError } from "./plan-checks.ts"
import type { MergePlan, SliceSource } from "./plan-checks.ts"
import { parseDtypeName } from "./safetensors/dtype.ts"
import { inputLabels, runPlan } from "./merge-step.ts"
import { DtypeName, MergekitYaml, SliceSourceSchema, withDefault } from "./schema.ts"

/** The model directory's config.json is read when the step runs; its module loads only then. */
const readConfig = async (dir: string) => (await import("./model-dir.ts")).readConfig(dir)

export const UpscaleParams = Schema.Struct({
  drop: Schema.optional(Schema.Int.check(Schema.isGreaterThan(0))).annotate({
    description: "DUS: m, the layers dropped from the end of the first copy and the start of the second"
  }),
  slices: Schema.optional(Schema.Array(SliceSourceSchema).check(Schema.isMinLength(1))).annotate({
    description: "or: the output's layers as slices of the inputs, in order (mergekit passthrough)"
  }),
  parameters: Schema.optional(SettingsSchema).annotate({
    description: "passthrough's `scale` parameter (e.g. [{filter: \"o_proj\", value: 0.5}])"
  }),
  dtype: Schema.optional(DtypeName).annotate({
    description: "output dtype of float tensors (computation is float32); default: the inputs' dtype"
  }),
  mergekit: Schema.optional(MergekitYaml).annotate({ description: "a mergekit passthrough YAML config instead" }),
  maxShardBytes: withDefault(Schema.Int.check(Schema.isGreaterThan(0)), 5 * 1024 ** 3).annotate({
    description: "split the output into shards of at most this many bytes"
  })
})
export type UpscaleParams = typeof UpscaleParams.Type

/** DUS as slices: [0, n-m) then [m, n) of the same model. */
export const dusSlices = (n: number, m: number): ReadonlyArray<readonly [number, number]> => {
  if (m >= n) throw new PlanError(`drop ${m} must be smaller than the model's ${n} layers`)
  return [[0, n - m], [m, n]]
}

/**
 * The plan for `models` inputs. Without the model's layer count (at load) a DUS plan is only checked,
 * not made; every check that needs no model happens here, so `plan` reports it.
 */
export const upscalePlanOf = (p: UpscaleParams, models: number, seed: number, layers: number | undefined): MergePlan => {
  if (models === 0) throw new PlanError("upscale needs at least one model", "models")
  const given = (["drop", "slices", "mergekit"] as const).filter((k) => p[k] !== undefined)
  if (given.length !== 1) throw new PlanError(`give exactly one of drop, slices or mergekit${given.length > 1 ? `, not ${given.join(" and ")}` : ""}`, given[1] ?? "drop")
  const outDtype = p.dtype !== undefined ? parseDtypeName(p.dtype) : undefined
  let plan: MergePlan
  if (p.mergekit !== undefined) {
    const cfg = parseMergekitConfig(p.mergekit)
    if (cfg.method !== "passthrough") throw new PlanError(`upscale takes a passthrough config, got merge_method ${cfg.method}: use the merge step`, "mergekit")
    plan = mergekitToPlan(cfg, { models, hasBase: false }, seed)
    plan.slices?.forEach((s, i) => checkSlice(plan, s, models, `slices[${i}]`))
  } else {
    let slices: ReadonlyArray<SliceSource>
    if (p.drop !== undefined) {
      if (models !== 1) throw new PlanError(`drop (DUS) takes one model, got ${models}`, "drop")
      slices = layers === undefined ? [] : dusSlices(layers, p.drop).map((l) => ({ model: 0, layers: l }))
    } else {
      slices = p.slices!.map((s, i) => {
        if (s.model === "base" || s.model >= models) throw new PlanError(`${s.model} is not an index into models (${models})`, `slices.${i}.model`)
        return { model: s.model, layers: s.layerRange, parameters: s.parameters }
      })
    }
    plan = { method: "passthrough", slices: slices.map((s) => ({ sources: [s] })), parameters: p.parameters, outDtype, seed, donor: 0 }
  }
  return { ...plan, outDtype: plan.outDtype ?? outDtype, maxShardBytes: p.maxShardBytes }
}

export const upscale = defineStep({
  kind: "upscale",
  version: 1,
  description: "depth up-scaling (SOLAR's DUS) and layer-slice stacking (mergekit passthrough)",
  params: UpscaleParams,
  inputs: { models: Port.describe(Port.many(Port.model()), "the models whose layers are stacked (slices' model index)") },
  output: Port.model(),
  resources: { cpus: 1 },
  checkParams: (p, counts) => {
    try {
      upscalePlanOf(p, counts.models, 0, undefined)
      return undefined
    } catch (e) {
      if (e instanceof PlanError) return { param: e.param ?? "models", message: e.message }
      if (e instanceof MergekitConfigError) return { param: "mergekit", message: e.message }
      throw e
    }
  },
  run: async (ctx) => {
    const p = ctx.params
    const dirs = ctx.inputs.models
    let layers: number | undefined
    if (p.drop !== undefined && dirs.length === 1) {
      const config = await readConfig(dirs[0]!)
      layers = configLayerCount(config)?.value
      if (layers === undefined) throw new PlanError(`${dirs[0]}/config.json: no num_hidden_layers`)
    }
    await runPlan(ctx, upscalePlanOf(p, dirs.length, 0 /* passthrough draws nothing: no seed param */, layers), dirs, inputLabels(dirs.length, false))
  }
})

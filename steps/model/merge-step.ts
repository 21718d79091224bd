/**
 * `merge`: linear, slerp, task_arithmetic, ties, dare_ties, dare_linear (and passthrough slices) over
 * the `models` input, with an optional `base`, computed natively in TS with mergekit's math.
 *
 * ```ts
 * const merged = merge({ models: [math, chat], base }, {
 *   method: "ties",
 *   models: [{ parameters: { weight: 0.6, density: 0.5 } }, { parameters: { weight: 0.4, density: 0.5 } }],
 *   dtype: "bfloat16"
 * })
 * // or bring a mergekit config: merge({ models: [math, chat], base }, { mergekit: fs.readFileSync("ties.yml", "utf8") })
 * ```
 */
import * as Schema from "effect/Schema"
import { defineStep, Port } from "../../engine/step.ts"
import type { StepContext } from "../../engine/step.ts"
import { methodNames } from "./methods.ts"
import { mergekitToPlan, parseMergekitConfig } from "./mergekit-config.ts"
import { SettingsSchema } from "./params.ts"
import { checkSlice, missingParameter, normalizeSlices, PlanError } from "./plan-checks.ts"
import type { MissingParameter } from "./plan-checks.ts"
import type { ParamProblem } from "../../engine/step.ts"
import { MergekitConfigError } from "./mergekit-config.ts"
import type { MergePlan, OutputSlice } from "./plan-checks.ts"
import { parseDtypeName } from "./safetensors/dtype.ts"
import { DtypeName, MergekitYaml, ModelIndex, SliceSchema, withDefault } from "./schema.ts"
import { seedParam } from "../../engine/params.ts"

export const MergeParams = Schema.Struct({
  method: Schema.optional(Schema.Literals([...methodNames, "passthrough"])).annotate({
    description: "the merge method; required unless `mergekit` is given"
  }),
  models: Schema.optional(Schema.Array(Schema.Struct({ parameters: Schema.optional(SettingsSchema) }))).annotate({
    description: "per-model parameters, one entry per handle in the `models` input (mergekit's models[i].parameters)"
  }),
  baseParameters: Schema.optional(SettingsSchema).annotate({
    description: "the base model's own parameters (linear weights the base like any input)"
  }),
  slices: Schema.optional(Schema.Array(SliceSchema)).annotate({
    description: "layer slices instead of whole models (mergekit's slices)"
  }),
  parameters: Schema.optional(SettingsSchema).annotate({
    description: "global parameters: scalars, gradients [a, b, ...] over layers, or [{filter, value}, ...]"
  }),
  dtype: Schema.optional(DtypeName).annotate({
    description: "output dtype of float tensors (computation is float32); default: the inputs' dtype"
  }),
  tokenizerSource: Schema.optional(ModelIndex).annotate({
    description: "whose config, tokenizer and generation files the output gets: \"base\" (default when there is one) or a models index"
  }),
  seed: seedParam().annotate({ description: "seed of DARE's drop masks (part of the key)" }),
  mergekit: Schema.optional(MergekitYaml).annotate({
    description: "a mergekit YAML config instead of the fields above (model names map to inputs: see docs/model-surgery.md)"
  }),
  maxShardBytes: withDefault(Schema.Int.check(Schema.isGreaterThan(0)), 5 * 1024 ** 3).annotate({
    description: "split the output into shards of at most this many bytes"
  })
})
export type MergeParams = typeof MergeParams.Type

const inputs = {
  models: Port.describe(Port.many(Port.model()), "the models to merge, in order (models[i] in params)"),
  base: Port.describe(Port.optional(Port.model()), "the base model (task vectors are taken against it)")
}

/** Turns the step's params into a plan over [...models, base]. */
export const mergePlanOf = (p: MergeParams, modelCount: number, hasBase: boolean, seed: number): MergePlan => {
  const seedOf = p.seed ?? seed
  const baseIndex = hasBase ? modelCount : undefined
  if (p.mergekit !== undefined) {
    const extra = (["method", "models", "baseParameters", "slices", "parameters", "dtype", "tokenizerSource"] as const).filter((k) => p[k] !== undefined)
    if (extra.length > 0) throw new PlanError(`give either mergekit or ${extra.join(", ")}, not both`, "mergekit")
    return { ...mergekitToPlan(parseMergekitConfig(p.mergekit), { models: modelCount, hasBase }, seedOf), maxShardBytes: p.maxShardBytes }
  }
  if (p.method === undefined) throw new PlanError("required (or give a mergekit config)", "method")
  const index = (m: number | "base", where: string): number => {
    if (m === "base") {
      if (baseIndex === undefined) throw new PlanError(`${where}: "base" but the step has no base input`, where)
      return baseIndex
    }
    if (m >= modelCount) throw new PlanError(`${where}: model ${m} but the models input has ${modelCount}`, where)
    return m
  }
  let models: MergePlan["models"]
  let slices: Array<OutputSlice> | undefined
  if (p.slices !== undefined) {
    if (p.models !== undefined) throw new PlanError("give either slices or models parameters, not both", "slices")
    slices = p.slices.map((s, i) => ({
      sources: s.sources.map((x, j) => ({ model: index(x.model, `slices.${i}.sources.${j}.model`), layers: x.layerRange, parameters: x.parameters })),
      base: s.baseModel !== undefined ? index(s.baseModel, `slices.${i}.baseModel`) : undefined,
      parameters: s.parameters
    }))
  } else {
    if (p.models !== undefined && p.models.length !== modelCount) {
      throw new PlanError(`${p.models.length} entries but the models input has ${modelCount} handles`, "models")
    }
    models = Array.from({ length: modelCount }, (_, i) => ({ model: i, parameters: p.models?.[i]?.parameters }))
    if (baseIndex !== undefined && p.baseParameters !== undefined) models = [...models, { model: baseIndex, parameters: p.baseParameters }]
  }
  return {
    method: p.method,
    models,
    slices,
    base: baseIndex,
    parameters: p.parameters,
    outDtype: p.dtype !== undefined ? parseDtypeName(p.dtype) : undefined,
    donor: p.tokenizerSource !== undefined ? index(p.tokenizerSource, "tokenizerSource") : undefined,
    seed: seedOf,
    maxShardBytes: p.maxShardBytes
  }
}

/** How errors name the step's inputs, in the plan's order: models[0], models[1], ..., base. */
export const inputLabels = (models: number, hasBase: boolean): ReadonlyArray<string> => [
  ...Array.from({ length: models }, (_, i) => `models[${i}]`),
  ...(hasBase ? ["base"] : [])
]

/** Where a missing method parameter goes, as a param path of this step ("models.1.parameters.weight"). */
const missingParamPath = (p: MergeParams, m: MissingParameter): string => {
  if (p.mergekit !== undefined) return "mergekit"
  if (m.entry === undefined) return m.input === undefined ? `parameters.${m.parameter}` : `baseParameters.${m.parameter}`
  if ("models" in m.entry) return `models.${m.entry.models}.parameters.${m.parameter}`
  return `slices.${m.entry.slice}.sources.${m.entry.source}.parameters.${m.parameter}`
}

/**
 * The load-time check: the plan can be made for these inputs, each slice suits the method, and every
 * parameter the method requires is given (mergekit: the ones without a default).
 */
export const checkMergeParams = (p: MergeParams, counts: { readonly models: number; readonly base: number }): ParamProblem | undefined => {
  const hasBase = counts.base > 0
  try {
    const plan = mergePlanOf(p, counts.models, hasBase, 0)
    const inputs = counts.models + counts.base
    normalizeSlices(plan, Array.from({ length: inputs }, () => 1)).forEach((s, i) => checkSlice(plan, s, inputs, `slice ${i + 1}`))
    const m = missingParameter(plan)
    if (m === undefined) return undefined
    const need = m.input === undefined
      ? `${plan.method} requires "${m.parameter}"`
      : `${plan.method} requires a "${m.parameter}" for ${plan.method === "linear" ? "every input" : "every input but the base"}`
    if (p.mergekit !== undefined) {
      const entry = m.entry === undefined ? (m.input === undefined ? "parameters" : "base_model") : "models" in m.entry ? `models[${m.entry.models}]` : `slices[${m.entry.slice}].sources[${m.entry.source}]`
      return { param: "mergekit", message: `mergekit config: ${entry}: ${need}, and none is given` }
    }
    const whose = m.input === undefined ? "" : ` for ${inputLabels(counts.models, hasBase)[m.input]} (set it there or in parameters)`
    return { param: missingParamPath(p, m), message: `${need}, and none is given${whose}` }
  } catch (e) {
    if (e instanceof MergekitConfigError) return { param: "mergekit", message: e.message }
    if (e instanceof PlanError) return { param: p.mergekit !== undefined ? "mergekit" : e.param ?? "method", message: e.message }
    throw e
  }
}

/** The merge itself (tensor math, safetensors reading and writing) loads when a merge runs, not with the step kinds. */
const executePlan = async (...args: Parameters<typeof import("./plan.ts").executePlan>) => (await import("./plan.ts")).executePlan(...args)

/** Runs a plan for a step, reporting progress in bytes of input tensors. */
export const runPlan = async (ctx: StepContext<unknown, any>, plan: MergePlan, dirs: ReadonlyArray<string>, labels: ReadonlyArray<string>): Promise<void> => {
  const started = performance.now()
  let last = 0
  const r = await executePlan(plan, dirs, ctx.output, {
    signal: ctx.signal,
    labels,
    progress: (done, total) => {
      const now = performance.now()
      if (now - last < 250 && done < total) return
      last = now
      ctx.progress({ current: done, total, unit: "bytes", rate: done / Math.max(1e-3, (now - started) / 1000) })
    }
  })
  const seconds = (performance.now() - started) / 1000
  ctx.metric("tensors", r.tensors)
  ctx.metric("layers", r.layers)
  ctx.metric("input_gb_per_sec", r.inputBytes / 1e9 / Math.max(seconds, 1e-6))
}

export const merge = defineStep({
  kind: "merge",
  version: 1,
  description: "merge models (linear, slerp, task_arithmetic, ties, dare_ties, dare_linear) natively, with mergekit's math",
  params: MergeParams,
  inputs,
  output: Port.model(),
  resources: { cpus: 1 },
  checkParams: checkMergeParams,
  run: async (ctx) => {
    const dirs = [...ctx.inputs.models, ...(ctx.inputs.base !== undefined ? [ctx.inputs.base] : [])]
    const plan = mergePlanOf(ctx.params, ctx.inputs.models.length, ctx.inputs.base !== undefined, ctx.params.seed)
    await runPlan(ctx, plan, dirs, inputLabels(ctx.inputs.models.length, ctx.inputs.base !== undefined))
  }
})

/**
 * A merge plan's shape (slices of layers from which models, the method and its parameters) and the
 * checks that need no model: what a merge or upscale step's params are validated with when a recipe
 * loads. Executing a plan (./plan.ts, with the safetensors reader and writer) loads only when a merge
 * runs, so that every start of the CLI, which registers these step kinds, does not load it.
 */
import { methodInfo } from "./methods.ts"
import type { MethodName } from "./methods.ts"
import type { Settings } from "./params.ts"
import type { FloatDtype } from "./safetensors/dtype.ts"

export interface SliceSource {
  readonly model: number
  /** half-open [start, end) */
  readonly layers: readonly [number, number]
  readonly parameters?: Settings | undefined
}

export interface OutputSlice {
  readonly sources: ReadonlyArray<SliceSource>
  readonly base?: number | undefined
  readonly parameters?: Settings | undefined
}

export interface MergePlan {
  readonly method: MethodName | "passthrough"
  /** either slices (layer ranges), or models (every layer of each) */
  readonly slices?: ReadonlyArray<OutputSlice> | undefined
  readonly models?: ReadonlyArray<{ readonly model: number; readonly parameters?: Settings | undefined }> | undefined
  readonly base?: number | undefined
  readonly parameters?: Settings | undefined
  /** output dtype of float tensors; default: the inputs' (promoted) dtype */
  readonly outDtype?: FloatDtype | undefined
  /** which input's config.json, tokenizer and other files the output gets; default: base, else the first */
  readonly donor?: number | undefined
  /** DARE drop masks */
  readonly seed: number
  readonly maxShardBytes?: number | undefined
}

export class PlanError extends Error {
  readonly _tag = "PlanError"
  /** the step param at fault, when one is (a path such as "models.1.parameters.weight") */
  readonly param: string | undefined
  constructor(message: string, param?: string) {
    super(message)
    this.param = param
  }
}

/** Expands the models form into one slice, adding the base as mergekit does when it is not listed. */
export const normalizeSlices = (plan: MergePlan, layerCounts: ReadonlyArray<number>): ReadonlyArray<OutputSlice> => {
  if ((plan.slices === undefined) === (plan.models === undefined)) {
    throw new PlanError("give exactly one of slices or models")
  }
  if (plan.slices !== undefined) {
    if (plan.slices.length === 0) throw new PlanError("slices is empty")
    return plan.slices
  }
  const sources: Array<SliceSource> = plan.models!.map((m) => ({ model: m.model, layers: [0, layerCounts[m.model]!] as const, parameters: m.parameters }))
  if (plan.base !== undefined && !plan.models!.some((m) => m.model === plan.base)) {
    sources.push({ model: plan.base, layers: [0, layerCounts[plan.base]!] })
  }
  return [{ sources }]
}

/**
 * Checks a slice's sources against the method (indices, base, input counts) without reading any
 * model; returns the base's position among the sources for methods that take one.
 */
export const checkSlice = (plan: MergePlan, slice: OutputSlice, inputs: number, where: string): number | undefined => {
  const info = plan.method === "passthrough" ? undefined : methodInfo[plan.method]
  for (const s of slice.sources) {
    if (!Number.isInteger(s.model) || s.model < 0 || s.model >= inputs) {
      throw new PlanError(`${where}: model ${s.model} is not one of the ${inputs} inputs`)
    }
  }
  const base = slice.base ?? plan.base
  if (plan.method === "passthrough") {
    if (slice.sources.length !== 1) throw new PlanError(`${where}: passthrough takes exactly one source per slice, got ${slice.sources.length}`)
    return undefined
  }
  const ids = slice.sources.map((s) => s.model)
  if (new Set(ids).size !== ids.length) throw new PlanError(`${where}: a model is listed twice`)
  if (info!.base === "required") {
    if (base === undefined) throw new PlanError(`${where}: ${plan.method} needs a base model`)
    if (!ids.includes(base)) throw new PlanError(`${where}: the base model is not among the slice's sources`)
  }
  if (ids.length < info!.minInputs) {
    throw new PlanError(`${where}: ${plan.method} needs at least ${info!.minInputs} inputs`)
  }
  if (info!.maxInputs !== undefined && ids.length > info!.maxInputs) {
    throw new PlanError(`${where}: ${plan.method} takes at most ${info!.maxInputs} inputs (base included), got ${ids.length}`)
  }
  return info!.base === "required" ? ids.indexOf(base!) : undefined
}

/** A method parameter that the method requires and that no scope gives: `entry` says where it belongs. */
export interface MissingParameter {
  readonly parameter: string
  /** the plan input that lacks it, or undefined for a shared parameter (slerp's t) */
  readonly input: number | undefined
  /** index into plan.models, or slice and source indices into plan.slices (undefined: the base added to the models form) */
  readonly entry: { readonly models: number } | { readonly slice: number; readonly source: number } | undefined
}

/**
 * The first parameter the method requires (mergekit: one without a default) that no scope sets for
 * some input: linear's weight (every input), the task arithmetic family's weight (every input but the
 * base), slerp's t. A scope that sets it through filters counts as setting it; a filter list that
 * matches no tensor is still caught per tensor when the merge runs. Needs no model: checked at load.
 */
export const missingParameter = (plan: MergePlan): MissingParameter | undefined => {
  if (plan.method === "passthrough") return undefined
  const info = methodInfo[plan.method]
  const has = (p: string, scopes: ReadonlyArray<Settings | undefined>): boolean => scopes.some((x) => x?.[p] !== undefined)
  const check = (slice: OutputSlice, entryOf: (k: number) => MissingParameter["entry"]): MissingParameter | undefined => {
    const base = slice.base ?? plan.base
    if (plan.method === "slerp" && !has("t", [slice.parameters, plan.parameters])) return { parameter: "t", input: undefined, entry: undefined }
    for (const [k, s] of slice.sources.entries()) {
      if (s.model === base && plan.method !== "linear") continue
      if (info.perInput.includes("weight") && !has("weight", [s.parameters, slice.parameters, plan.parameters])) {
        return { parameter: "weight", input: s.model, entry: entryOf(k) }
      }
    }
    return undefined
  }
  if (plan.slices !== undefined) {
    for (const [i, slice] of plan.slices.entries()) {
      const m = check(slice, (k) => ({ slice: i, source: k }))
      if (m !== undefined) return m
    }
    return undefined
  }
  const models = plan.models ?? []
  const sources: Array<SliceSource> = models.map((m) => ({ model: m.model, layers: [0, 1] as const, parameters: m.parameters }))
  if (plan.base !== undefined && !models.some((m) => m.model === plan.base)) sources.push({ model: plan.base, layers: [0, 1] })
  return check({ sources }, (k) => (k < models.length ? { models: k } : undefined))
}

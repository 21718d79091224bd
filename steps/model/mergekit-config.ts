/**
 * mergekit YAML configs as step params. The config is read (yaml.ts), checked against the keys anneal
 * implements, and mapped onto a MergePlan. Model names in the YAML are labels: `base_model` is the
 * step's `base` input, and the other names, in order of first appearance, are the step's `models`
 * inputs (a name used twice is the same input). Anything anneal does not implement is an error that
 * names the key, never silently ignored.
 */
import { methodInfo, methodNames } from "./methods.ts"
import type { MethodName } from "./methods.ts"
import type { Setting, Settings } from "./params.ts"
import type { MergePlan, OutputSlice, SliceSource } from "./plan.ts"
import { parseDtypeName } from "./safetensors/dtype.ts"
import type { FloatDtype } from "./safetensors/dtype.ts"
import { parseYaml, YamlError } from "./yaml.ts"
import type { YamlValue } from "./yaml.ts"

export class MergekitConfigError extends Error {
  readonly _tag = "MergekitConfigError"
  constructor(detail: string) {
    super(`mergekit config: ${detail}`)
  }
}

export interface MergekitSource {
  readonly model: string
  readonly layers: readonly [number, number]
  readonly parameters?: Settings | undefined
}
export interface MergekitConfig {
  readonly method: MethodName | "passthrough"
  readonly baseModel?: string | undefined
  readonly models?: ReadonlyArray<{ readonly model: string; readonly parameters?: Settings | undefined }> | undefined
  readonly slices?: ReadonlyArray<{ readonly sources: ReadonlyArray<MergekitSource>; readonly base?: string | undefined; readonly parameters?: Settings | undefined }> | undefined
  readonly parameters?: Settings | undefined
  readonly outDtype?: FloatDtype | undefined
  readonly tokenizerSource?: string | undefined
}

const supportedMethods = [...methodNames, "passthrough"] as const

type Obj = { [key: string]: YamlValue }
const isObj = (v: YamlValue | undefined): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v)

const only = (o: Obj, where: string, allowed: ReadonlyArray<string>, hints: Readonly<Record<string, string>> = {}): void => {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      throw new MergekitConfigError(`${where}${k}: ${hints[k] ?? `not supported by anneal (supported: ${allowed.join(", ")})`}`)
    }
  }
}

const modelName = (v: YamlValue | undefined, where: string): string => {
  if (typeof v !== "string" || v === "") throw new MergekitConfigError(`${where}: expected a model name`)
  if (v.includes("+")) throw new MergekitConfigError(`${where}: "${v}" applies a LoRA with "+": fold it first with the lora-merge step`)
  return v
}

const isScalar = (v: YamlValue): v is number | boolean => typeof v === "number" || typeof v === "boolean"

const setting = (v: YamlValue, where: string): Setting => {
  if (isScalar(v)) return v
  if (typeof v === "string") {
    const n = Number(v) // mergekit's pydantic turns "1e-3" into a float
    if (v.trim() !== "" && Number.isFinite(n)) return n
    throw new MergekitConfigError(`${where}: expected a number, a boolean, a list of them, or a list of {filter, value}, got "${v}"`)
  }
  if (Array.isArray(v)) {
    if (v.every((e) => isScalar(e) || typeof e === "string")) return v.map((e, i) => setting(e, `${where}[${i}]`) as number | boolean)
    return v.map((e, i) => {
      if (!isObj(e)) throw new MergekitConfigError(`${where}[${i}]: mixes values and {filter, value} conditions`)
      only(e, `${where}[${i}].`, ["filter", "value"])
      const value = setting(e.value ?? null, `${where}[${i}].value`)
      if (typeof value === "object" && value.some((x) => typeof x === "object")) {
        throw new MergekitConfigError(`${where}[${i}].value: conditions cannot nest`)
      }
      const filter = e.filter
      if (filter !== undefined && filter !== null && typeof filter !== "string") throw new MergekitConfigError(`${where}[${i}].filter: expected a string`)
      return { filter: filter ?? undefined, value: value as number | boolean | ReadonlyArray<number | boolean> }
    })
  }
  if (isObj(v) && "value" in v) return setting([v], where)
  throw new MergekitConfigError(`${where}: expected a number, a boolean, a list of them, or a list of {filter, value}`)
}

const settings = (v: YamlValue | undefined, where: string, method: MethodName | "passthrough"): Settings | undefined => {
  if (v === undefined || v === null) return undefined
  if (!isObj(v)) throw new MergekitConfigError(`${where}: expected a mapping of parameter names to values`)
  const allowed = method === "passthrough" ? ["scale"] : [...methodInfo[method].perInput, ...methodInfo[method].shared]
  const out: Record<string, Setting> = {}
  for (const [k, x] of Object.entries(v)) {
    if (k === "int8_mask") continue // a memory option of mergekit's; the result is the same without it
    if (!allowed.includes(k)) throw new MergekitConfigError(`${where}.${k}: ${method} has no parameter "${k}" (it takes ${allowed.join(", ") || "none"})`)
    out[k] = setting(x, `${where}.${k}`)
  }
  return out
}

const layerRange = (v: YamlValue | undefined, where: string): readonly [number, number] => {
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === "number" && Number.isInteger(x) && x >= 0)) {
    throw new MergekitConfigError(`${where}: expected [start, end] layer indices`)
  }
  return [v[0] as number, v[1] as number]
}

const dtype = (v: YamlValue | undefined, where: string): FloatDtype | undefined => {
  if (v === undefined || v === null) return undefined
  const d = typeof v === "string" ? parseDtypeName(v) : undefined
  if (d === undefined) throw new MergekitConfigError(`${where}: "${String(v)}" is not one of float32, float16, bfloat16`)
  return d
}

/** Reads and checks a mergekit YAML config; throws MergekitConfigError with a one-line message. */
export const parseMergekitConfig = (text: string): MergekitConfig => {
  let doc: YamlValue
  try {
    doc = parseYaml(text)
  } catch (e) {
    if (e instanceof YamlError) throw new MergekitConfigError(e.message)
    throw e
  }
  if (!isObj(doc)) throw new MergekitConfigError("expected a mapping at the top level")
  only(doc, "", ["merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype", "tokenizer_source", "name"], {
    modules: "per-module configs are not supported (use models or slices)",
    tokenizer: "tokenizer surgery is not supported; the tokenizer is copied from tokenizer_source or the base model",
    chat_template: "not supported; the donor model's chat template is copied",
    lora_merge_cache: "not supported"
  })
  const method = doc.merge_method
  if (typeof method !== "string" || !(supportedMethods as ReadonlyArray<string>).includes(method)) {
    throw new MergekitConfigError(`merge_method: "${String(method)}" is not supported (supported: ${supportedMethods.join(", ")})`)
  }
  const m = method as MethodName | "passthrough"
  const baseModel = doc.base_model === undefined || doc.base_model === null ? undefined : modelName(doc.base_model, "base_model")
  if ((doc.models === undefined) === (doc.slices === undefined)) throw new MergekitConfigError("give exactly one of models or slices")
  let models: MergekitConfig["models"]
  let slices: MergekitConfig["slices"]
  if (doc.models !== undefined) {
    if (!Array.isArray(doc.models) || doc.models.length === 0) throw new MergekitConfigError("models: expected a non-empty list")
    models = doc.models.map((e, i) => {
      if (!isObj(e)) throw new MergekitConfigError(`models[${i}]: expected {model, parameters}`)
      only(e, `models[${i}].`, ["model", "parameters"])
      return { model: modelName(e.model, `models[${i}].model`), parameters: settings(e.parameters, `models[${i}].parameters`, m) }
    })
  } else {
    if (!Array.isArray(doc.slices) || doc.slices.length === 0) throw new MergekitConfigError("slices: expected a non-empty list")
    slices = doc.slices.map((s, i) => {
      if (!isObj(s)) throw new MergekitConfigError(`slices[${i}]: expected {sources, ...}`)
      only(s, `slices[${i}].`, ["sources", "base_model", "parameters"], { residual_weight: "not supported" })
      if (!Array.isArray(s.sources) || s.sources.length === 0) throw new MergekitConfigError(`slices[${i}].sources: expected a non-empty list`)
      return {
        sources: s.sources.map((x, j) => {
          const where = `slices[${i}].sources[${j}]`
          if (!isObj(x)) throw new MergekitConfigError(`${where}: expected {model, layer_range}`)
          only(x, `${where}.`, ["model", "layer_range", "parameters"])
          return { model: modelName(x.model, `${where}.model`), layers: layerRange(x.layer_range, `${where}.layer_range`), parameters: settings(x.parameters, `${where}.parameters`, m) }
        }),
        base: s.base_model === undefined || s.base_model === null ? undefined : modelName(s.base_model, `slices[${i}].base_model`),
        parameters: settings(s.parameters, `slices[${i}].parameters`, m)
      }
    })
  }
  const tokenizerSource = doc.tokenizer_source === undefined || doc.tokenizer_source === null ? undefined : modelName(doc.tokenizer_source, "tokenizer_source")
  if (tokenizerSource === "union") throw new MergekitConfigError("tokenizer_source: union is not supported (use base or a model name)")
  return {
    method: m,
    baseModel,
    models,
    slices,
    parameters: settings(doc.parameters, "parameters", m),
    // anneal computes in float32 whatever `dtype` says; it only decides the output dtype
    outDtype: dtype(doc.out_dtype, "out_dtype") ?? dtype(doc.dtype, "dtype"),
    tokenizerSource
  }
}

/**
 * Maps a config onto the step's inputs: `models` model directories, plus a base (index `models`)
 * when `hasBase`.
 */
export const mergekitToPlan = (cfg: MergekitConfig, inputs: { readonly models: number; readonly hasBase: boolean }, seed: number): MergePlan => {
  const baseIndex = inputs.hasBase ? inputs.models : undefined
  if (cfg.baseModel !== undefined && !inputs.hasBase) throw new MergekitConfigError(`base_model "${cfg.baseModel}" is set but the step has no base input`)
  if (cfg.baseModel === undefined && inputs.hasBase && cfg.slices?.every((s) => s.base === undefined) !== false) {
    throw new MergekitConfigError("the step has a base input but the config has no base_model")
  }
  const labels = new Map<string, number>()
  const index = (label: string): number => {
    if (label === cfg.baseModel || label === "base") {
      if (baseIndex === undefined) throw new MergekitConfigError(`"${label}" names the base, but the step has no base input`)
      return baseIndex
    }
    let i = labels.get(label)
    if (i === undefined) {
      i = labels.size
      labels.set(label, i)
    }
    return i
  }
  const models = cfg.models?.map((e) => ({ model: index(e.model), parameters: e.parameters }))
  const slices: Array<OutputSlice> | undefined = cfg.slices?.map((s) => ({
    sources: s.sources.map((x): SliceSource => ({ model: index(x.model), layers: x.layers, parameters: x.parameters })),
    base: s.base !== undefined ? index(s.base) : undefined,
    parameters: s.parameters
  }))
  if (labels.size !== inputs.models) {
    throw new MergekitConfigError(`names ${labels.size} model(s) besides base_model (${[...labels.keys()].join(", ")}) but the step was given ${inputs.models} in models`)
  }
  const donor = cfg.tokenizerSource === undefined ? undefined : index(cfg.tokenizerSource)
  return {
    method: cfg.method,
    models,
    slices,
    base: baseIndex,
    parameters: cfg.parameters,
    outDtype: cfg.outDtype,
    donor,
    seed
  }
}

/**
 * A merge plan (which layers of which models go where, with which method and parameters) and its
 * execution: plan every output tensor first (names, shapes, dtypes, inputs, resolved parameters),
 * which fixes the safetensors headers, then stream the tensors one by one into the writer.
 * Upscaling is the `passthrough` method over layer slices; merges are the same machinery over one
 * slice spanning every layer. Inputs are referred to by index into the list of model directories.
 * The plan's shape and the checks that need no model are in ./plan-checks.ts (loaded with the step
 * definitions); this module loads when a merge runs.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { configLayerCount, splitLayers } from "./layers.ts"
import type { LayerSplit } from "./layers.ts"
import { methodInfo, mergeTensor } from "./methods.ts"
import { copyDonorFiles, outputConfig, readConfig } from "./model-dir.ts"
import { asBoolean, asNumber, resolveSetting } from "./params.ts"
import { bernoulliMask } from "./rng.ts"
import type { KeepMask } from "./rng.ts"
import { isFloatDtype } from "./safetensors/dtype.ts"
import type { FloatDtype } from "./safetensors/dtype.ts"
import { ModelReader } from "./safetensors/reader.ts"
import type { TensorRef } from "./safetensors/reader.ts"
import { ModelWriter } from "./safetensors/writer.ts"
import { ChunkedInputs, copyTensor, Encoder } from "./tensor-stream.ts"
import type { Sink } from "./tensor-stream.ts"
import { checkSlice, normalizeSlices, PlanError } from "./plan-checks.ts"
import type { MergePlan, OutputSlice } from "./plan-checks.ts"

export { checkSlice, missingParameter, normalizeSlices, PlanError } from "./plan-checks.ts"
export type { MergePlan, MissingParameter, OutputSlice, SliceSource } from "./plan-checks.ts"

export interface ExecuteOptions {
  readonly signal?: AbortSignal | undefined
  readonly progress?: ((doneBytes: number, totalBytes: number) => void) | undefined
  /** replaces the seeded DARE masks (tests use it to feed mergekit the same masks) */
  readonly keepMask?: ((tensor: string, input: number, density: number) => KeepMask) | undefined
  /** how errors name each input, e.g. "models[1]" or "base" (the directory is added) */
  readonly labels?: ReadonlyArray<string> | undefined
}

export interface PlannedTensor {
  readonly name: string
  readonly dtype: string
  readonly shape: ReadonlyArray<number>
  readonly inputs: ReadonlyArray<TensorRef>
  readonly baseIndex: number | undefined
  /** input index in the plan's model list, for each entry of `inputs` */
  readonly models: ReadonlyArray<number>
  readonly perInput: ReadonlyArray<Readonly<Record<string, number | undefined>>>
  readonly shared: Readonly<Record<string, number | boolean | undefined>>
}

interface Opened {
  readonly reader: ModelReader
  readonly config: Record<string, unknown>
  readonly split: LayerSplit
}

const promote = (dtypes: ReadonlyArray<string>): string => {
  const first = dtypes[0]!
  if (dtypes.every((d) => d === first)) return first
  if (dtypes.every(isFloatDtype)) return "F32"
  return first
}

export const executePlan = async (
  plan: MergePlan,
  dirs: ReadonlyArray<string>,
  outDir: string,
  options: ExecuteOptions = {}
): Promise<{ readonly tensors: number; readonly inputBytes: number; readonly layers: number }> => {
  const opened: Array<Opened> = []
  const name = (i: number): string => (options.labels?.[i] !== undefined ? `${options.labels[i]} (${dirs[i]})` : dirs[i]!)
  try {
    for (const dir of dirs) {
      const reader = await ModelReader.open(dir)
      opened.push({ reader, config: await readConfig(dir), split: splitLayers(dir, reader.names) })
    }
    const layerCounts = opened.map((o, i) => {
      const n = o.split.layers.length
      const c = configLayerCount(o.config)
      if (c !== undefined && c.value !== n) {
        throw new PlanError(`${name(i)}: config.json says ${c.key}=${c.value} but the weights have ${n} layers`)
      }
      return n
    })
    const slices = normalizeSlices(plan, layerCounts)
    const { tensors, layerSources } = planTensors(plan, slices, name, opened)
    // restacking layers (slices) is where a layer can land among layers unlike it; a merge of whole
    // models keeps each layer in place, and sameNames already holds it to its counterparts
    if (plan.slices !== undefined) checkLayerKinds(slices, opened, name)

    const writer = ModelWriter.create(outDir, tensors, { maxShardBytes: plan.maxShardBytes })
    const sink: Sink = (b) => writer.write(b)
    const totalBytes = tensors.reduce((a, t) => a + t.inputs.reduce((s, r) => s + (r.info.end - r.info.begin), 0), 0)
    let done = 0
    try {
      for (const t of tensors) {
        if (options.signal?.aborted) throw new PlanError("interrupted")
        await produce(plan, t, sink, options)
        done += t.inputs.reduce((s, r) => s + (r.info.end - r.info.begin), 0)
        options.progress?.(done, totalBytes)
      }
      await writer.finish()
    } catch (e) {
      await writer.abort()
      throw e
    }

    const donor = plan.donor ?? plan.base ?? slices[0]!.sources[0]!.model
    const changesLayers = plan.slices !== undefined
    const config = outputConfig(opened[donor]!.config, opened.map((o) => o.config), changesLayers ? layerSources : undefined, plan.outDtype)
    await fs.writeFile(path.join(outDir, "config.json"), JSON.stringify(config, null, 2) + "\n")
    await copyDonorFiles(dirs[donor]!, outDir)
    return { tensors: tensors.length, inputBytes: totalBytes, layers: layerSources.length }
  } finally {
    await Promise.all(opened.map((o) => o.reader.close()))
  }
}

const planTensors = (
  plan: MergePlan,
  slices: ReadonlyArray<OutputSlice>,
  name: (input: number) => string,
  opened: ReadonlyArray<Opened>
): { tensors: Array<PlannedTensor>; layerSources: Array<{ model: number; layer: number }> } => {
  const info = plan.method === "passthrough" ? undefined : methodInfo[plan.method]
  const tensors: Array<PlannedTensor> = []
  const layerSources: Array<{ model: number; layer: number }> = []

  const check = (slice: OutputSlice, where: string): number | undefined => checkSlice(plan, slice, opened.length, where)

  const addTensor = (
    outName: string,
    inputNames: ReadonlyArray<string>,
    slice: OutputSlice,
    baseIndex: number | undefined,
    t: number
  ): void => {
    const refs = slice.sources.map((s, k) => {
      const ref = opened[s.model]!.reader.tensors.get(inputNames[k]!)
      if (ref === undefined) throw new PlanError(`tensor "${inputNames[0]}" is in ${name(slice.sources[0]!.model)} but missing from ${name(s.model)} (as "${inputNames[k]}")`)
      return ref
    })
    const shape = refs[0]!.info.shape
    const firstDtype = refs[0]!.info.dtype
    refs.forEach((r, k) => {
      if (r.info.shape.length !== shape.length || r.info.shape.some((d, i) => d !== shape[i])) {
        throw new PlanError(`tensor "${inputNames[k]}": shape [${r.info.shape}] in ${name(slice.sources[k]!.model)} differs from [${shape}] in ${name(slice.sources[0]!.model)}`)
      }
      // float dtypes promote to float32; an integer tensor has to be the same everywhere, or it is not the same tensor
      if (r.info.dtype !== firstDtype && !(isFloatDtype(r.info.dtype) && isFloatDtype(firstDtype))) {
        throw new PlanError(`tensor "${inputNames[k]}": dtype ${r.info.dtype} in ${name(slice.sources[k]!.model)} differs from ${firstDtype} in ${name(slice.sources[0]!.model)}`)
      }
    })
    const inDtype = promote(refs.map((r) => r.info.dtype))
    const dtype = plan.outDtype !== undefined && isFloatDtype(inDtype) ? plan.outDtype : inDtype
    const sharedScopes = [slice.parameters, plan.parameters]
    const shared: Record<string, number | boolean | undefined> = {}
    const perInput: Array<Record<string, number | undefined>> = []
    const ctxName = `tensor "${outName}"`
    if (info !== undefined) {
      for (const p of info.shared) {
        const v = resolveSetting(p, sharedScopes, outName, t)
        shared[p] = p === "normalize" || p === "rescale" ? asBoolean(v) : asNumber(v, `${ctxName}: ${p}`)
      }
      slice.sources.forEach((s, k) => {
        const values: Record<string, number | undefined> = {}
        const isBase = k === baseIndex
        for (const p of info.perInput) {
          if (isBase && plan.method !== "linear") continue
          const v = asNumber(resolveSetting(p, [s.parameters, slice.parameters, plan.parameters], inputNames[k]!, t), `${ctxName}: ${p}`)
          if (v === undefined && p === "weight") {
            throw new PlanError(`${ctxName}: missing parameter "weight" for ${name(s.model)}`)
          }
          values[p] = v
        }
        perInput.push(values)
      })
      if (plan.method === "slerp" && shared.t === undefined) throw new PlanError(`${ctxName}: slerp needs parameter "t"`)
    } else {
      const s = slice.sources[0]!
      perInput.push({ scale: asNumber(resolveSetting("scale", [s.parameters, slice.parameters, plan.parameters], inputNames[0]!, t), `${ctxName}: scale`) })
    }
    tensors.push({ name: outName, dtype, shape, inputs: refs, baseIndex, models: slice.sources.map((s) => s.model), perInput, shared })
  }

  // pre weights from the first slice's models, layers slice by slice, post weights from the last slice's
  const first = slices[0]!
  const last = slices[slices.length - 1]!
  const firstBase = check(first, "slice 1")
  sameNames(first.sources.map((s) => ({ model: s.model, names: opened[s.model]!.split.pre })), name)
  for (const t of opened[first.sources[0]!.model]!.split.pre) addTensor(t, first.sources.map(() => t), first, firstBase, 0)

  let outLayer = 0
  slices.forEach((slice, si) => {
    const where = `slice ${si + 1}`
    const baseIndex = check(slice, where)
    const lengths = slice.sources.map((s) => s.layers[1] - s.layers[0])
    if (!lengths.every((l) => l === lengths[0])) throw new PlanError(`${where}: all sources must span the same number of layers, got ${lengths.join(", ")}`)
    for (const s of slice.sources) {
      const n = opened[s.model]!.split.layers.length
      const [a, b] = s.layers
      if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b > n || a > b) {
        throw new PlanError(`${where}: layer range [${a}, ${b}) is not inside the ${n} layers of ${name(s.model)}`)
      }
    }
    const n = lengths[0]!
    for (let idx = 0; idx < n; idx++) {
      const t = n > 1 ? idx / (n - 1) : 1
      const lead = slice.sources[0]!
      const leadSplit = opened[lead.model]!.split
      sameNames(slice.sources.map((s) => {
        const split = opened[s.model]!.split
        return { model: s.model, names: split.layers[s.layers[0] + idx]!.map((x) => `${split.prefix}${s.layers[0] + idx}${x}`) }
      }), name)
      for (const suffix of leadSplit.layers[lead.layers[0] + idx]!) {
        const inputNames = slice.sources.map((s) => `${opened[s.model]!.split.prefix}${s.layers[0] + idx}${suffix}`)
        addTensor(`${leadSplit.prefix}${outLayer}${suffix}`, inputNames, slice, baseIndex, t)
      }
      layerSources.push({ model: lead.model, layer: lead.layers[0] + idx })
      outLayer++
    }
  })

  const lastBase = check(last, `slice ${slices.length}`)
  sameNames(last.sources.map((s) => ({ model: s.model, names: opened[s.model]!.split.post })), name)
  for (const t of opened[last.sources[0]!.model]!.split.post) addTensor(t, last.sources.map(() => t), last, lastBase, 0)
  return { tensors, layerSources }
}

/**
 * Refuses a group of tensors (one layer, or the embeddings, or the final weights) that the sources do
 * not all have: the first source's names drive the merge, so a tensor only another source has would
 * otherwise vanish from the output. mergekit refuses this too. Layer names are compared by their
 * position in the layer (the layer numbers may differ between sources).
 */
const sameNames = (group: ReadonlyArray<{ readonly model: number; readonly names: ReadonlyArray<string> }>, name: (input: number) => string): void => {
  const positional = (n: string): string => n.replace(/^(.*?(?:^|\.)(?:layers|h|blocks|block)\.)\d+(\..+)$/, "$1#$2")
  const lead = group[0]!
  const leadNames = new Set(lead.names.map(positional))
  for (const other of group.slice(1)) {
    const otherNames = new Set(other.names.map(positional))
    const extra = other.names.find((n) => !leadNames.has(positional(n)))
    if (extra !== undefined) throw new PlanError(`tensor "${extra}" is in ${name(other.model)} but missing from ${name(lead.model)}`)
    const missing = lead.names.find((n) => !otherNames.has(positional(n)))
    if (missing !== undefined) throw new PlanError(`tensor "${missing}" is in ${name(lead.model)} but missing from ${name(other.model)}`)
  }
}

/**
 * Every layer an output is built from must look like the other layers of its kind: the same tensors
 * with the same shapes. A layer's kind is its entry in the config's per-layer lists (e.g.
 * `layer_types`), so models whose layers differ on purpose (linear and full attention) still stack,
 * while layers of a model with another hidden size, or a layer missing a tensor, are refused before
 * anything is written.
 */
export const checkLayerKinds = (slices: ReadonlyArray<OutputSlice>, opened: ReadonlyArray<Opened>, name: (input: number) => string): void => {
  const seen = new Map<string, { readonly model: number; readonly layer: number; readonly tensors: ReadonlyMap<string, ReadonlyArray<number>> }>()
  const kindOf = (model: number, layer: number): string => {
    const config = opened[model]!.config
    const count = configLayerCount(config)?.value
    const entries = Object.entries(config)
      .filter(([k, v]) => Array.isArray(v) && v.length === count && k !== "architectures")
      .map(([k, v]) => [k, (v as ReadonlyArray<unknown>)[layer]])
    return JSON.stringify(entries)
  }
  for (const slice of slices) {
    for (const s of slice.sources) {
      const split = opened[s.model]!.split
      for (let layer = s.layers[0]; layer < s.layers[1] && layer < split.layers.length; layer++) {
        const kind = kindOf(s.model, layer)
        const tensors = new Map(split.layers[layer]!.map((suffix) => [suffix, opened[s.model]!.reader.tensors.get(`${split.prefix}${layer}${suffix}`)!.info.shape]))
        const prev = seen.get(kind)
        if (prev === undefined) {
          seen.set(kind, { model: s.model, layer, tensors })
          continue
        }
        const full = (model: number, l: number, suffix: string): string => `${opened[model]!.split.prefix}${l}${suffix}`
        const mineName = (suffix: string): string => `tensor "${full(s.model, layer, suffix)}" of ${name(s.model)}`
        const theirs = (suffix: string): string => `"${full(prev.model, prev.layer, suffix)}" of ${name(prev.model)}`
        for (const [suffix, shape] of prev.tensors) {
          const mine = tensors.get(suffix)
          if (mine === undefined) throw new PlanError(`layer ${layer} of ${name(s.model)} has no tensor "${full(s.model, layer, suffix)}", unlike layer ${prev.layer} (${theirs(suffix)})`)
          if (mine.length !== shape.length || mine.some((d, i) => d !== shape[i])) {
            throw new PlanError(`${mineName(suffix)} has shape [${mine}], but ${theirs(suffix)} has [${shape}]: layers of one kind must match`)
          }
        }
        for (const suffix of tensors.keys()) {
          if (!prev.tensors.has(suffix)) throw new PlanError(`${mineName(suffix)} has no counterpart in layer ${prev.layer} of ${name(prev.model)}`)
        }
      }
    }
  }
}

const produce = async (plan: MergePlan, t: PlannedTensor, sink: Sink, options: ExecuteOptions): Promise<void> => {
  if (plan.method === "passthrough" || !isFloatDtype(t.dtype) || t.inputs.some((r) => !isFloatDtype(r.info.dtype))) {
    // non-float tensors (integer buffers) are never averaged: the first input's copy is kept
    const scale = plan.method === "passthrough" ? t.perInput[0]?.scale : undefined
    await copyTensor(t.inputs[0]!, t.dtype, sink, scale)
    return
  }
  const info = methodInfo[plan.method]
  const numel = t.inputs[0]!.info.numel
  const keepMask = (input: number, density: number): KeepMask =>
    options.keepMask !== undefined ? options.keepMask(t.name, t.models[input]!, density) : bernoulliMask(plan.seed, t.name, t.models[input]!, density)
  await mergeTensor(plan.method, {
    name: t.name,
    inputs: new ChunkedInputs(t.inputs, numel),
    baseIndex: t.baseIndex,
    weight: t.perInput.map((p) => p.weight),
    density: t.perInput.map((p) => p.density),
    t: t.shared.t as number | undefined,
    normalize: (t.shared.normalize as boolean | undefined) ?? info.normalize,
    lambda: (t.shared.lambda as number | undefined) ?? 1,
    rescale: (t.shared.rescale as boolean | undefined) ?? info.rescale,
    out: new Encoder(t.dtype as FloatDtype),
    sink,
    keepMask
  })
}

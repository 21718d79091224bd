/**
 * Folding a PEFT LoRA adapter into its base model: W' = W + scale * B A for every adapted module, with
 * scale = alpha / r (alpha / sqrt(r) with rslora), as `merge_and_unload` does. The product is formed
 * row block by row block, so memory is A, B and one block of W. Modules the adapter saves whole
 * (`modules_to_save`) replace the base's tensors. DoRA and LoRA biases are refused, not approximated.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { copyDonorFiles, ModelDirError } from "./model-dir.ts"
import { isFloatDtype } from "./safetensors/dtype.ts"
import type { FloatDtype } from "./safetensors/dtype.ts"
import { SafetensorsError } from "./safetensors/header.ts"
import { ChunkReader, ModelReader, SafetensorsFile } from "./safetensors/reader.ts"
import type { TensorRef } from "./safetensors/reader.ts"
import { ModelWriter } from "./safetensors/writer.ts"
import { chunkElements, copyTensor, Encoder } from "./tensor-stream.ts"
import type { Sink } from "./tensor-stream.ts"

export interface AdapterConfig {
  readonly r: number
  readonly alpha: number
  readonly rslora: boolean
  readonly fanInFanOut: boolean
  readonly rankPattern: Readonly<Record<string, number>>
  readonly alphaPattern: Readonly<Record<string, number>>
}

export const readAdapterConfig = async (dir: string): Promise<AdapterConfig> => {
  const file = path.join(dir, "adapter_config.json")
  let raw: Record<string, unknown>
  try {
    raw = JSON.parse(await fs.readFile(file, "utf-8")) as Record<string, unknown>
  } catch (e) {
    throw new ModelDirError(`${file}: cannot read the adapter config (${(e as Error).message})`)
  }
  const type = raw.peft_type
  if (type !== undefined && type !== "LORA") throw new ModelDirError(`${file}: peft_type ${String(type)} is not LORA`)
  if (raw.use_dora === true) throw new ModelDirError(`${file}: DoRA adapters (use_dora) cannot be folded by lora-merge`)
  const r = raw.r
  const alpha = raw.lora_alpha
  if (typeof r !== "number" || !(r > 0)) throw new ModelDirError(`${file}: r must be a positive number, got ${JSON.stringify(r)}`)
  if (typeof alpha !== "number") throw new ModelDirError(`${file}: lora_alpha must be a number, got ${JSON.stringify(alpha)}`)
  const numbers = (v: unknown, key: string): Record<string, number> => {
    if (v === undefined || v === null) return {}
    if (typeof v !== "object" || Array.isArray(v) || !Object.values(v).every((x) => typeof x === "number")) {
      throw new ModelDirError(`${file}: ${key} must map module patterns to numbers`)
    }
    return v as Record<string, number>
  }
  return {
    r,
    alpha,
    rslora: raw.use_rslora === true,
    fanInFanOut: raw.fan_in_fan_out === true,
    rankPattern: numbers(raw.rank_pattern, "rank_pattern"),
    alphaPattern: numbers(raw.alpha_pattern, "alpha_pattern")
  }
}

/** PEFT's get_pattern_key: the first pattern that is the module name or matches `.*\.<pattern>$`. */
const patternValue = (patterns: Readonly<Record<string, number>>, module: string): number | undefined => {
  for (const [k, v] of Object.entries(patterns)) {
    if (k === module) return v
    try {
      if (new RegExp(`^(.*\\.)?${k}$`).test(module)) return v
    } catch {
      continue
    }
  }
  return undefined
}

export const loraScale = (cfg: AdapterConfig, module: string): number => {
  const r = patternValue(cfg.rankPattern, module) ?? cfg.r
  const alpha = patternValue(cfg.alphaPattern, module) ?? cfg.alpha
  return cfg.rslora ? alpha / Math.sqrt(r) : alpha / r
}

interface LoraPair {
  a?: TensorRef
  b?: TensorRef
  embedding: boolean
}

const prefix = "base_model.model."

export const foldLora = async (
  baseDir: string,
  adapterDir: string,
  outDir: string,
  options: { readonly signal?: AbortSignal | undefined; readonly progress?: ((done: number, total: number) => void) | undefined } = {}
): Promise<{ readonly folded: number; readonly replaced: number }> => {
  const cfg = await readAdapterConfig(adapterDir)
  const adapterFile = path.join(adapterDir, "adapter_model.safetensors")
  const adapter = await SafetensorsFile.open(adapterFile).catch(async (e: unknown) => {
    const hasBin = await fs.stat(path.join(adapterDir, "adapter_model.bin")).then(() => true, () => false)
    if (hasBin) throw new ModelDirError(`${adapterDir}: only adapter_model.bin (pickle) found; anneal reads safetensors only`)
    throw e
  })
  const base = await ModelReader.open(baseDir).catch(async (e: unknown) => {
    await adapter.close()
    throw e
  })
  try {
    const pairs = new Map<string, LoraPair>()
    const replacements = new Map<string, TensorRef>()
    for (const info of adapter.tensors) {
      // PEFT saves a whole embedding it adapted (save_embedding_layers) as "<module>.base_layer.weight"
      const name = (info.name.startsWith(prefix) ? info.name.slice(prefix.length) : info.name).replace(/\.base_layer\.weight$/, ".weight")
      const m = /^(.*)\.(lora_A|lora_B)\.weight$/.exec(name) ?? /^(.*)\.(lora_embedding_A|lora_embedding_B)$/.exec(name)
      if (m !== null) {
        const module = m[1]!
        const pair = pairs.get(module) ?? { embedding: m[2]!.startsWith("lora_embedding") }
        if (m[2]!.endsWith("A")) pair.a = { file: adapter, info }
        else pair.b = { file: adapter, info }
        pairs.set(module, pair)
        continue
      }
      if (/lora_magnitude_vector|\.lora_[AB]\.bias$/.test(name)) {
        throw new SafetensorsError(adapterFile, info.name, "DoRA magnitudes and LoRA biases cannot be folded by lora-merge")
      }
      if (/\.lora_/.test(name)) throw new SafetensorsError(adapterFile, info.name, "unrecognised LoRA tensor")
      // a module saved whole (modules_to_save)
      if (!base.tensors.has(name)) throw new SafetensorsError(adapterFile, info.name, `replaces "${name}", which the base model does not have`)
      replacements.set(name, { file: adapter, info })
    }
    const folds = new Map<string, { module: string; pair: LoraPair }>()
    for (const [module, pair] of pairs) {
      if (pair.a === undefined || pair.b === undefined) {
        throw new SafetensorsError(adapterFile, module, `has only one of lora_A / lora_B`)
      }
      const target = `${module}.weight`
      if (!base.tensors.has(target)) throw new SafetensorsError(adapterFile, pair.a.info.name, `adapts "${target}", which the base model does not have`)
      folds.set(target, { module, pair })
    }

    const decls = base.names.map((name) => {
      const ref = replacements.get(name) ?? base.get(name)
      const orig = base.get(name).info
      if (replacements.has(name) && ref.info.shape.join() !== orig.shape.join()) {
        throw new SafetensorsError(adapterFile, ref.info.name, `shape [${ref.info.shape}] does not match the base's [${orig.shape}]`)
      }
      return { name, dtype: orig.dtype, shape: orig.shape }
    })
    const writer = ModelWriter.create(outDir, decls)
    const sink: Sink = (b) => writer.write(b)
    const total = decls.length
    let done = 0
    try {
      for (const d of decls) {
        if (options.signal?.aborted) throw new Error("interrupted")
        const fold = folds.get(d.name)
        const replacement = replacements.get(d.name)
        if (fold !== undefined) await foldOne(replacement ?? base.get(d.name), fold.pair, loraScale(cfg, fold.module), cfg.fanInFanOut || fold.pair.embedding, sink)
        else await copyTensor(replacement ?? base.get(d.name), d.dtype, sink)
        options.progress?.(++done, total)
      }
      await writer.finish()
    } catch (e) {
      await writer.abort()
      throw e
    }
    await fs.copyFile(path.join(baseDir, "config.json"), path.join(outDir, "config.json"))
    await copyDonorFiles(baseDir, outDir)
    return { folded: folds.size, replaced: replacements.size }
  } finally {
    await Promise.all([adapter.close(), base.close()])
  }
}

const readAll = async (ref: TensorRef): Promise<Float32Array> => {
  const out = new Float32Array(ref.info.numel)
  await new ChunkReader().readF32(ref, 0, ref.info.numel, out)
  return out
}

/**
 * W[rows, cols] += scale * P Q with P [rows, r] and Q [r, cols]: P = B, Q = A for a Linear weight
 * [out, in]; P = A^T, Q = B^T when the weight is stored transposed (Conv1D, fan_in_fan_out) and for
 * embeddings, whose delta PEFT transposes.
 */
const foldOne = async (w: TensorRef, pair: LoraPair, scale: number, transposed: boolean, sink: Sink): Promise<void> => {
  const a = pair.a!
  const b = pair.b!
  const where = a.file.file
  if (w.info.shape.length !== 2 || a.info.shape.length !== 2 || b.info.shape.length !== 2) {
    throw new SafetensorsError(where, a.info.name, `LoRA factors and the adapted weight must be matrices`)
  }
  if (!isFloatDtype(w.info.dtype)) throw new SafetensorsError(w.file.file, w.info.name, `dtype ${w.info.dtype} cannot take a LoRA delta`)
  const [rows, cols] = w.info.shape as [number, number]
  const [ra, na] = a.info.shape as [number, number]
  const [nb, rb] = b.info.shape as [number, number]
  const r = ra
  const expectA = transposed ? [r, rows] : [r, cols]
  const expectB = transposed ? [cols, r] : [rows, r]
  if (rb !== r || na !== expectA[1] || nb !== expectB[0]) {
    throw new SafetensorsError(where, a.info.name, `lora_A [${a.info.shape}] and lora_B [${b.info.shape}] do not fit weight "${w.info.name}" [${w.info.shape}]`)
  }
  const A = await readAll(a)
  const B = await readAll(b)
  // P [rows, r], Q [r, cols]
  const P = new Float32Array(rows * r)
  const Q = new Float32Array(r * cols)
  if (!transposed) {
    P.set(B)
    Q.set(A)
  } else {
    for (let i = 0; i < rows; i++) for (let k = 0; k < r; k++) P[i * r + k] = A[k * rows + i]!
    for (let k = 0; k < r; k++) for (let j = 0; j < cols; j++) Q[k * cols + j] = B[j * r + k]!
  }
  const s = Math.fround(scale)
  const blockRows = Math.max(1, Math.floor(chunkElements / Math.max(1, cols)))
  const reader = new ChunkReader()
  const block = new Float32Array(Math.min(rows, blockRows) * cols)
  const acc = new Float64Array(cols)
  const enc = new Encoder(w.info.dtype as FloatDtype)
  for (let r0 = 0; r0 < rows; r0 += blockRows) {
    const n = Math.min(blockRows, rows - r0)
    const view = block.subarray(0, n * cols)
    await reader.readF32(w, r0 * cols, n * cols, view)
    for (let i = 0; i < n; i++) {
      acc.fill(0)
      const row = r0 + i
      for (let k = 0; k < r; k++) {
        const p = P[row * r + k]!
        if (p === 0) continue
        const qo = k * cols
        for (let j = 0; j < cols; j++) acc[j] = acc[j]! + p * Q[qo + j]!
      }
      const o = i * cols
      // as PEFT: delta = fp32(B A) * scale, then W + delta
      for (let j = 0; j < cols; j++) view[o + j] = view[o + j]! + Math.fround(Math.fround(acc[j]!) * s)
    }
    await sink(enc.encode(view))
  }
}

/**
 * The non-tensor parts of an output model directory: config.json (layer count and per-layer lists
 * rewritten, dtype updated) and every other file of the donor model (tokenizer, generation config,
 * chat template, ...) copied as is, so the output loads with `from_pretrained` on its own.
 */
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { configLayerCount } from "./layers.ts"
import type { FloatDtype } from "./safetensors/dtype.ts"

const weightFile = /\.(safetensors|bin|pt|pth|ckpt|gguf|h5|msgpack)$|\.safetensors\.index\.json$|\.bin\.index\.json$/
/** files that describe a merge or an adapter, not the model */
const skipped = new Set(["config.json", "README.md", "mergekit_config.yml", "adapter_config.json"])

export class ModelDirError extends Error {
  readonly _tag = "ModelDirError"
}

export const readConfig = async (dir: string): Promise<Record<string, unknown>> => {
  const file = path.join(dir, "config.json")
  let text: string
  try {
    text = await fs.readFile(file, "utf-8")
  } catch (e) {
    throw new ModelDirError(`${file}: cannot read the model's config.json (${(e as Error).message})`)
  }
  try {
    const v = JSON.parse(text) as unknown
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object")
    return v as Record<string, unknown>
  } catch (e) {
    throw new ModelDirError(`${file}: not a JSON object (${(e as Error).message})`)
  }
}

/** Copies every non-weight file of `donor` into `out` (top level only), except config.json. */
export const copyDonorFiles = async (donor: string, out: string): Promise<ReadonlyArray<string>> => {
  const copied: Array<string> = []
  for (const entry of await fs.readdir(donor, { withFileTypes: true })) {
    if (!entry.isFile() || weightFile.test(entry.name) || skipped.has(entry.name) || entry.name.startsWith(".")) continue
    await fs.copyFile(path.join(donor, entry.name), path.join(out, entry.name))
    copied.push(entry.name)
  }
  return copied
}

export const torchDtypeName: Readonly<Record<FloatDtype, string>> = { F32: "float32", F16: "float16", BF16: "bfloat16" }

/**
 * The output config: the donor's, with the layer count set to `layerSources.length` and every
 * per-layer list (a list as long as the donor's layer count, e.g. `layer_types`) rebuilt from the
 * source layers' entries.
 */
export const outputConfig = (
  donor: Record<string, unknown>,
  sources: ReadonlyArray<Record<string, unknown>>,
  layerSources: ReadonlyArray<{ readonly model: number; readonly layer: number }> | undefined,
  outDtype: FloatDtype | undefined
): Record<string, unknown> => {
  const config = structuredClone(donor)
  if (outDtype !== undefined) {
    if ("torch_dtype" in config) config.torch_dtype = torchDtypeName[outDtype]
    config.dtype = torchDtypeName[outDtype]
  }
  if (layerSources === undefined) return config
  const rewrite = (obj: Record<string, unknown>, srcs: ReadonlyArray<Record<string, unknown> | undefined>): void => {
    const count = configLayerCount(obj)
    if (count === undefined) return
    for (const [key, value] of Object.entries(obj)) {
      if (!Array.isArray(value) || value.length !== count.value || key === "architectures") continue
      obj[key] = layerSources.map(({ model, layer }) => {
        const list = srcs[model]?.[key]
        if (!Array.isArray(list) || layer >= list.length) {
          throw new ModelDirError(`config.json of input ${model}: per-layer list "${key}" has no entry for layer ${layer}`)
        }
        return list[layer]
      })
    }
    obj[count.key] = layerSources.length
  }
  rewrite(config, sources)
  // multimodal configs keep the language model's layers under text_config
  const text = config.text_config
  if (typeof text === "object" && text !== null && !Array.isArray(text) && configLayerCount(text as Record<string, unknown>) !== undefined) {
    rewrite(text as Record<string, unknown>, sources.map((s) => s.text_config as Record<string, unknown> | undefined))
  }
  return config
}

/**
 * How a model's tensors split into layers, without per-architecture tables: the decoder stack is the
 * tensors named `<prefix>.layers.<i>.<rest>` (Llama, Mistral, Qwen, Gemma, Phi, ... all use it; GPT-2's
 * `h.<i>` and GPT-NeoX's `layers.<i>` are recognised too). Everything else is a "pre" weight (the
 * embeddings, read from the first slice's models, as mergekit does) or a "post" weight (final norm,
 * lm_head, read from the last slice's models).
 */
import { SafetensorsError } from "./safetensors/header.ts"

const layerPattern = /^(.*?(?:^|\.)(?:layers|h|blocks|block)\.)(\d+)(\..+)$/

export interface LayerSplit {
  /** e.g. "model.layers." */
  readonly prefix: string | undefined
  /** layer index -> the tensor-name suffixes of that layer, in file order (".self_attn.q_proj.weight") */
  readonly layers: ReadonlyArray<ReadonlyArray<string>>
  readonly pre: ReadonlyArray<string>
  readonly post: ReadonlyArray<string>
}

export const isPreWeight = (name: string): boolean => /(^|\.)(embed_tokens|embed_in|wte|wpe|word_embeddings|embeddings|tok_embeddings)(\.|$)/.test(name)

export const splitLayers = (dir: string, names: ReadonlyArray<string>): LayerSplit => {
  let prefix: string | undefined
  const layers: Array<Array<string>> = []
  const pre: Array<string> = []
  const post: Array<string> = []
  for (const name of names) {
    const m = layerPattern.exec(name)
    if (m === null) {
      ;(isPreWeight(name) ? pre : post).push(name)
      continue
    }
    if (prefix === undefined) prefix = m[1]!
    else if (m[1] !== prefix) {
      throw new SafetensorsError(dir, name, `a second layer stack ("${m[1]}" besides "${prefix}"): models with several layer stacks are not supported`)
    }
    const i = Number(m[2])
    while (layers.length <= i) layers.push([])
    layers[i]!.push(m[3]!)
  }
  layers.forEach((l, i) => {
    if (l.length === 0) throw new SafetensorsError(dir, `${prefix}${i}`, "layer has no tensors (layer numbering has a gap)")
  })
  return { prefix, layers, pre, post }
}

/** Keys under which configs state the number of layers. */
export const layerCountKeys = ["num_hidden_layers", "n_layer", "num_layers", "n_layers"] as const

export const configLayerCount = (config: Record<string, unknown>): { key: string; value: number } | undefined => {
  for (const key of layerCountKeys) {
    const v = config[key]
    if (typeof v === "number" && Number.isInteger(v)) return { key, value: v }
  }
  return undefined
}

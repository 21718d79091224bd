/**
 * Compile-time checks of the training steps' ports (tsc, not vitest): what fits compiles, and each
 * `@ts-expect-error` line must be an error or tsc fails.
 */
import type { Dataset, Model } from "../../../engine/artifact.ts"
import { source } from "../../../engine/graph.ts"
import { Instruction, Messages, Preference, Text } from "../../../engine/rows.ts"
import { dpo, evaluate, pretrain, sft, sftLora } from "../../../steps/train/index.ts"
import { textbookInstructions } from "../../../recipes/textbooks.ts"

export const wiring = (): void => {
  const base: Model = source.model("base")
  const instructions = source.dataset("i.jsonl", Instruction)
  const chats = source.dataset("m.jsonl", Messages)
  const prefs = source.dataset("p.jsonl", Preference)
  const texts = source.dataset("t.jsonl", Text)
  const generated = textbookInstructions({}, {})

  const tuned: Model = sft({ model: base, data: instructions })
  sft({ model: base, data: chats })
  sft({ model: base, data: generated })
  const adapter = sftLora({ model: base, data: texts })
  dpo({ model: tuned, data: prefs })
  evaluate({ model: tuned, adapter, benchmarks: [] })
  pretrain({ data: texts, model: tuned })

  // @ts-expect-error a preference dataset is not SFT data
  sft({ model: base, data: prefs })
  // @ts-expect-error dpo needs preference rows
  dpo({ model: base, data: instructions })
  // @ts-expect-error an adapter is not a model
  sft({ model: adapter, data: instructions })
  // @ts-expect-error sft-lora's output is an Adapter, not a Model
  const wrong: Model = sftLora({ model: base, data: texts })
  // @ts-expect-error pretrain reads Text
  pretrain({ data: instructions as Dataset<Instruction> })
  void wrong
}

/**
 * Type-level test, checked by `tsc` (part of `npm test`), never executed: wrong wiring must not compile.
 * Each `@ts-expect-error` line is a mistake a recipe author could make; if one of them ever compiled,
 * the directive would be unused and tsc would fail.
 */
import { clean, dedup, defineStep, Instruction, Port, Preference, recipe, Schema, source, Text } from "anneal"
import type { Adapter, Dataset, Model } from "anneal"

const train = defineStep({
  kind: "typecheck-train",
  version: 1,
  params: Schema.Struct({ lr: Schema.Number }),
  inputs: { model: Port.model(), data: Port.dataset(Instruction) },
  output: Port.adapter(),
  run: () => {}
})

const prefer = defineStep({
  kind: "typecheck-prefer",
  version: 1,
  params: Schema.Struct({}),
  inputs: { model: Port.model(), pairs: Port.dataset(Preference) },
  output: Port.model(),
  run: () => {}
})

const merge = defineStep({
  kind: "typecheck-merge",
  version: 1,
  params: Schema.Struct({}),
  inputs: { models: Port.many(Port.model()), base: Port.optional(Port.model()) },
  output: Port.model(),
  run: () => {}
})

export default recipe("typecheck", () => {
  const base: Model = source.model("base")
  const alpaca: Dataset<Instruction> = source.dataset("alpaca.jsonl", Instruction)
  const texts: Dataset<Text> = source.dataset("texts.jsonl", Text)
  const pairs: Dataset<Preference> = source.dataset("pairs.jsonl", Preference)

  // correct wiring compiles
  const adapter: Adapter = train({ model: base, data: alpaca }, { lr: 1e-4 })
  const aligned: Model = prefer({ model: base, pairs })
  merge({ models: [base, aligned] })
  merge({ models: [base], base })

  // filtering steps keep the row type, so wiring stays checked through them
  const curated: Dataset<Instruction> = dedup({ data: clean({ data: alpaca }) })
  train({ model: base, data: curated }, { lr: 1e-4 })
  // @ts-expect-error text rows stay text rows through clean
  train({ model: base, data: clean({ data: texts }) }, { lr: 1e-4 })

  // @ts-expect-error a dataset of text rows where instruction rows are wanted
  train({ model: base, data: texts }, { lr: 1e-4 })
  // @ts-expect-error a preference dataset where instruction rows are wanted
  train({ model: base, data: pairs }, { lr: 1e-4 })
  // @ts-expect-error an adapter where a model is wanted
  train({ model: adapter, data: alpaca }, { lr: 1e-4 })
  // @ts-expect-error a model where a dataset is wanted
  prefer({ model: base, pairs: base })
  // @ts-expect-error a single model where a list is wanted
  merge({ models: base })
  // @ts-expect-error a required input left out
  train({ model: base }, { lr: 1e-4 })
  // @ts-expect-error a param of the wrong type
  train({ model: base, data: alpaca }, { lr: "fast" })
  // @ts-expect-error an unknown param
  train({ model: base, data: alpaca }, { lr: 1e-4, epochs: 3 })
  // @ts-expect-error the output of a step is an adapter, not a model
  const wrong: Model = train({ model: base, data: alpaca }, { lr: 1e-4 })
  void wrong
})

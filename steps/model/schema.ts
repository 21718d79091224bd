/**
 * Params schemas shared by the model-surgery steps, and their conversion into a MergePlan. Names
 * follow mergekit's config (snake_case) so that a mergekit config reads the same either way; a whole
 * mergekit YAML may instead be given as `mergekit` (mergekit-config.ts maps it).
 */
import * as Schema from "effect/Schema"
import { parseMergekitConfig } from "./mergekit-config.ts"
import { SettingsSchema } from "./params.ts"

import { withDefault } from "../../engine/params.ts"
export { withDefault }

export const DtypeName = Schema.Literals(["float32", "float16", "bfloat16"])

const LayerRange = Schema.Tuple([Schema.Int, Schema.Int]).check(
  Schema.makeFilter(([a, b]: readonly [number, number]) => (a >= 0 && b > a) || "a layer range [start, end) with 0 <= start < end")
)

/** A model by its index in the `models` input, or "base". */
export const ModelIndex = Schema.Union([Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)), Schema.Literal("base")])

export const SliceSourceSchema = Schema.Struct({
  model: withDefault(ModelIndex, 0),
  layerRange: LayerRange.annotate({ description: "half-open [start, end), as mergekit's layer_range" }),
  parameters: Schema.optional(SettingsSchema)
})

export const SliceSchema = Schema.Struct({
  sources: Schema.Array(SliceSourceSchema).check(Schema.isMinLength(1)),
  baseModel: Schema.optional(ModelIndex),
  parameters: Schema.optional(SettingsSchema)
})

/** A mergekit YAML config, checked when the recipe is loaded. */
export const MergekitYaml = Schema.String.check(
  Schema.makeFilter((text: string) => {
    try {
      parseMergekitConfig(text)
      return undefined
    } catch (e) {
      return (e as Error).message
    }
  })
)

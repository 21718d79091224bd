/**
 * Per-tensor merge parameters, resolved the way mergekit does (mergekit/config.py evaluate_setting and
 * parameter_resolver.py): a setting is a scalar, a gradient (a list of numbers interpolated over the
 * layers of a slice, t = layer / (layers - 1)), or a list of `{filter, value}` conditions where the
 * first whose filter is a substring of the tensor name wins. Scopes are searched from the most to the
 * least specific (slice source > slice > global); a setting that matches nothing falls through.
 */
import * as Schema from "effect/Schema"

export type Scalar = number | boolean
export type Gradient = ReadonlyArray<Scalar>
export interface Condition {
  readonly filter?: string | undefined
  readonly value: Scalar | Gradient
}
export type Setting = Scalar | Gradient | ReadonlyArray<Condition>
export type Settings = Readonly<Record<string, Setting>>

const ScalarSchema = Schema.Union([Schema.Number, Schema.Boolean])
const GradientSchema = Schema.Array(ScalarSchema)
const ConditionSchema = Schema.Struct({
  filter: Schema.optional(Schema.String),
  value: Schema.Union([ScalarSchema, GradientSchema])
})
export const SettingSchema = Schema.Union([ScalarSchema, GradientSchema, Schema.Array(ConditionSchema)])
export const SettingsSchema = Schema.Record(Schema.String, SettingSchema)

const isCondition = (x: unknown): x is Condition => typeof x === "object" && x !== null && "value" in x

/** The value of one setting for a tensor at gradient position t, or undefined when no filter matches. */
export const evaluateSetting = (tensorName: string, setting: Setting, t: number): Scalar | undefined => {
  if (typeof setting === "number" || typeof setting === "boolean") return setting
  if (setting.length === 0) return undefined
  if (setting.every((e) => !isCondition(e))) {
    const values = setting as Gradient
    if (!values.every((v) => typeof v === "number")) return values[Math.trunc(t * (values.length - 1))]
    const nums = values as ReadonlyArray<number>
    const scaled = t * (nums.length - 1)
    const i0 = Math.trunc(scaled)
    const i1 = Math.min(nums.length - 1, i0 + 1)
    const frac = scaled - i0
    return (1 - frac) * nums[i0]! + frac * nums[i1]!
  }
  for (const cond of setting as ReadonlyArray<Condition>) {
    if (!isCondition(cond)) throw new Error(`a parameter list mixes conditions and values: ${JSON.stringify(setting)}`)
    if (cond.filter === undefined || cond.filter === "*" || (tensorName !== "" && tensorName.includes(cond.filter))) {
      return evaluateSetting(tensorName, cond.value, t)
    }
  }
  return undefined
}

/** First value found for `name` across scopes (most specific first). */
export const resolveSetting = (
  name: string,
  scopes: ReadonlyArray<Settings | undefined>,
  tensorName: string,
  t: number
): Scalar | undefined => {
  for (const scope of scopes) {
    const s = scope?.[name]
    if (s === undefined) continue
    const v = evaluateSetting(tensorName, s, t)
    if (v !== undefined) return v
  }
  return undefined
}

export const asNumber = (v: Scalar | undefined, what: string): number | undefined => {
  if (v === undefined) return undefined
  if (typeof v === "boolean") return v ? 1 : 0
  if (!Number.isFinite(v)) throw new Error(`${what} must be a finite number, got ${v}`)
  return v
}

export const asBoolean = (v: Scalar | undefined): boolean | undefined => (v === undefined ? undefined : typeof v === "boolean" ? v : v !== 0)

/**
 * The flat-params fast path (engine/flat-params.ts) must never accept a value Effect's decoder rejects,
 * and what it gives must be what decoding gives (and encoding that, back). Checked against the decoder
 * itself, over flat schemas and values of every shape a recipe can pass, valid and not; schemas that
 * transform (a default, a conversion) or nest a struct never take it.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import { flatDecoder } from "../../engine/flat-params.ts"

const flat = {
  int: Schema.Struct({ i: Schema.Int }),
  mixed: Schema.Struct({
    name: Schema.String,
    lr: Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 1 })),
    on: Schema.optional(Schema.Boolean),
    key: Schema.optionalKey(Schema.String),
    mode: Schema.Literals(["fast", "exact"]),
    tags: Schema.Array(Schema.String),
    limit: Schema.NullOr(Schema.Int)
  })
}
const transforming = {
  defaulted: Schema.Struct({ x: Schema.Number.pipe(Schema.withDecodingDefault(Effect.succeed(1))) }),
  constructed: Schema.Struct({ x: Schema.Number.pipe(Schema.withConstructorDefault(Effect.succeed(1))) }),
  converted: Schema.Struct({ x: Schema.NumberFromString }),
  nested: Schema.Struct({ lora: Schema.Struct({ r: Schema.Int }) }),
  record: Schema.Record(Schema.String, Schema.Number)
}

class Params {
  i = 1
}
const withSymbol = { i: 1, [Symbol("s")]: 2 }
const hidden = Object.defineProperty({ i: 1 }, "extra", { value: 2, enumerable: false })
const nullProto = Object.assign(Object.create(null) as object, { i: 4 })

const values: Array<unknown> = [
  { i: 3 }, { i: 1.5 }, { i: "3" }, { i: 3, extra: true }, {}, null, undefined, 7, "x", [1], new Params(), withSymbol, hidden,
  nullProto, { i: Number.NaN }, { i: Infinity },
  { name: "a", lr: 0.1, mode: "fast", tags: ["x", "y"], limit: null },
  { name: "a", lr: 0.1, mode: "fast", tags: [], limit: 3, on: undefined },
  { name: "a", lr: 0.1, mode: "fast", tags: [], limit: 3, on: true, key: "k" },
  { name: "a", lr: 0.1, mode: "fast", tags: [], limit: 3, key: undefined },
  { name: "a", lr: 2, mode: "fast", tags: [], limit: 3 },
  { name: "a", lr: 0.1, mode: "slow", tags: [], limit: 3 },
  { name: "a", lr: 0.1, mode: "fast", tags: [1], limit: 3 },
  { name: "a", lr: 0.1, mode: "fast", tags: ["x"], limit: 3, other: 1 },
  { name: "a", lr: 0.1, mode: "fast", limit: 3 }
]

const reference = (schema: Schema.Codec<unknown, unknown>, u: unknown): { ok: true; decoded: unknown; encoded: unknown } | { ok: false } => {
  try {
    const decoded = Schema.decodeUnknownSync(schema, { onExcessProperty: "error" })(u)
    return { ok: true, decoded, encoded: Schema.encodeSync(schema)(decoded) }
  } catch {
    return { ok: false }
  }
}

describe("flat params", () => {
  it("accepts only what decoding accepts, and gives what decoding (and encoding back) gives", () => {
    let taken = 0
    for (const [name, schema] of Object.entries(flat)) {
      const fast = flatDecoder(schema)
      expect(fast, name).toBeDefined()
      for (const u of values) {
        const got = fast!(u)
        if (got === undefined) continue
        taken++
        const ref = reference(schema as Schema.Codec<unknown, unknown>, u)
        expect(ref.ok, `${name} accepted ${String(JSON.stringify(u))}`).toBe(true)
        if (!ref.ok) continue
        expect(got).toStrictEqual(ref.decoded)
        expect(got).toStrictEqual(ref.encoded)
        // a copy: changing it (a step mutating its params) leaves the recipe's value alone
        expect(got).not.toBe(u)
        for (const [k, v] of Object.entries(got)) if (Array.isArray(v)) expect(v).not.toBe((u as Record<string, unknown>)[k])
      }
    }
    // the valid plain objects took it: { i: 3 } and the null-prototype one, three of the mixed ones
    expect(taken).toBe(5)
  })

  it("is not used for a schema that transforms, nests a struct or has an index signature", () => {
    for (const [name, schema] of Object.entries(transforming)) expect(flatDecoder(schema), name).toBeUndefined()
  })
})

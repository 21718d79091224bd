/**
 * Each training worker's config dataclass is the source of truth for its params; the TS Schema mirrors
 * it. These tests read the dataclass (python -m anneal_worker.describe) and check the Schema has the
 * same field names in the same order, the same defaults, the same types and the same choices.
 */
import * as path from "node:path"
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { dpo, evaluate, pretrain, sft, tokenize, tokenizer } from "../../../steps/train/index.ts"
import { trainDir } from "../../../steps/train/common.ts"
import { python } from "./helpers.ts"

interface FieldInfo {
  readonly name: string
  /** the Python field's name as recipes and specs spell it (protocol.ts_name); Schema fields have it as name */
  readonly tsName?: string
  readonly type: string
  readonly default: unknown
  readonly choices: ReadonlyArray<string> | null
}

/** The Python spelling of a Schema field's type ("int", "float | None", "list[str]"), and its literals. */
const typeOf = (ast: any): { type: string; choices: ReadonlyArray<string> | null } => {
  switch (ast._tag) {
    case "Number": {
      const isInt = (ast.checks ?? []).some((c: any) => c.annotations?.expected === "an integer")
      return { type: isInt ? "int" : "float", choices: null }
    }
    case "String":
      return { type: "str", choices: null }
    case "Boolean":
      return { type: "bool", choices: null }
    case "Literal":
      return { type: "str", choices: [ast.literal] }
    case "Arrays": {
      const item = typeOf(ast.rest[0])
      return { type: `list[${item.type}]`, choices: item.choices }
    }
    case "Union": {
      const nonNull = ast.types.filter((t: any) => t._tag !== "Null")
      const nullable = nonNull.length < ast.types.length
      if (nonNull.every((t: any) => t._tag === "Literal")) {
        return { type: nullable ? "str | None" : "str", choices: nonNull.map((t: any) => t.literal) }
      }
      const inner = nonNull.length === 1 ? typeOf(nonNull[0]) : { type: "?", choices: null }
      return { type: nullable ? `${inner.type} | None` : inner.type, choices: inner.choices }
    }
    case "Objects":
      // a record of any values: a passthrough config (deepspeedConfig)
      return ast.indexSignatures?.length === 1 && ast.propertySignatures.length === 0
        ? { type: "dict[str, Any]", choices: null }
        : { type: `?Objects`, choices: null }
    default:
      return { type: `?${ast._tag}`, choices: null }
  }
}

const describeSchema = (schema: Schema.Struct<any>): Array<FieldInfo> => {
  const defaults = Schema.decodeUnknownSync(schema as any)({}) as Record<string, unknown>
  return Object.entries(schema.fields).map(([name, field]) => ({
    name,
    ...typeOf((field as any).ast),
    default: defaults[name] ?? null
  }))
}

interface PythonConfig {
  readonly fields: ReadonlyArray<FieldInfo>
  readonly presets: Record<string, Record<string, unknown>>
  readonly defaults: Record<string, unknown>
}

const describePython = async (kind: string, cls: string): Promise<PythonConfig> =>
  JSON.parse(await python(["-m", "anneal_worker.describe", path.join(trainDir, kind, "worker.py"), cls]))

/** The preset tables a kind's `preset` field carries as annotations (what `anneal steps` prints). */
const presetAnnotations = (schema: Schema.Struct<any>): { presets?: unknown; presetDefaults?: unknown } =>
  (schema.fields.preset as any)?.ast.annotations ?? {}

const cases = [
  { kind: "tokenizer", cls: "TokenizerConfig", step: tokenizer },
  { kind: "tokenize", cls: "TokenizeConfig", step: tokenize },
  { kind: "pretrain", cls: "PretrainConfig", step: pretrain },
  { kind: "sft", cls: "SftConfig", step: sft },
  { kind: "dpo", cls: "DpoConfig", step: dpo },
  { kind: "eval", cls: "EvalConfig", step: evaluate }
]

describe("training step params mirror the worker config dataclasses", () => {
  for (const c of cases) {
    it(`${c.kind}: names, order, defaults, types and choices agree with ${c.cls}`, async () => {
      const { fields: py, presets, defaults } = await describePython(c.kind, c.cls)
      const schema = c.step.definition.params as unknown as Schema.Struct<any>
      const ts = describeSchema(schema)
      // params are camelCase; the worker maps each to its snake_case field with the same ts_name it reports here
      expect(ts.map((f) => f.name)).toEqual(py.map((f) => f.tsName))
      for (const [i, p] of py.entries()) {
        const t = ts[i]!
        expect({ name: t.name, type: t.type, default: t.default }).toEqual({ name: p.tsName, type: p.type, default: p.default })
        expect([...(t.choices ?? [])].sort()).toEqual([...(p.choices ?? [])].sort())
      }
      const annotated = presetAnnotations(schema)
      if (Object.keys(presets).length > 0) expect(annotated.presets).toEqual(presets)
      if (Object.keys(defaults).length > 0) expect(annotated.presetDefaults).toEqual(defaults)
    })
  }
})

describe("training step params reject bad hyperparameters before anything runs", () => {
  const decode = (step: { definition: { params: unknown } }, raw: unknown) => () =>
    Schema.decodeUnknownSync(step.definition.params as Schema.Codec<unknown, unknown>)(raw)

  it("names the field of a negative learning rate, r = 0, an unknown choice", () => {
    expect(decode(pretrain, { learningRate: -1e-3 })).toThrow(/learningRate/)
    expect(decode(sft, { loraR: 0 })).toThrow(/loraR/)
    expect(decode(sft, { adapter: "qlora" })).toThrow(/adapter/)
    expect(decode(dpo, { lossType: ["sigmoid", "nope"] })).toThrow(/lossType/)
    expect(decode(pretrain, { maxSteps: 0 })).toThrow(/maxSteps/)
  })

  it("accepts the presets and fills the defaults", () => {
    expect(decode(pretrain, { preset: "phi-1.5" })()).toMatchObject({ preset: "phi-1.5", learningRate: null, seqLen: 128 })
    expect(decode(sft, { preset: "platypus" })()).toMatchObject({ preset: "platypus", neftuneNoiseAlpha: null })
  })
})

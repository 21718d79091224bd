/**
 * Each training worker's config dataclass is the source of truth for its params; the TS Schema mirrors
 * it. These tests read the dataclass (python -m anneal_worker.describe) and check the Schema has the
 * same field names in the same order, the same defaults, the same types and the same choices.
 */
import * as path from "node:path"
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { dpo, evaluate, pretrain, sft, tokenizer } from "../../../steps/train/index.ts"
import { trainDir } from "../../../steps/train/common.ts"
import { python } from "./helpers.ts"

interface FieldInfo {
  readonly name: string
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

const describePython = async (kind: string, cls: string): Promise<Array<FieldInfo>> =>
  JSON.parse(await python(["-m", "anneal_worker.describe", path.join(trainDir, kind, "worker.py"), cls]))

const cases = [
  { kind: "tokenizer", cls: "TokenizerConfig", step: tokenizer },
  { kind: "pretrain", cls: "PretrainConfig", step: pretrain },
  { kind: "sft", cls: "SftConfig", step: sft },
  { kind: "dpo", cls: "DpoConfig", step: dpo },
  { kind: "eval", cls: "EvalConfig", step: evaluate }
]

describe("training step params mirror the worker config dataclasses", () => {
  for (const c of cases) {
    it(`${c.kind}: names, order, defaults, types and choices agree with ${c.cls}`, async () => {
      const py = await describePython(c.kind, c.cls)
      const ts = describeSchema(c.step.definition.params as unknown as Schema.Struct<any>)
      expect(ts.map((f) => f.name)).toEqual(py.map((f) => f.name))
      for (const [i, p] of py.entries()) {
        const t = ts[i]!
        expect({ name: t.name, type: t.type, default: t.default }).toEqual({ name: p.name, type: p.type, default: p.default })
        expect([...(t.choices ?? [])].sort()).toEqual([...(p.choices ?? [])].sort())
      }
    })
  }
})

describe("training step params reject bad hyperparameters before anything runs", () => {
  const decode = (step: { definition: { params: unknown } }, raw: unknown) => () =>
    Schema.decodeUnknownSync(step.definition.params as Schema.Codec<unknown, unknown>)(raw)

  it("names the field of a negative learning rate, r = 0, an unknown choice", () => {
    expect(decode(pretrain, { learning_rate: -1e-3 })).toThrow(/learning_rate/)
    expect(decode(sft, { lora_r: 0 })).toThrow(/lora_r/)
    expect(decode(sft, { adapter: "qlora" })).toThrow(/adapter/)
    expect(decode(dpo, { loss_type: ["sigmoid", "nope"] })).toThrow(/loss_type/)
    expect(decode(pretrain, { max_steps: 0 })).toThrow(/max_steps/)
  })

  it("accepts the presets and fills the defaults", () => {
    expect(decode(pretrain, { preset: "phi-1.5" })()).toMatchObject({ preset: "phi-1.5", learning_rate: null, seq_len: 128 })
    expect(decode(sft, { preset: "platypus" })()).toMatchObject({ preset: "platypus", neftune_noise_alpha: null })
  })
})

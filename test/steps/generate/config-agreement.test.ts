/**
 * generate's params mirror GenerateConfig in steps/generate/worker.py (the source of truth): the same
 * names in the same order, the same defaults and the same choices.
 */
import * as path from "node:path"
import { Schema } from "effect"
import { expect, it } from "vitest"
import { generate } from "../../../steps/generate/index.ts"
import { projectRoot } from "../../../engine/python.ts"
import { python } from "../train/helpers.ts"

const choicesOf = (ast: any): ReadonlyArray<string> | null =>
  ast._tag === "Union" && ast.types.every((t: any) => t._tag === "Literal") ? ast.types.map((t: any) => t.literal).sort() : null

it("generate: names, order, defaults and choices agree with GenerateConfig", async () => {
  const script = path.join(projectRoot, "steps", "generate", "worker.py")
  const py = JSON.parse(await python(["-m", "anneal_worker.describe", script, "GenerateConfig"])).fields as Array<{
    tsName: string; default: unknown; choices: Array<string> | null
  }>
  const schema = generate.definition.params as unknown as Schema.Struct<any>
  const defaults = Schema.decodeUnknownSync(schema as any)({}) as Record<string, unknown>
  expect(Object.keys(schema.fields)).toEqual(py.map((f) => f.tsName))
  for (const f of py) {
    expect({ name: f.tsName, default: defaults[f.tsName] }).toEqual({ name: f.tsName, default: f.default })
    expect(choicesOf((schema.fields[f.tsName] as any).ast)).toEqual(f.choices ? [...f.choices].sort() : null)
  }
})

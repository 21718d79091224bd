/**
 * `anneal steps`: the step reference read from the definitions, and docs/steps.md generated from it
 * (`npm run docs:steps`), which must not be stale.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { projectRoot } from "../../engine/python.ts"
import { builtInKinds, renderStepsMarkdown } from "../../cli/steps.ts"
import { describeKind } from "../../cli/step-reference.ts"
import { lookupKind } from "../../engine/step.ts"
import { annealIndex, cli, tempProject } from "../helpers/project.ts"

describe("the step reference", () => {
  it("docs/steps.md is what `npm run docs:steps` generates from the step definitions today", () => {
    const onDisk = fs.readFileSync(path.join(projectRoot, "docs", "steps.md"), "utf8")
    expect(onDisk, "docs/steps.md is stale: run `npm run docs:steps`").toBe(renderStepsMarkdown(builtInKinds()))
  })

  it("describes every built-in kind's params with a type, a default and a doc", () => {
    const kinds = builtInKinds().map((d) => d.kind)
    expect(kinds).toEqual(expect.arrayContaining(["clean", "dedup", "pretrain", "sft", "sft-lora", "dpo", "eval", "merge", "upscale"]))
    for (const def of builtInKinds()) {
      for (const p of describeKind(def).params) {
        expect(p.doc, `${def.kind}.${p.name} has no doc`).not.toBe("")
      }
    }
    const sft = describeKind(lookupKind("sft")!)
    expect(sft.params.find((p) => p.name === "maxLength")).toMatchObject({ type: "integer (> 0)", default: "512" })
    expect(sft.params.find((p) => p.name === "saveSteps")).toMatchObject({ executionOnly: true })
    expect(sft.presets?.columns).toEqual(["no preset", "platypus"])
    expect(sft.presets?.rows.find((r) => r.param === "loraR")?.values).toEqual(["8", "16"])
    expect(sft.inputs.map((i) => i.name)).toEqual(["model", "data"])
    expect(sft.output).toBe("model")
  })

  it("every kind names its params in camelCase, nested fields included", () => {
    for (const def of builtInKinds()) {
      for (const p of describeKind(def).params) {
        expect(p.name, def.kind).toMatch(/^[a-z][A-Za-z0-9]*$/)
        // nested struct fields as the type prints them: `{ layerRange: ...; baseModel?: ... }`
        for (const [, field] of p.type.matchAll(/[{;] (\w+)\??:/g)) expect(field, `${def.kind}.${p.name}`).toMatch(/^[a-z][A-Za-z0-9]*$/)
      }
    }
  })
})

describe("anneal steps", () => {
  it("lists the kinds, prints one kind, and refuses an unknown one with exit 2", async () => {
    const list = await cli(["steps"])
    expect(list.exitCode, list.stderr).toBe(0)
    expect(list.stdout).toMatch(/^ {2}sft-lora +supervised fine-tuning with LoRA/m)

    const sft = await cli(["steps", "sft"])
    expect(sft.exitCode, sft.stderr).toBe(0)
    expect(sft.stdout).toContain("loraR: integer (> 0) | null  [default null]")
    expect(sft.stdout).toContain("  data: dataset")
    expect(sft.stdout).toMatch(/resources: 1 GPU \(CPU with --allow-cpu\)/)
    expect(sft.stdout).toMatch(/learningRate +0\.0002 {2}\| {2}0\.0004/)

    // what `npm run docs:steps` writes
    const markdown = await cli(["steps", "--markdown"])
    expect(markdown.stdout + "\n").toBe(fs.readFileSync(path.join(projectRoot, "docs", "steps.md"), "utf8"))

    const bad = await cli(["steps", "sfft"])
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr.trim().split("\n")).toHaveLength(1)
    expect(bad.stderr).toMatch(/unknown step kind "sfft"; known: clean, /)
  })

  it("knows a recipe's custom kinds with --recipe", async () => {
    const p = tempProject()
    p.write("words.txt", "one\n")
    p.write("recipe.ts", `
import { defineStep, Port, recipe, Schema, seedParam, source, withDefault } from ${JSON.stringify(annealIndex)}
export const shout = defineStep({
  kind: "shout", version: 1, description: "upper-cases files",
  params: Schema.Struct({ times: withDefault(Schema.Int, 2).annotate({ description: "how loud" }), seed: seedParam() }),
  inputs: { data: Port.files() }, output: Port.files(),
  run: () => {}
})
export default recipe("custom", () => { shout({ data: source.files("words.txt") }) })
`)
    const r = await cli(["steps", "shout", "--recipe", p.file("recipe.ts")])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toContain("shout (version 1, in-process TS): upper-cases files")
    expect(r.stdout).toContain("times: integer  [default 2]\n      how loud")
    expect(r.stdout).toContain("seed: integer  [default 0]")
  })
})

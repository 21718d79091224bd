/**
 * Bad inputs to the model-surgery steps, through the CLI: a merge whose inputs do not hold the same
 * tensors (whichever input lacks one), with the same shapes and dtypes; an upscale whose slices
 * stack layers that do not match; and method parameters a method requires, which `plan` refuses
 * before anything runs. Each case asserts the exit code, a one-line message naming the step, the
 * param or the tensor and the model, and that no artifact was added to the store.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ModelWriter } from "../../../steps/model/safetensors/writer.ts"
import { projectRoot } from "../../../engine/python.ts"
import { annealIndex, cli, ranSteps, statuses, stepEvents, storeSnapshot, tempProject } from "../../helpers/project.ts"
import type { TempProject } from "../../helpers/project.ts"

let project: TempProject

interface TensorSpec {
  readonly name: string
  readonly shape?: ReadonlyArray<number>
  readonly dtype?: "F32" | "I32"
}

const layerNames = (layers: number): Array<string> =>
  Array.from({ length: layers }, (_, i) => [`model.layers.${i}.mlp.up_proj.weight`, `model.layers.${i}.self_attn.q_proj.weight`]).flat()

/** A small Llama-shaped model: `layers` layers of [4, 8] float32 tensors, with changes. */
const writeModel = async (
  rel: string,
  options: { readonly layers?: number; readonly add?: ReadonlyArray<TensorSpec>; readonly drop?: ReadonlyArray<string>; readonly change?: ReadonlyArray<TensorSpec> } = {}
): Promise<void> => {
  const layers = options.layers ?? 3
  const dir = project.file(rel)
  fs.mkdirSync(dir, { recursive: true })
  const names = ["model.embed_tokens.weight", ...layerNames(layers), "model.norm.weight"].filter((n) => !(options.drop ?? []).includes(n))
  const specs: Array<TensorSpec> = [...names.map((name) => options.change?.find((c) => c.name === name) ?? { name }), ...(options.add ?? [])]
  const tensors = specs.map((t) => ({ name: t.name, dtype: t.dtype ?? "F32", shape: [...(t.shape ?? [4, 8])] }))
  const w = ModelWriter.create(dir, tensors)
  for (const [i, t] of tensors.entries()) {
    const n = t.shape.reduce((a, b) => a * b, 1)
    const v = t.dtype === "F32" ? new Float32Array(n).map((_, j) => Math.sin(i + j * 0.3)) : new Int32Array(n).map((_, j) => j)
    await w.write(new Uint8Array(v.buffer))
  }
  await w.finish()
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "llama", num_hidden_layers: layers }))
}

const recipe = (name: string, body: string): string =>
  project.write(`${name}.ts`, `
import { recipe, source, merge, upscale } from ${JSON.stringify(annealIndex)}
export default recipe(${JSON.stringify(name)}, () => {
  const base = source.model("models/base")
  const a = source.model("models/a")
${body}
})
`)

const ties = (b: string) => `  merge({ models: [a, source.model(${JSON.stringify(b)})], base }, { method: "ties", parameters: { weight: 0.5, density: 0.5 } }, { id: "ties" })`

/** Runs a recipe expected to fail in its one step; returns the step's error line and checks the store. */
const runFailing = async (file: string, step: string): Promise<string> => {
  const store = path.join(project.dir, `store-${path.basename(file, ".ts")}`)
  const r = await cli(["run", file, "--json", "--store", store])
  expect(r.exitCode, r.stderr).toBe(1)
  expect(statuses(r.events)[step]).toBe("failed")
  const failed = stepEvents(r.events).find((e) => e.step === step)!
  const error = (failed as { error?: string }).error ?? ""
  expect(error.split("\n")).toHaveLength(1)
  expect(ranSteps(r.events)).toEqual([])
  // nothing was committed: the store holds no artifact and no staging leftovers
  const snap = JSON.parse(storeSnapshot(store)) as { artifacts: Array<string>; staging: Array<string> }
  expect(snap.artifacts.filter((a) => !a.startsWith("."))).toEqual([])
  expect(snap.staging).toEqual([])
  return error
}

/** Runs `plan` on a recipe that must be refused at load: exit 2, one line on stderr, store untouched. */
const planRefused = async (file: string): Promise<string> => {
  const store = path.join(project.dir, `store-plan-${path.basename(file, ".ts")}`)
  const before = storeSnapshot(store)
  const r = await cli(["plan", file, "--store", store])
  expect(r.exitCode, r.stdout + r.stderr).toBe(2)
  const lines = r.stderr.trim().split("\n")
  expect(lines).toHaveLength(1)
  expect(storeSnapshot(store)).toBe(before)
  return lines[0]!
}

beforeAll(async () => {
  project = tempProject("anneal-surgery-checks-")
  await writeModel("models/base")
  await writeModel("models/a")
  await writeModel("models/same")
  // lm_head only in the second input: before, the first input's names drove the merge and it vanished
  await writeModel("models/extra-head", { add: [{ name: "lm_head.weight" }] })
  await writeModel("models/extra-layer-tensor", { add: [{ name: "model.layers.1.mlp.gate_proj.weight" }] })
  await writeModel("models/missing-norm", { drop: ["model.norm.weight"] })
  await writeModel("models/wide", { change: [{ name: "model.layers.2.mlp.up_proj.weight", shape: [4, 16] }] })
  await writeModel("models/int", { change: [{ name: "model.norm.weight", dtype: "I32" }] })
  await writeModel("models/hidden16", { change: layerNames(3).map((name) => ({ name, shape: [8, 16] })) })
  await writeModel("models/gap", { drop: ["model.layers.1.self_attn.q_proj.weight"] })
}, 60_000)

afterAll(() => {
  if (project !== undefined) fs.rmSync(project.dir, { recursive: true, force: true })
})

describe("merge refuses inputs that do not hold the same tensors", () => {
  it("merges inputs that match (the control)", async () => {
    const r = await cli(["run", recipe("control", ties("models/same")), "--json", "--store", path.join(project.dir, "store-control")])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(ranSteps(r.events)).toEqual(["ties"])
  }, 60_000)

  it("a tensor only a later input has (missing from the first)", async () => {
    const error = await runFailing(recipe("extra-head", ties("models/extra-head")), "ties")
    expect(error).toMatch(/tensor "lm_head\.weight" is in models\[1\] \(.*\) but missing from models\[0\]/)
  }, 60_000)

  it("a layer tensor only a later input has", async () => {
    const error = await runFailing(recipe("extra-layer", ties("models/extra-layer-tensor")), "ties")
    expect(error).toMatch(/tensor "model\.layers\.1\.mlp\.gate_proj\.weight" is in models\[1\] .* but missing from models\[0\]/)
  }, 60_000)

  it("a tensor the first input has and a later one lacks", async () => {
    const error = await runFailing(recipe("missing-norm", ties("models/missing-norm")), "ties")
    expect(error).toMatch(/tensor "model\.norm\.weight" is in models\[0\] .* but missing from models\[1\]/)
  }, 60_000)

  it("a shape that differs", async () => {
    const error = await runFailing(recipe("wide", ties("models/wide")), "ties")
    expect(error).toMatch(/tensor "model\.layers\.2\.mlp\.up_proj\.weight": shape \[4,16\] in models\[1\] .* differs from \[4,8\] in models\[0\]/)
  }, 60_000)

  it("a dtype that differs (integer vs float)", async () => {
    const error = await runFailing(recipe("int", ties("models/int")), "ties")
    expect(error).toMatch(/tensor "model\.norm\.weight": dtype I32 in models\[1\] .* differs from F32 in models\[0\]/)
  }, 60_000)
})

describe("upscale refuses slices whose layers do not match", () => {
  it("stacks layers of a model with another hidden size", async () => {
    const file = recipe("frank", `  const h = source.model("models/hidden16")
  upscale({ models: [a, h] }, { slices: [{ model: 0, layerRange: [0, 2] }, { model: 1, layerRange: [1, 3] }] }, { id: "frank" })`)
    const error = await runFailing(file, "frank")
    expect(error).toMatch(/tensor "model\.layers\.1\.mlp\.up_proj\.weight" of models\[1\] .* has shape \[8,16\], but "model\.layers\.0\.mlp\.up_proj\.weight" of models\[0\] .* has \[4,8\]/)
  }, 60_000)

  it("a layer that lacks a tensor the other layers have", async () => {
    const file = recipe("gap", `  const g = source.model("models/gap")
  upscale({ models: [g] }, { drop: 1 }, { id: "dus" })`)
    const error = await runFailing(file, "dus")
    expect(error).toMatch(/layer 1 of models\[0\] .* has no tensor "model\.layers\.1\.self_attn\.q_proj\.weight", unlike layer 0/)
  }, 60_000)
})

describe("method parameters are checked when the recipe loads", () => {
  const cases: ReadonlyArray<readonly [string, string, RegExp]> = [
    ["ties-no-weight", `  merge({ models: [a], base }, { method: "ties" }, { id: "ties" })`,
      /^anneal: step "ties" \(.*ties-no-weight\.ts:\d+\) \(merge\): param models\.0\.parameters\.weight: ties requires a "weight" for every input but the base, and none is given for models\[0\]/],
    ["ties-one-weight", `  merge({ models: [a, a], base }, { method: "ties", models: [{ parameters: { weight: 1 } }, { parameters: { density: 0.5 } }] }, { id: "ties" })`,
      /param models\.1\.parameters\.weight: ties requires a "weight"/],
    ["dare-slices", `  merge({ models: [a], base }, { method: "dare_ties", slices: [{ sources: [{ model: 0, layerRange: [0, 3] }, { model: "base", layerRange: [0, 3] }] }] }, { id: "dare" })`,
      /step "dare" .*param slices\.0\.sources\.0\.parameters\.weight: dare_ties requires a "weight"/],
    ["linear-base", `  merge({ models: [a], base }, { method: "linear", models: [{ parameters: { weight: 1 } }] }, { id: "lin" })`,
      /step "lin" .*param baseParameters\.weight: linear requires a "weight" for every input, and none is given for base/],
    ["slerp-no-t", `  merge({ models: [a], base }, { method: "slerp" }, { id: "slerp" })`,
      /step "slerp" .*param parameters\.t: slerp requires "t", and none is given/],
    ["slerp-no-base", `  merge({ models: [a, a] }, { method: "slerp", parameters: { t: 0.5 } }, { id: "slerp" })`,
      /step "slerp" .*param method: slice 1: slerp needs a base model/],
    ["mergekit-ties", `  merge({ models: [a], base }, { mergekit: "merge_method: ties\\nbase_model: base\\nmodels:\\n  - model: a\\n    parameters: {density: 0.5}\\n" }, { id: "mk" })`,
      /step "mk" .*param mergekit: mergekit config: models\[0\]: ties requires a "weight"/],
    ["weights-count", `  merge({ models: [a], base }, { method: "ties", models: [{ parameters: { weight: 1 } }, { parameters: { weight: 1 } }] }, { id: "ties" })`,
      /param models: 2 entries but the models input has 1 handles/],
    ["upscale-drop-two", `  upscale({ models: [a, base] }, { drop: 1 }, { id: "dus" })`,
      /step "dus" .*param drop: drop \(DUS\) takes one model, got 2/],
    ["upscale-index", `  upscale({ models: [a] }, { slices: [{ model: 1, layerRange: [0, 2] }] }, { id: "up" })`,
      /step "up" .*param slices\.0\.model: 1 is not an index into models \(1\)/],
    ["upscale-none", `  upscale({ models: [a] }, {}, { id: "up" })`,
      /step "up" .*give exactly one of drop, slices or mergekit/]
  ]
  for (const [name, body, message] of cases) {
    it(name, async () => {
      expect(await planRefused(recipe(name, body))).toMatch(message)
    }, 60_000)
  }

  it("the recipes that merge or upscale (platypus, solar) pass the check", async () => {
    for (const name of ["platypus", "solar"]) {
      const store = path.join(project.dir, `store-recipe-${name}`)
      const r = await cli(["plan", path.join(projectRoot, "recipes", `${name}.ts`), "--store", store])
      expect(r.exitCode, `${name}: ${r.stderr}`).toBe(0)
    }
  }, 120_000)

  it("the README's headline recipe plans as written", async () => {
    const readme = fs.readFileSync(path.join(projectRoot, "README.md"), "utf8")
    const block = /## A recipe\s+```ts\n([\s\S]*?)```/.exec(readme)![1]!.replace(/from "anneal"/, `from ${JSON.stringify(annealIndex)}`)
    const file = project.write("readme/recipe.ts", block)
    project.write("readme/data/train.jsonl", JSON.stringify({ instruction: "say hi", output: "hi" }) + "\n")
    project.write("readme/data/arc-sample.jsonl", JSON.stringify({ instruction: "2+2?", output: "4" }) + "\n")
    project.write("readme/models/llama-13b/config.json", "{}")
    project.write("readme/models/beluga-13b/config.json", "{}")
    const r = await cli(["plan", file, "--store", path.join(project.dir, "store-readme")])
    expect(r.exitCode, r.stderr).toBe(0)
    // the same block without its merge weights is refused at plan, naming the merge's param
    const bare = project.write("readme/bare.ts", block.replace(/, parameters: \{ weight: 0\.5, density: 0\.5 \}/, ""))
    expect(fs.readFileSync(bare, "utf8")).not.toEqual(block)
    const refused = await cli(["plan", bare, "--store", path.join(project.dir, "store-readme")])
    expect(refused.exitCode).toBe(2)
    expect(refused.stderr).toMatch(/step "merge" .*param models\.0\.parameters\.weight: ties requires a "weight"/)
  }, 60_000)
})

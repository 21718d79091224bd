/**
 * The model-surgery steps inside a real run (the CLI, the store, the cache): a recipe upscales and
 * TIES-merges source models, a rerun is fully cached, a param change reruns only its step, and a bad
 * mergekit config stops the run before anything executes with a one-line error naming the step.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ModelReader } from "../../../steps/model/safetensors/reader.ts"
import { ModelWriter } from "../../../steps/model/safetensors/writer.ts"
import { annealIndex, cli, ranSteps, statuses, tempProject } from "../../helpers/project.ts"
import type { TempProject } from "../../helpers/project.ts"

let project: TempProject

/** A 3-layer model of float32 tensors whose values depend on `offset`. */
const writeModel = async (dir: string, offset: number): Promise<void> => {
  fs.mkdirSync(dir, { recursive: true })
  const names = ["model.embed_tokens.weight", ...[0, 1, 2].flatMap((i) => [`model.layers.${i}.mlp.up_proj.weight`, `model.layers.${i}.self_attn.q_proj.weight`]), "model.norm.weight"]
  const w = ModelWriter.create(dir, names.map((name) => ({ name, dtype: "F32", shape: [4, 8] })))
  for (let t = 0; t < names.length; t++) {
    const v = new Float32Array(32).map((_, i) => Math.sin(i * 0.7 + t) * 0.1 + offset * Math.cos(i * 1.3 + t) * 0.01)
    await w.write(new Uint8Array(v.buffer))
  }
  await w.finish()
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ model_type: "llama", num_hidden_layers: 3 }))
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ model_max_length: 64 }))
}

const recipeText = (density: number, extra = "") => `
import { recipe, source, upscale, merge } from ${JSON.stringify(annealIndex)}
export default recipe("surgery", () => {
  const base = source.model("models/base")
  const a = source.model("models/a")
  const b = source.model("models/b")
  upscale({ models: [base] }, { drop: 1 }, { id: "dus" })
  merge({ models: [a, b], base }, {
    method: "ties",
    models: [{ parameters: { weight: 0.5, density: ${density} } }, { parameters: { weight: 0.5, density: 0.5 } }]
    ${extra}
  }, { id: "ties" })
})
`

beforeAll(async () => {
  project = tempProject("anneal-surgery-")
  await writeModel(project.file("models/base"), 0)
  await writeModel(project.file("models/a"), 1)
  await writeModel(project.file("models/b"), -2)
})

afterAll(() => {
  if (project !== undefined) fs.rmSync(project.dir, { recursive: true, force: true })
})

describe("model surgery in a run", () => {
  it("runs, caches, and reruns only what a param change touches", async () => {
    const file = project.write("surgery.ts", recipeText(0.5))
    const first = await cli(["run", file, "--json", "--store", project.store])
    expect(first.exitCode, first.stderr).toBe(0)
    expect(ranSteps(first.events)).toEqual(["dus", "ties"])

    const again = await cli(["run", file, "--json", "--store", project.store])
    expect(again.exitCode, again.stderr).toBe(0)
    expect(ranSteps(again.events)).toEqual([])

    project.write("surgery.ts", recipeText(0.25))
    const changed = await cli(["run", file, "--json", "--store", project.store])
    expect(changed.exitCode, changed.stderr).toBe(0)
    expect(ranSteps(changed.events)).toEqual(["ties"])
    expect(statuses(changed.events)["dus"]).not.toBe("ran")

    // the committed upscale artifact is a 4-layer model with the donor's tokenizer config
    const artifacts = path.join(project.store, "artifacts")
    const dirs = fs.readdirSync(artifacts).filter((d) => fs.statSync(path.join(artifacts, d)).isDirectory())
    const dus = dirs.map((d) => path.join(artifacts, d)).find((d) => JSON.parse(fs.readFileSync(path.join(d, "config.json"), "utf-8")).num_hidden_layers === 4)
    expect(dus).toBeDefined()
    expect(fs.existsSync(path.join(dus!, "tokenizer_config.json"))).toBe(true)
    const reader = await ModelReader.open(dus!)
    expect(reader.names.filter((n) => n.includes(".layers.")).length).toBe(8)
    await reader.close()
  }, 180_000)

  it("stops on a mergekit config it cannot honour, before running anything", async () => {
    const bad = project.write("bad.ts", `
import { recipe, source, merge } from ${JSON.stringify(annealIndex)}
export default recipe("bad", () => {
  const a = source.model("models/a")
  merge({ models: [a] }, { mergekit: "merge_method: linear\\nmodels:\\n  - model: a\\n    parameters: {weight: 1}\\ntokenizer: {source: base}\\n" }, { id: "mk" })
})
`)
    const r = await cli(["run", bad, "--json", "--store", project.store])
    expect(r.exitCode).toBe(2)
    expect(r.stderr + r.stdout).toMatch(/step "mk".*tokenizer: tokenizer surgery is not supported/)
    expect(ranSteps(r.events)).toEqual([])
  }, 60_000)
})

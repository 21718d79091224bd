/**
 * lora-merge: the folded model computes what PEFT computes with the adapter attached (same logits
 * within float32 tolerance), for plain LoRA on the MLP (Platypus' targets), rsLoRA with per-module
 * ranks and alphas, and LoRA on the embeddings; adapters it cannot fold fail with a clear error.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loraMerge } from "../../../steps/model/index.ts"
import { removeTempDirs, runStep, runTools, tempDir } from "./helpers.ts"

let root: string
const m = (name: string) => path.join(root, name)
const adapters = {
  mlp: ["--r", "4", "--alpha", "8"],
  rslora: ["--r", "8", "--alpha", "16", "--rslora", "--targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--alpha-pattern", "{\"down_proj\": 4}", "--rank-pattern", "{\"q_proj\": 2}"],
  embed: ["--r", "4", "--alpha", "4", "--targets", "embed_tokens,q_proj"]
} as const
type Name = keyof typeof adapters
const names = Object.keys(adapters) as Array<Name>
const read = (f: string) => (JSON.parse(fs.readFileSync(m(f), "utf-8")).logits as Array<Array<Array<number>>>).flat(2)
const maxDiff = (a: Array<number>, b: Array<number>) => Math.max(...a.map((x, i) => Math.abs(x - b[i]!)))

beforeAll(async () => {
  root = tempDir("lora")
  await runTools([
    ["make", m("base"), "--layers", "2", "--hidden", "32", "--seed", "5"],
    ...names.map((n, i) => ["lora", m("base"), m(`adapter-${n}`), "--seed", String(10 + i), ...adapters[n]]),
    ...names.map((n) => ["logits", m("base"), m(`peft-${n}.json`), "--adapter", m(`adapter-${n}`)]),
    ["logits", m("base"), m("base.json")],
    // an adapter made for a deeper model, for the error test
    ["make", m("deeper"), "--layers", "4", "--hidden", "32"],
    ["lora", m("deeper"), m("adapter-deeper"), "--r", "2", "--alpha", "2"]
  ])
  for (const n of names) await runStep(loraMerge, { model: m("base"), adapter: m(`adapter-${n}`) }, {}, { output: m(`folded-${n}`) })
  await runTools(names.map((n) => ["logits", m(`folded-${n}`), m(`folded-${n}.json`)]))
}, 600_000)

afterAll(removeTempDirs)

describe("lora-merge", () => {
  for (const n of names) {
    it(`${n}: the folded model's logits equal base + adapter under PEFT`, () => {
      const folded = read(`folded-${n}.json`)
      const peft = read(`peft-${n}.json`)
      expect(folded.length).toBe(peft.length)
      expect(maxDiff(folded, peft)).toBeLessThan(1e-4)
      // the adapter matters: without it the logits are elsewhere
      expect(maxDiff(read("base.json"), peft)).toBeGreaterThan(1e-2)
    })
  }

  it("the output is a complete model directory", () => {
    const files = fs.readdirSync(m("folded-mlp")).sort()
    expect(files).toEqual(["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
  })

  it("refuses DoRA adapters and adapters for modules the base lacks, naming them", async () => {
    const dora = tempDir("dora")
    fs.cpSync(m("adapter-mlp"), dora, { recursive: true })
    const cfg = JSON.parse(fs.readFileSync(path.join(dora, "adapter_config.json"), "utf-8"))
    fs.writeFileSync(path.join(dora, "adapter_config.json"), JSON.stringify({ ...cfg, use_dora: true }))
    await expect(runStep(loraMerge, { model: m("base"), adapter: dora }, {})).rejects.toThrow(/adapter_config.json: DoRA adapters/)

    // an adapter made for a deeper model: its layers 2 and 3 do not exist in a 2-layer base
    await expect(runStep(loraMerge, { model: m("base"), adapter: m("adapter-deeper") }, {}))
      .rejects.toThrow(/adapter_model.safetensors: tensor ".*layers\.[23]\..*lora_A.weight": adapts ".*", which the base model does not have/)
  })
})

/**
 * sft on a tiny Llama: LoRA changes only the targeted modules (merged model) and saves only adapter
 * tensors (sft-lora); full fine-tuning changes the base weights. Bad input fails before a model loads.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { sft, sftLora } from "../../../steps/train/index.ts"
import { makeFixtures, modelTools, runWorker } from "./helpers.ts"

let fx: string
beforeAll(async () => {
  fx = await makeFixtures()
})

const mlp = ["gate_proj", "up_proj", "down_proj"]
const quick = { maxSteps: 6, microBatchSize: 4, learningRate: 1e-2, loraDropout: 0 }

describe("sft", () => {
  it("LoRA on gate/up/down (merged): only those weights differ from the base", async () => {
    const run = await runWorker(sft, {
      inputs: { model: path.join(fx, "base"), data: path.join(fx, "instructions") },
      params: { ...quick, loraTargetModules: mlp }
    })
    expect(run.error).toBeUndefined()
    expect(run.exitCode).toBe(0)
    expect(Number(run.metrics.trainable_percent)).toBeLessThan(50)
    const d = await modelTools("diff", path.join(fx, "base"), run.output)
    expect(d.changed.length).toBeGreaterThan(0)
    expect(d.changed.every((k: string) => mlp.some((m) => k.includes(`mlp.${m}.weight`)))).toBe(true)
    expect(d.same).toContain("model.layers.0.self_attn.q_proj.weight")
    expect(d.same).toContain("model.embed_tokens.weight")
  }, 600_000)

  it("sft-lora saves only adapter tensors of the targeted modules, trained away from their init", async () => {
    const run = await runWorker(sftLora, {
      inputs: { model: path.join(fx, "base"), data: path.join(fx, "instructions") },
      params: { ...quick, preset: "platypus", warmupSteps: 0 }
    })
    expect(run.error).toBeUndefined()
    expect(run.exitCode).toBe(0)
    const config = JSON.parse(fs.readFileSync(path.join(run.output, "adapter_config.json"), "utf8"))
    expect([...config.target_modules].sort()).toEqual([...mlp].sort())
    expect(config.r).toBe(16)
    expect(config.lora_alpha).toBe(16)
    const a = await modelTools("adapter", run.output)
    expect(a.names.length).toBe(2 * 3 * 2) // lora_A + lora_B, 3 modules, 2 layers
    expect(a.names.every((k: string) => /lora_[AB]/.test(k) && mlp.some((m) => k.includes(m)))).toBe(true)
    expect(a.nonzero_b.length).toBe(6)
  }, 600_000)

  it("full fine-tuning with NEFTune changes the base weights, attention included", async () => {
    const run = await runWorker(sft, {
      inputs: { model: path.join(fx, "base"), data: path.join(fx, "instructions") },
      params: { ...quick, adapter: "full", learningRate: 1e-3, neftuneNoiseAlpha: 5 }
    })
    expect(run.error).toBeUndefined()
    expect(run.exitCode).toBe(0)
    const d = await modelTools("diff", path.join(fx, "base"), run.output)
    expect(d.changed).toContain("model.layers.0.self_attn.q_proj.weight")
    expect(d.changed).toContain("model.layers.1.mlp.down_proj.weight")
    expect(fs.existsSync(path.join(run.output, "tokenizer.json"))).toBe(true)
  }, 600_000)
})

describe("sft refuses bad input before loading a model", () => {
  const base = () => ({ model: path.join(fx, "base"), data: path.join(fx, "instructions") })

  it("an unknown LoRA target module, naming the model's projections", async () => {
    const r = await runWorker(sft, { inputs: base(), params: { loraTargetModules: ["gate_proj", "w_gate"] } })
    expect(r.exitCode).toBe(2)
    expect(r.error).toMatch(/sft: param loraTargetModules: w_gate not in the model.*q_proj/)
  }, 300_000)

  it("a preference dataset, a missing base model, r = 0 and a negative lr given straight to the worker", async () => {
    const wrong = await runWorker(sft, { inputs: { ...base(), data: path.join(fx, "preferences") } })
    expect(wrong.exitCode).toBe(2)
    expect(wrong.error).toMatch(/sft: input 'data'.*'preference'/)
    const missing = await runWorker(sft, { inputs: { ...base(), model: path.join(fx, "missing") } })
    expect(missing.error).toMatch(/sft: input 'model'.*not found/)
    const r0 = await runWorker(sft, { inputs: base(), rawParams: { loraR: 0 } })
    expect(r0.exitCode).toBe(2)
    expect(r0.error).toBe("sft: param loraR must be > 0, got 0")
    const lr = await runWorker(sft, { inputs: base(), rawParams: { learningRate: -1 } })
    expect(lr.error).toBe("sft: param learningRate must be > 0, got -1")
  }, 300_000)
})

/**
 * QLoRA on CPU: `quantize` writes a bitsandbytes NF4 (double-quantized) base, `sft-lora` trains a LoRA
 * adapter on it, and PEFT loads the adapter back onto that 4-bit base. bitsandbytes' CPU backend needs
 * layer widths divisible by 64 for 4-bit: the quantize tests' Llama (hidden 256, intermediate 512) has them.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, expect, it } from "vitest"
import { quantize } from "../../../steps/quantize/index.ts"
import { sftLora } from "../../../steps/train/index.ts"
import { makeQuantizeModels, type QuantizeModels } from "../quantize/helpers.ts"
import { python, runWorker } from "./helpers.ts"

let models: QuantizeModels
beforeAll(async () => {
  models = await makeQuantizeModels()
}, 600_000)

it("sft-lora trains an adapter on an NF4 base from quantize, and the adapter loads back onto that base", async () => {
  const nf4 = await runWorker(quantize, { inputs: { model: models.llama }, params: { format: "bnb", type: "nf4" } })
  expect(nf4.error).toBeUndefined()
  expect(nf4.exitCode).toBe(0)
  expect(JSON.parse(fs.readFileSync(path.join(nf4.output, "config.json"), "utf8")).quantization_config)
    .toMatchObject({ load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true })

  const run = await runWorker(sftLora, {
    inputs: { model: nf4.output, data: path.join(models.fixtures, "instructions") },
    params: { maxSteps: 4, microBatchSize: 4, learningRate: 1e-2, loraDropout: 0, warmupSteps: 0, loraTargetModules: ["q_proj", "v_proj"] }
  })
  expect(run.error).toBeUndefined()
  expect(run.exitCode).toBe(0)
  const loss = Number(run.metrics.train_loss)
  expect(Number.isFinite(loss) && loss > 0, `train_loss ${run.metrics.train_loss}`).toBe(true)

  // only the adapter is saved, pointing at the targeted modules
  const files = fs.readdirSync(run.output)
  expect(files).toContain("adapter_model.safetensors")
  expect(files.some((f) => f.endsWith(".bin"))).toBe(false)
  const config = JSON.parse(fs.readFileSync(path.join(run.output, "adapter_config.json"), "utf8"))
  expect([...config.target_modules].sort()).toEqual(["q_proj", "v_proj"])

  const loaded = JSON.parse((await python([path.join(import.meta.dirname, "qlora_load.py"), nf4.output, run.output])).trim().split("\n").at(-1)!)
  expect(loaded.base_linear).toBe("Linear4bit")
  expect(loaded.lora_layers).toBe(4) // q_proj and v_proj in 2 layers
  expect(loaded.finite).toBe(true)
  expect(loaded.lora_b_norm).toBeGreaterThan(0) // B starts at zero: training moved it
  expect(loaded.max_logit_diff).toBeGreaterThan(0) // the adapter changes the 4-bit base's outputs
}, 600_000)

/**
 * quantize: what a user of each format notices. GGUF files load and generate in llama.cpp (its own
 * server) with the tokenizer embedded; q8_0 keeps perplexity within 0.5% of f16 on held-out text
 * (llama-perplexity's measure, by llama-loglik); bitsandbytes 4-bit output reloads with transformers as a 4-bit model; eval
 * scores a GGUF with llama.cpp as transformers scores its source; and what cannot be quantized is
 * refused before any work, naming the problem.
 *
 * llama.cpp is built by `anneal setup --with llama-cpp`, which npm test runs before vitest.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { ensureLlamaCpp, findLlamaLoglik } from "../../../engine/components/llama-cpp.ts"
import { startLlamaServer } from "../../../engine/components/llama-server.ts"
import { loadRecipe } from "../../../engine/load.ts"
import { projectRoot } from "../../../engine/python.ts"
import { quantize } from "../../../steps/quantize/index.ts"
import { evaluate } from "../../../steps/train/eval/index.ts"
import { python, runWorker, tempDir } from "../train/helpers.ts"
import { here, makeQuantizeModels, writeSafetensors } from "./helpers.ts"
import type { QuantizeModels } from "./helpers.ts"

let models: QuantizeModels
/** the q8_0 GGUF the perplexity test makes; the eval test reuses it (or makes its own when run alone) */
let q8Output: string | undefined
/**
 * The resume dir of every GGUF run of the Llama. The worker keeps its f16 conversion there
 * (gguf/model-f16.gguf) and starts from it when it is there, as a retried attempt does: the Llama is
 * converted once, by the first of these tests to run (or by each one run alone), instead of four times
 * (5-7 s of converter each), and every GGUF of it is made from the same f16 file.
 */
const llamaGguf = tempDir("anneal-quantize-llama-gguf-")

beforeAll(async () => {
  models = await makeQuantizeModels()
}, 1_800_000)

/** A directory that looks like a model (config.json, one zero-filled tensor of `dtype`). */
const fakeModel = (name: string, config: Record<string, unknown>, dtype: string): string => {
  const dir = path.join(tempDir("anneal-quantize-bad-"), name)
  fs.mkdirSync(dir)
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config))
  writeSafetensors(path.join(dir, "model.safetensors"), { "model.embed_tokens.weight": { dtype, shape: [4, 4] } })
  return dir
}

const expectRefused = async (model: string, params: Record<string, unknown>, message: RegExp): Promise<void> => {
  const r = await runWorker(quantize, { inputs: { model }, params })
  expect(r.error, JSON.stringify(params)).toMatch(message)
  expect(r.exitCode).toBe(2)
  expect(fs.readdirSync(r.output)).toEqual([])
}

const readReport = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, "quantize.json"), "utf8"))

describe("quantize refuses what it cannot do, before doing anything", () => {
  it("a type that is not the format's, or gptq without calibration data, fails when the recipe loads", async () => {
    const dir = tempDir("anneal-quantize-recipe-")
    const write = (name: string, call: string): string => {
      const file = path.join(dir, `${name}.ts`)
      fs.writeFileSync(file, [
        `import { quantize, recipe, source } from ${JSON.stringify(path.join(projectRoot, "index.ts"))}`,
        `export default recipe("q", () => { const model = source.model(${JSON.stringify(models.llama)}); ${call} })`
      ].join("\n"))
      return file
    }
    await expect(loadRecipe(write("bnb-gguf-type", `quantize({ model }, { format: "bnb", type: "q4_K_M" })`)))
      .rejects.toThrow(/step "quantize".*param type: "q4_K_M" is not a bnb type \(one of nf4, fp4, int8\)/)
    await expect(loadRecipe(write("gptq-no-data", `quantize({ model }, { format: "gptq" })`)))
      .rejects.toThrow(/param format: format gptq needs the calibration input/)
    await expect(loadRecipe(write("awq-no-data", `quantize({ model }, { format: "awq" })`)))
      .rejects.toThrow(/param format: format awq needs the calibration input/)
    await expect(loadRecipe(write("bad-type", `quantize({ model }, { type: "q4_K_X" as any })`)))
      .rejects.toThrow(/type/)
  })

  it("non-float weights, an already quantized model or a model that is not a causal LM fail at the start, naming it", async () => {
    const llama = { architectures: ["LlamaForCausalLM"], model_type: "llama" }
    await expectRefused(fakeModel("bert", { architectures: ["BertForMaskedLM"], model_type: "bert" }, "F32"), { format: "bnb" },
      /architecture BertForMaskedLM is not a causal LM/)
    await expectRefused(fakeModel("int8", llama, "I8"), { format: "bnb", type: "int8" },
      /unsupported weight dtype I8 \(e\.g\. model\.embed_tokens\.weight\)/)
    await expectRefused(fakeModel("bnb", { ...llama, quantization_config: { quant_method: "bitsandbytes" } }, "F32"),
      { format: "gptq" }, /is already quantized \(bitsandbytes\)/)
    await expectRefused(fakeModel("narrow", { ...llama, hidden_size: 32, intermediate_size: 64 }, "F32"), { format: "bnb" },
      /bitsandbytes 4-bit on CPU needs layer widths divisible by 64; hidden_size is 32 \(use int8, or a GPU\)/)
    const r = await runWorker(quantize, {
      inputs: { model: fakeModel("grouped", { ...llama, hidden_size: 96, intermediate_size: 256 }, "F32"), calibration: models.heldOut },
      params: { format: "awq", groupSize: 64 }
    })
    expect(r.error).toBe("quantize: input 'model': format awq with groupSize 64 needs layer widths divisible by it; hidden_size is 96 (use a divisor, or -1)")
  }, 120_000)
})

describe("GGUF through llama.cpp", () => {
  // built once per machine; npm test's setup has built it already, so this only looks
  beforeAll(() => ensureLlamaCpp(), 3_600_000)

  it("an architecture llama.cpp's converter is not used for here, or non-float weights, fail at the start", async () => {
    await expectRefused(fakeModel("bert", { architectures: ["BertForMaskedLM"], model_type: "bert" }, "F32"),
      { format: "gguf", type: "q8_0" },
      /architecture BertForMaskedLM is not supported for GGUF here \(supported: LlamaForCausalLM, .*PhiForCausalLM/)
    await expectRefused(fakeModel("bf16", { architectures: ["LlamaForCausalLM"], model_type: "llama" }, "U8"),
      { format: "gguf", type: "f16" }, /unsupported weight dtype U8/)
  }, 120_000)

  it("q8_0 stays within 0.5% of f16 perplexity on held-out text, at about half the size", async () => {
    const r = await runWorker(quantize, {
      inputs: { model: models.llama, heldOut: models.heldOut }, params: { format: "gguf", type: "q8_0", perplexityCtx: 64 },
      resumeDir: llamaGguf
    })
    expect(r.error).toBeUndefined()
    expect(r.exitCode).toBe(0)
    expect(fs.readdirSync(r.output).sort()).toEqual(["model.gguf", "quantize.json"])
    const report = readReport(r.output)
    expect(report.perplexity.tool).toBe("llama.cpp (llama-perplexity's measure)")
    // a trained model: far from the 320 of a uniform guess over the vocabulary
    expect(report.perplexity.reference).toBeLessThan(20)
    expect(Math.abs(report.perplexity.ratio - 1)).toBeLessThanOrEqual(0.005)
    expect(report.size_bytes.quantized / report.size_bytes.reference).toBeLessThan(0.6)
    expect(r.metrics.perplexity_ratio).toBeCloseTo(report.perplexity.ratio, 10)
    q8Output = r.output
    // the q8_0 file loads and generates in llama.cpp's server, tokenizing as the source tokenizer does
    const server = await startLlamaServer({ model: path.join(r.output, "model.gguf"), ctxSize: 256, threads: 1 })
    try {
      const text = "Lesson 230: the snow is often white."
      const tokens = await (await fetch(`${server.url}/tokenize`, {
        method: "POST", body: JSON.stringify({ content: text, add_special: false })
      })).json() as { tokens: Array<number> }
      // transformers' ids for the text, from the saved tokenizer (make_model.py records them)
      expect(models.sourceIds[text], "make_model.py's TOKENIZED lists the text").toBeDefined()
      expect(tokens.tokens).toEqual(models.sourceIds[text])
      const completion = await (await fetch(`${server.url}/v1/completions`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "Lesson 231: the grass is", max_tokens: 12, temperature: 0 })
      })).json() as { choices: Array<{ text: string }> }
      // what the training text teaches: "... is often <color>. We count ..."
      expect(completion.choices[0]!.text).toMatch(/^ often (red|blue|green|yellow|black|white)\./)
    } finally {
      await server.stop()
    }
  }, 600_000)

  it("q4_K_M of a Llama and q8_0 of a Phi convert, quantize and run; too little held-out text is refused", async () => {
    const llama = await runWorker(quantize, {
      inputs: { model: models.llama, heldOut: models.heldOut }, params: { format: "gguf", type: "q4_K_M", perplexityCtx: 64 },
      resumeDir: llamaGguf
    })
    expect(llama.error).toBeUndefined()
    const report = readReport(llama.output)
    // llama.cpp's own table puts q4_K_M a few percent above f16 on real models; a tiny model suffers more
    expect(report.perplexity.ratio).toBeGreaterThan(1)
    expect(report.perplexity.ratio).toBeLessThan(1.15)
    expect(report.size_bytes.quantized / report.size_bytes.reference).toBeLessThan(0.45)
    // held-out text shorter than two windows: one line naming the input and what to change
    const short = await runWorker(quantize, {
      inputs: { model: models.llama, heldOut: models.heldOut }, params: { format: "gguf", type: "f16", perplexityCtx: 4096 },
      resumeDir: llamaGguf
    })
    expect(short.exitCode).toBe(2)
    expect(short.error).toMatch(/^quantize: input 'heldOut': perplexity of model-f16\.gguf: the text is \d+ tokens; perplexity with a context of 4096 needs at least 8192 \(lower perplexityCtx or give more text\)$/)
    const phi = await runWorker(quantize, { inputs: { model: models.phi }, params: { format: "gguf", type: "q8_0" } })
    expect(phi.error).toBeUndefined()
    expect(readReport(phi.output).architecture).toBe("PhiForCausalLM")
    const server = await startLlamaServer({ model: path.join(phi.output, "model.gguf"), ctxSize: 128, threads: 1 })
    try {
      const completion = await (await fetch(`${server.url}/v1/completions`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "Lesson", max_tokens: 4, temperature: 0 })
      })).json() as { usage: { completion_tokens: number } }
      expect(completion.usage.completion_tokens).toBe(4)
    } finally {
      await server.stop()
    }
  }, 600_000)
})

describe("bitsandbytes", () => {
  it("nf4 with double quantization is saved with its quantization_config and reloads with transformers", async () => {
    const r = await runWorker(quantize, {
      inputs: { model: models.llama, heldOut: models.heldOut }, params: { format: "bnb", type: "nf4", perplexityCtx: 64 }
    })
    expect(r.error).toBeUndefined()
    expect(r.exitCode).toBe(0)
    const config = JSON.parse(fs.readFileSync(path.join(r.output, "config.json"), "utf8"))
    expect(config.quantization_config).toMatchObject({
      quant_method: "bitsandbytes", load_in_4bit: true, bnb_4bit_quant_type: "nf4", bnb_4bit_use_double_quant: true
    })
    const report = readReport(r.output)
    expect(report.perplexity.ratio).toBeLessThan(1.2)
    const reloaded = JSON.parse(await python([path.join(here, "reload.py"), r.output]))
    expect(reloaded.linear).toBe("Linear4bit")
    expect(reloaded.generated.length).toBeGreaterThan(0)
  }, 600_000)
})

describe("AWQ through llm-compressor", () => {
  it("w4a16 on CPU is saved as compressed-tensors, reloads with transformers and keeps perplexity near the source's", async () => {
    const r = await runWorker(quantize, {
      inputs: { model: models.llama, calibration: path.join(models.fixtures, "text"), heldOut: models.heldOut },
      params: { format: "awq", calibrationSamples: 16, calibrationSeqLength: 128, perplexityCtx: 64 }
    })
    expect(r.error).toBeUndefined()
    expect(r.exitCode).toBe(0)
    const config = JSON.parse(fs.readFileSync(path.join(r.output, "config.json"), "utf8"))
    expect(config.quantization_config.quant_method).toBe("compressed-tensors")
    expect(config.quantization_config.config_groups.group_0.weights).toMatchObject({ num_bits: 4, group_size: 128, symmetric: true, type: "int" })
    const report = readReport(r.output)
    // the weights did change (a ratio of exactly 1 would mean nothing was quantized); measured 0.998 here
    expect(report.perplexity.ratio).not.toBe(1)
    expect(Math.abs(report.perplexity.ratio - 1)).toBeLessThan(0.1)
    // embeddings and lm_head stay fp32: 4-bit layers bring the whole to ~23% here
    expect(report.size_bytes.quantized / report.size_bytes.reference).toBeLessThan(0.35)
    const reloaded = JSON.parse(await python([path.join(here, "reload.py"), r.output]))
    expect(reloaded.generated).toMatch(/^ often (red|blue|green|yellow|black|white)\b/)
  }, 600_000)
})

describe("eval scores GGUF models with llama.cpp", () => {
  let loglik: string
  beforeAll(async () => {
    const llama = await ensureLlamaCpp()
    loglik = findLlamaLoglik(llama)!
  }, 3_600_000)

  const samples = (dir: string): Array<{ doc_id: number; loglikelihoods: Array<number>; acc: number }> =>
    fs.readFileSync(path.join(dir, "samples.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))

  it("an f16 GGUF scores as its safetensors source does (same answers, log-likelihoods within 0.02), and q8_0 scores too", async () => {
    const f16 = await runWorker(quantize, { inputs: { model: models.llama }, params: { format: "gguf", type: "f16" }, resumeDir: llamaGguf })
    expect(f16.error).toBeUndefined()
    q8Output ??= (await runWorker(quantize, {
      inputs: { model: models.llama }, params: { format: "gguf", type: "q8_0" }, resumeDir: llamaGguf
    })).output
    const mc = path.join(models.fixtures, "mc")
    const evalOf = (model: string) => runWorker(evaluate, { inputs: { model, benchmarks: [mc] }, params: { logSamples: true } })
    const [fp, a, b] = [await evalOf(models.llama), await evalOf(f16.output), await evalOf(q8Output!)]
    for (const r of [fp, a, b]) expect(r.error).toBeUndefined()
    const read = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, "report.json"), "utf8"))
    expect(read(fp.output).weights).toBe("full precision")
    expect(read(a.output).weights).toMatch(/^gguf model\.gguf \(llama\.cpp [0-9a-f]{8}\)$/)
    const [ref, half, q8s] = [samples(fp.output), samples(a.output), samples(b.output)]
    expect(ref.length).toBe(12)
    expect(half.map((s) => s.doc_id)).toEqual(ref.map((s) => s.doc_id))
    // f16 weights and llama.cpp's kernels against transformers in fp32: measured max 0.005 nats here
    const diffs = (xs: typeof ref) => ref.flatMap((r, i) => r.loglikelihoods.map((v, j) => Math.abs(v - xs[i]!.loglikelihoods[j]!)))
    expect(Math.max(...diffs(half))).toBeLessThan(0.02)
    expect(half.map((s) => s.acc)).toEqual(ref.map((s) => s.acc))
    // q8_0 moves weights by < 0.5% of their range: measured max 0.06 nats here
    expect(Math.max(...diffs(q8s))).toBeLessThan(0.25)
    const acc = (dir: string) => read(dir).table.find((row: any) => row.metric === "acc").value as number
    expect(acc(a.output)).toBe(acc(fp.output))
    expect(acc(b.output)).toBe(acc(fp.output))

    // generation goes through llama.cpp too: the same greedy text as llama-server's, cut at the stop
    // string; a rolling log-likelihood equals the one-continuation score of the same text
    const prompt = "Lesson 231: the grass is"
    const got = JSON.parse(await python([path.join(here, "llama_lm_check.py"), loglik, path.join(f16.output, "model.gguf"), prompt]))
    const server = await startLlamaServer({ model: path.join(f16.output, "model.gguf"), ctxSize: 256, threads: 1 })
    try {
      const completion = await (await fetch(`${server.url}/completion`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt, n_predict: 16, temperature: 0, stop: ["."] })
      })).json() as { content: string }
      expect(got.generated).toBe(completion.content)
      expect(got.generated).toMatch(/^ often (red|blue|green|yellow|black|white)$/)
    } finally {
      await server.stop()
    }
    expect(got.rolling).toBeLessThan(0)
    expect(got.rolling).toBeCloseTo(got.whole, 4)
    expect(got.decoded).toBe(got.text)
    expect(got.bad).toMatch(/token id outside the vocabulary/)
  }, 600_000)

  it("a file that is not a GGUF, or a GGUF llama.cpp cannot load, fails naming the step's input and file", async () => {
    const mc = path.join(models.fixtures, "mc")
    const notGguf = tempDir("anneal-eval-bad-gguf-")
    fs.writeFileSync(path.join(notGguf, "model.gguf"), "this is not a model\n")
    const r1 = await runWorker(evaluate, { inputs: { model: notGguf, benchmarks: [mc] } })
    expect(r1.exitCode).toBe(2)
    expect(r1.error).toBe(`eval: input 'model': ${path.join(notGguf, "model.gguf")} is not a GGUF file (it does not start with the GGUF magic)`)
    // a GGUF header (magic, version 3) and then nothing: llama.cpp refuses it
    const truncated = tempDir("anneal-eval-bad-gguf-")
    fs.writeFileSync(path.join(truncated, "model.gguf"), Buffer.from([0x47, 0x47, 0x55, 0x46, 3, 0, 0, 0, 1, 0]))
    const r2 = await runWorker(evaluate, { inputs: { model: truncated, benchmarks: [mc] } })
    expect(r2.exitCode).toBe(2)
    expect(r2.error).toBe(`eval: input 'model': llama.cpp cannot load ${path.join(truncated, "model.gguf")}: gguf_init_from_reader: failed to read header`)
    expect(fs.readdirSync(r2.output)).toEqual([])
  }, 300_000)
})

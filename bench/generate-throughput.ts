/**
 * `generate` throughput: the same prompts answered by a teacher through the transformers backend on CPU
 * (fp32, one prompt at a time, seeded per prompt) and through llama.cpp's llama-server (the OpenAI-
 * compatible endpoint) on the same teacher quantized to GGUF q4_K_M, with `concurrency` requests in flight
 * against as many server slots. Both sides run the generate step's worker with the request cache off;
 * tokens/s = completion tokens / seconds spent generating (model loading and server start excluded), as
 * the step reports it in its `tokens_per_second` metric.
 *
 * The teacher is a randomly initialised Llama (hidden 512, 8 layers, ~30M params; the tiny fixtures'
 * tokenizer): nothing can be downloaded here, and throughput does not depend on what the weights say.
 *
 *   npx tsx bench/generate-throughput.ts [--prompts 16] [--tokens 64] [--concurrency 2]
 *
 * The endpoint side needs llama.cpp (`npx anneal setup --with llama-cpp`); without it only the transformers
 * side runs and the endpoint figure reads n/a. Last line: `generate tokens/s: transformers X, endpoint Y`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { findLlamaCpp, llamaCppDir } from "../engine/components/llama-cpp.ts"
import { startLlamaServer } from "../engine/components/llama-server.ts"
import { checkPythonEnv, projectRoot, pythonEnvVars } from "../engine/python.ts"
import { generate } from "../steps/generate/index.ts"
import { runWorker, tempDir } from "../test/steps/train/helpers.ts"

const { values } = parseArgs({
  options: { prompts: { type: "string", default: "16" }, tokens: { type: "string", default: "64" }, concurrency: { type: "string", default: "2" } }
})
const nPrompts = Number(values.prompts)
const maxNewTokens = Number(values.tokens)
const concurrency = Number(values.concurrency)
const llama = findLlamaCpp()
const python = checkPythonEnv()
const env = pythonEnvVars()
const dir = tempDir("anneal-bench-generate-")

// --- the teacher: fixtures' tokenizer, a bigger random Llama, its GGUF q4_K_M ---
await execa(python, [path.join(projectRoot, "test", "steps", "train", "make_fixtures.py"), path.join(dir, "fx")], { env })
const teacher = path.join(dir, "teacher")
await execa(python, ["-c", `
import sys, torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
tok = AutoTokenizer.from_pretrained(sys.argv[1])
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=8, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
LlamaForCausalLM(cfg).save_pretrained(sys.argv[2])
tok.save_pretrained(sys.argv[2])
`, path.join(dir, "fx", "tokenizer"), teacher], { env })
// --- the prompts ---
const data = path.join(dir, "prompts")
fs.mkdirSync(data)
const things = ["apple", "sky", "grass", "banana", "coal", "snow", "river", "stone"]
const rows = Array.from({ length: nPrompts }, (_, i) => ({ prompt: `Lesson ${i}: the ${things[i % things.length]} is`, completion: "" }))
fs.writeFileSync(path.join(data, "data.jsonl"), rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
fs.writeFileSync(path.join(data, "dataset.json"), JSON.stringify({ format: "prompt-completion", rows: rows.length }))
const common = { mode: "responses", maxNewTokens, temperature: 0.8, requestCache: false, seed: 0 }

const tokensPerSecond = (name: string, r: Awaited<ReturnType<typeof runWorker>>): number => {
  if (r.exitCode !== 0) throw new Error(`${name} failed: ${r.error ?? r.stderr.slice(-2000)}`)
  console.log(`${name}: ${r.metrics.generated_tokens} tokens, ${r.metrics.tokens_per_second} tokens/s`)
  return Number(r.metrics.tokens_per_second)
}

const hf = tokensPerSecond("transformers (CPU, fp32)", await runWorker(generate, { inputs: { model: teacher, data }, params: common }))
let endpoint = "n/a (llama.cpp is not built: npx anneal setup --with llama-cpp)"
if (llama !== undefined) {
  const f32 = path.join(dir, "teacher-f32.gguf")
  const q4 = path.join(dir, "teacher-q4_k_m.gguf")
  await execa(python, [path.join(projectRoot, "test", "steps", "generate", "to_gguf.py"), path.join(llama.dir, "src"), teacher, f32], { env })
  await execa(llama.bin["llama-quantize"], [f32, q4, "Q4_K_M"])
  console.log(`sizes: safetensors ${(fs.statSync(path.join(teacher, "model.safetensors")).size / 1e6).toFixed(1)} MB, q4_K_M ${(fs.statSync(q4).size / 1e6).toFixed(1)} MB`)
  const server = await startLlamaServer({ model: q4, ctxSize: 512 * concurrency, parallel: concurrency, threads: 2, alias: "teacher" })
  try {
    endpoint = tokensPerSecond(`llama-server (q4_K_M, ${concurrency} slots)`, await runWorker(generate, {
      inputs: { data },
      params: { ...common, backend: "openai", baseUrl: `${server.url}/v1`, apiModel: "teacher", api: "completions", concurrency }
    })).toFixed(1)
  } finally {
    await server.stop()
  }
} else {
  console.log(`llama.cpp not found at ${llamaCppDir()}: the endpoint side is skipped`)
}
console.log(`generate tokens/s: transformers ${hf.toFixed(1)}, endpoint ${endpoint}`)

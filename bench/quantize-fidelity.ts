/**
 * Fidelity and size of each quantization of one model: perplexity on held-out text of the
 * full-precision model vs each quantized one (GGUF types by llama-perplexity's measure against the f16
 * GGUF; bitsandbytes through transformers against the source model, same text, same windows), and
 * the size on disk. Default model: the quantize tests' trained 2-layer Llama (hidden 256) and its
 * held-out lessons; --model DIR --held-out DATASET for another (DIR: a Hugging Face causal LM).
 *
 *   npx tsx bench/quantize-fidelity.ts [--model DIR --held-out DIR] [--types f16,q8_0,q6_K,q5_K_M,q4_K_M,q4_0,nf4,int8] [--ctx 64]
 *
 * Last line: `q8_0 perplexity vs f16: +X%, q4_K_M: +Y%`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { ensureLlamaCpp } from "../engine/components/llama-cpp.ts"
import { quantize, quantizeTypes } from "../steps/quantize/index.ts"
import { runWorker } from "../test/steps/train/helpers.ts"
import { makeQuantizeModels } from "../test/steps/quantize/helpers.ts"

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    "held-out": { type: "string" },
    types: { type: "string", default: "f16,q8_0,q6_K,q5_K_M,q4_K_M,q4_0,nf4,int8" },
    ctx: { type: "string", default: "64" }
  }
})
await ensureLlamaCpp((l) => console.error(l))
const defaults = values.model === undefined ? await makeQuantizeModels() : undefined
const model = values.model ?? defaults!.llama
const heldOut = values["held-out"] ?? defaults!.heldOut
const bnb = quantizeTypes.bnb as ReadonlyArray<string>

const rows: Array<{ type: string; ppl: number; ref: number; ratio: number; mb: number; refMb: number; s: number }> = []
for (const type of values.types.split(",")) {
  const format = bnb.includes(type) ? "bnb" : "gguf"
  const started = Date.now()
  const r = await runWorker(quantize, { inputs: { model, heldOut }, params: { format, type, perplexityCtx: Number(values.ctx) } })
  if (r.exitCode !== 0) throw new Error(`${type}: ${r.error ?? r.stderr.slice(-2000)}`)
  const q = JSON.parse(fs.readFileSync(path.join(r.output, "quantize.json"), "utf8"))
  rows.push({
    type: `${format} ${type}`, ppl: q.perplexity.quantized, ref: q.perplexity.reference, ratio: q.perplexity.ratio,
    mb: q.size_bytes.quantized / 2 ** 20, refMb: q.size_bytes.reference / 2 ** 20, s: (Date.now() - started) / 1000
  })
  const last = rows.at(-1)!
  console.log(`${last.type.padEnd(12)} ppl ${last.ppl.toFixed(4)} (reference ${last.ref.toFixed(4)}, ${((last.ratio - 1) * 100).toFixed(2)}%)  size ${last.mb.toFixed(2)} MiB (reference ${last.refMb.toFixed(2)} MiB)  ${last.s.toFixed(0)} s`)
}
console.log("\n| quantization | perplexity | vs reference | size (MiB) | vs reference |\n|---|---:|---:|---:|---:|")
for (const r of rows) {
  console.log(`| ${r.type} | ${r.ppl.toFixed(4)} | ${((r.ratio - 1) * 100).toFixed(2)}% | ${r.mb.toFixed(2)} | ${(r.mb / r.refMb * 100).toFixed(0)}% |`)
}
const pct = (t: string) => {
  const r = rows.find((x) => x.type === `gguf ${t}`)
  return r === undefined ? "n/a" : `${r.ratio >= 1 ? "+" : ""}${((r.ratio - 1) * 100).toFixed(2)}%`
}
console.log(`q8_0 perplexity vs f16: ${pct("q8_0")}, q4_K_M: ${pct("q4_K_M")}`)

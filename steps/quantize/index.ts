/**
 * `quantize`: a full-precision causal LM in, a quantized model out (worker.py):
 * - GGUF through llama.cpp's own converter and llama-quantize (f32/f16/bf16, q8_0, k-quants): the
 *   output directory holds `model.gguf` (tokenizer embedded), which llama.cpp and Ollama run and the
 *   `eval` step scores;
 * - bitsandbytes 4-bit (nf4/fp4, double quantization) or 8-bit (int8), and GPTQ or AWQ through
 *   llm-compressor (with a `calibration` dataset): Hugging Face directories with their quantization_config, which
 *   transformers (and `eval`) reload as they are.
 * Each output has quantize.json: type, sizes on disk, and with a `heldOut` input the perplexity of the
 * full-precision and the quantized model on that text.
 *
 * llama.cpp is built by `anneal setup --with llama-cpp` (engine/components/llama-cpp.ts); a GGUF step on
 * a machine without it fails at its start naming that command, rather than compiling for 20+ minutes
 * inside a step slot. Bump `version` when the pinned llama.cpp changes: its converter and quantizer
 * decide the output.
 */
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Schema from "effect/Schema"
import { Text } from "../../engine/rows.ts"
import { defineStep, Port } from "../../engine/step.ts"
import type { CommandContext, CommandSpec } from "../../engine/step.ts"
import { checkPythonEnv, pythonEnvVars } from "../../engine/python.ts"
import { llamaLoglikSource, requireLlamaCpp, requireLlamaLoglik } from "../../engine/components/llama-cpp.ts"
import { describe, PositiveInt, seedParam, withDefault, workerSourceFiles } from "../train/common.ts"

const here = path.dirname(fileURLToPath(import.meta.url))
const script = path.join(here, "worker.py")

/** Mirrors TYPES in worker.py: the quantization types of each format. */
export const quantizeTypes = {
  gguf: ["f32", "f16", "bf16", "q8_0", "q6_K", "q5_K_M", "q5_K_S", "q5_0", "q4_K_M", "q4_K_S", "q4_0", "q3_K_M", "q2_K"],
  bnb: ["nf4", "fp4", "int8"],
  gptq: ["w4a16", "w8a16"],
  awq: ["w4a16", "w8a16"]
} as const
export type QuantizeFormat = keyof typeof quantizeTypes
const defaultType: Record<QuantizeFormat, string> = { gguf: "q4_K_M", bnb: "nf4", gptq: "w4a16", awq: "w4a16" }
/** The formats calibrated on the `calibration` input (llm-compressor). */
const calibrated: ReadonlyArray<QuantizeFormat> = ["gptq", "awq"]
const allTypes = [...new Set(Object.values(quantizeTypes).flat())]

/** Mirrors QuantizeConfig in worker.py. */
export const QuantizeParams = Schema.Struct({
  format: withDefault(Schema.Literals(["gguf", "bnb", "gptq", "awq"]), "gguf").annotate(
    describe("gguf (llama.cpp: converter + llama-quantize), bnb (bitsandbytes via transformers), gptq or awq (llm-compressor)")
  ),
  type: withDefault(Schema.NullOr(Schema.Literals(allTypes)), null).annotate(
    describe(
      "the quantization type; null: the format's default. gguf: " + quantizeTypes.gguf.join(", ") +
        " (default q4_K_M); bnb: nf4, fp4, int8 (default nf4); gptq and awq: w4a16, w8a16 (symmetric int; default w4a16)"
    )
  ),
  doubleQuant: withDefault(Schema.Boolean, true).annotate(
    describe("bnb 4-bit: also quantize the quantization constants (QLoRA's double quantization)")
  ),
  calibrationSamples: withDefault(PositiveInt, 128).annotate(describe("gptq, awq: calibration rows used from the calibration input")),
  calibrationSeqLength: withDefault(PositiveInt, 512).annotate(describe("gptq, awq: tokens per calibration row (longer rows are cut)")),
  groupSize: withDefault(Schema.Int.check(Schema.makeFilter((n: number) => n > 0 || n === -1 || "a positive integer, or -1")), 128)
    .annotate(describe("gptq, awq: weight columns sharing one scale (-1: one scale per output channel)")),
  perplexityCtx: withDefault(Schema.Int.check(Schema.isGreaterThanOrEqualTo(16)), 128).annotate(
    describe("perplexity on heldOut: context window in tokens (each window is scored on its second half)")
  ),
  allowPickle: withDefault(Schema.Boolean, false).annotate(describe("load pickle (.bin) weights; only for files you trust")),
  seed: seedParam()
})
export type QuantizeParams = typeof QuantizeParams.Type

export const typeOf = (p: Pick<QuantizeParams, "format" | "type">): string => p.type ?? defaultType[p.format]

const quantizeCommand = (ctx: CommandContext<QuantizeParams>): CommandSpec => {
  const env: Record<string, string> = { ...pythonEnvVars() }
  if (ctx.params.format === "gguf") {
    const llama = requireLlamaCpp(`step "${ctx.step}" (quantize to GGUF)`)
    env.ANNEAL_LLAMA_CPP_SRC = path.dirname(llama.convertScript)
    env.ANNEAL_LLAMA_CPP_QUANTIZE = llama.bin["llama-quantize"]
    env.ANNEAL_LLAMA_LOGLIK = requireLlamaLoglik(`step "${ctx.step}" (quantize to GGUF)`, llama)
  }
  return { argv: [checkPythonEnv(), script, ctx.specPath], env }
}

export const quantize = defineStep({
  kind: "quantize",
  version: 1,
  description: "quantize a causal LM: GGUF via llama.cpp (f16, q8_0, k-quants), bitsandbytes 4/8-bit, GPTQ or AWQ via llm-compressor",
  params: QuantizeParams,
  inputs: {
    model: Port.describe(Port.model(), "a full-precision Hugging Face causal LM (safetensors)"),
    calibration: Port.describe(Port.optional(Port.dataset(Text)), "gptq, awq: calibration text rows"),
    heldOut: Port.describe(
      Port.optional(Port.dataset(Text)),
      "text to measure perplexity on, for the source model and the quantized one (quantize.json, metrics)"
    )
  },
  output: Port.model(),
  resources: (p: QuantizeParams) => (p.format === "gguf" ? { cpus: 1 } : { gpus: 1, cpuFallback: true }),
  sourceFiles: [...workerSourceFiles(script), path.join(here, "convert.py"), llamaLoglikSource],
  checkParams: (p, counts) => {
    const type = typeOf(p)
    if (!(quantizeTypes[p.format] as ReadonlyArray<string>).includes(type)) {
      return { param: "type", message: `"${type}" is not a ${p.format} type (one of ${quantizeTypes[p.format].join(", ")})` }
    }
    if (calibrated.includes(p.format) && counts.calibration === 0) {
      return { param: "format", message: `format ${p.format} needs the calibration input (a dataset of text rows)` }
    }
    return undefined
  },
  command: quantizeCommand
})

/**
 * tokenizer -> pretrain on CPU with tiny models: the loss falls, the output loads with transformers and
 * generates, the phi-1.5 preset sets the optimizer, and a run killed after a checkpoint resumes to the
 * same weights as an uninterrupted run. Bad input fails with one clear line before any model is loaded.
 * Several processes (torchrun, DDP and FSDP): distributed.test.ts.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { pretrain, tokenizer } from "../../../steps/train/index.ts"
import { makeFixtures, modelTools, runWorker, tempDir } from "./helpers.ts"

let fx: string
beforeAll(async () => {
  fx = await makeFixtures()
})

describe("tokenizer + pretrain", () => {
  it("trains a tokenizer, then a phi-style model whose loss falls over 50 steps; the model loads and generates", async () => {
    const tok = await runWorker(tokenizer, { inputs: { data: path.join(fx, "text") }, params: { vocabSize: 400 } })
    expect(tok.error).toBeUndefined()
    expect(tok.exitCode).toBe(0)
    // at most vocabSize: a small corpus may run out of pairs frequent enough to merge
    expect(Number(tok.metrics.vocab_size)).toBeLessThanOrEqual(400)
    expect(Number(tok.metrics.vocab_size)).toBeGreaterThan(300)
    expect(fs.existsSync(path.join(tok.output, "tokenizer.json"))).toBe(true)

    const run = await runWorker(pretrain, {
      inputs: { data: path.join(fx, "text"), tokenizer: tok.output },
      params: { architecture: "phi", preset: "phi-1.5", learningRate: 1e-3, maxSteps: 50, seqLen: 32, microBatchSize: 4 }
    })
    expect(run.error).toBeUndefined()
    expect(run.exitCode).toBe(0)
    const progress = run.lines.filter((l) => l.type === "progress" && l.loss !== undefined)
    expect(progress).toHaveLength(50)
    expect(progress.at(-1)).toMatchObject({ current: 50, total: 50, unit: "steps" })
    expect(progress.every((p) => p.tokens_per_second > 0)).toBe(true)
    // phi-1.5 preset: constant schedule, no warmup (the explicit lr overrides the preset's 2e-4)
    expect(new Set(progress.map((p) => p.lr))).toEqual(new Set([1e-3]))
    expect(Number(run.metrics.last_loss)).toBeLessThan(Number(run.metrics.first_loss) - 1)

    const config = JSON.parse(fs.readFileSync(path.join(run.output, "config.json"), "utf8"))
    expect(config.model_type).toBe("phi")
    expect(config.rope_parameters.partial_rotary_factor).toBe(0.5)
    expect(fs.readdirSync(run.output).filter((f) => f.endsWith(".bin"))).toEqual([])
    const gen = await modelTools("generate", run.output, "Lesson 3: the apple")
    expect(gen.new_tokens).toBeGreaterThan(0)
  }, 600_000)

  it("resumes a run killed after a checkpoint and ends with the same weights as an uninterrupted run", async () => {
    const inputs = { data: path.join(fx, "text"), tokenizer: path.join(fx, "tokenizer") }
    const params = { maxSteps: 30, saveSteps: 5, seqLen: 32, microBatchSize: 4, hiddenSize: 32, intermediateSize: 64, seed: 7 }
    const straight = await runWorker(pretrain, { inputs, params })
    expect(straight.exitCode).toBe(0)

    const resumeDir = tempDir("anneal-resume-")
    const killed = await runWorker(pretrain, {
      inputs, params, resumeDir,
      onLine: (line, child) => {
        if (line.type === "progress" && line.current >= 6 && line.current < 30) child.kill("SIGKILL")
      }
    })
    expect(killed.signal).toBe("SIGKILL")
    expect(fs.existsSync(path.join(killed.output, "model.safetensors"))).toBe(false)
    expect(fs.readdirSync(resumeDir).some((d) => d.startsWith("checkpoint-"))).toBe(true)

    const resumed = await runWorker(pretrain, { inputs, params, resumeDir })
    expect(resumed.exitCode).toBe(0)
    expect(resumed.lines.some((l) => l.type === "log" && /resuming from .*checkpoint-/.test(l.message))).toBe(true)
    // fewer optimizer steps ran this time: it did not start over
    const firstStep = resumed.lines.find((l) => l.type === "progress" && l.loss !== undefined)!.current
    expect(firstStep).toBeGreaterThan(5)

    const a = fs.readFileSync(path.join(straight.output, "model.safetensors"))
    const b = fs.readFileSync(path.join(resumed.output, "model.safetensors"))
    expect(b.equals(a)).toBe(true)
  }, 600_000)
})

describe("pretrain refuses bad input before loading a model", () => {
  it("a dataset of the wrong row type", async () => {
    const r = await runWorker(pretrain, { inputs: { data: path.join(fx, "instructions"), tokenizer: path.join(fx, "tokenizer") } })
    expect(r.exitCode).toBe(2)
    expect(r.error).toMatch(/pretrain: input 'data'.*format 'instruction', expected text/)
  })

  it("a missing base model directory, and pickle weights unless opted in", async () => {
    const missing = await runWorker(pretrain, { inputs: { data: path.join(fx, "text"), model: path.join(fx, "nope") } })
    expect(missing.exitCode).toBe(2)
    expect(missing.error).toMatch(/pretrain: input 'model'.*not found/)
    const pickle = await runWorker(pretrain, { inputs: { data: path.join(fx, "text"), model: path.join(fx, "base-bin") } })
    expect(pickle.exitCode).toBe(2)
    expect(pickle.error).toMatch(/pickle weights.*allowPickle/)
  })
})

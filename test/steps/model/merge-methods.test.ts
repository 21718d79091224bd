/**
 * The merge machinery without Python: DARE's statistical properties and seeding, TIES' exact top-k,
 * chunked streaming equal to whole-tensor computation, mergekit's parameter semantics (gradients,
 * filters), per-layer config rewriting in upscale, and the errors for configs anneal cannot honour.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Schema } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { merge, upscale } from "../../../steps/model/index.ts"
import { MergeParams } from "../../../steps/model/merge-step.ts"
import { mergeTensor } from "../../../steps/model/methods.ts"
import type { MethodName } from "../../../steps/model/methods.ts"
import { evaluateSetting } from "../../../steps/model/params.ts"
import { bernoulliMask } from "../../../steps/model/rng.ts"
import { ModelReader } from "../../../steps/model/safetensors/reader.ts"
import { ModelWriter } from "../../../steps/model/safetensors/writer.ts"
import { ChunkedInputs, Encoder } from "../../../steps/model/tensor-stream.ts"
import { removeTempDirs, runStep, tempDir } from "./helpers.ts"

/** Writes a model directory of float32 tensors. */
const writeModel = async (tensors: Record<string, Float32Array>, config: Record<string, unknown> = { num_hidden_layers: 0 }, shapes: Record<string, Array<number>> = {}): Promise<string> => {
  const dir = tempDir("model")
  const names = Object.keys(tensors)
  const w = ModelWriter.create(dir, names.map((n) => ({ name: n, dtype: "F32", shape: shapes[n] ?? [tensors[n]!.length] })))
  for (const n of names) await w.write(new Uint8Array(tensors[n]!.buffer))
  await w.finish()
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config))
  fs.writeFileSync(path.join(dir, "tokenizer.json"), "{}")
  return dir
}

const readTensor = async (dir: string, name: string): Promise<Float32Array> => {
  const r = await ModelReader.open(dir)
  const ref = r.get(name)
  const buf = new Uint8Array(ref.info.end - ref.info.begin)
  await ref.file.readBytes(ref.info, 0, buf)
  await r.close()
  return new Float32Array(buf.buffer)
}

const gaussian = (n: number, seed: number, scale = 1): Float32Array => {
  // Box-Muller over a small LCG: deterministic test data
  let s = seed >>> 0
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) * scale
  return out
}

afterAll(removeTempDirs)

const plus = (a: Float32Array, b: Float32Array) => a.map((x, i) => x + b[i]!)

describe("DARE", () => {
  const n = 300_000
  const base = gaussian(n, 1)
  const delta = gaussian(n, 2, 0.01)

  it("keeps ~density of the delta and preserves its L1 norm", async () => {
    const baseDir = await writeModel({ w: base })
    const ft = await writeModel({ w: plus(base, delta) })
    const out = await runStep(merge, { models: [ft], base: baseDir }, { method: "dare_linear", models: [{ parameters: { weight: 1, density: 0.3 } }], seed: 7 })
    const merged = await readTensor(out, "w")
    let kept = 0
    let l1 = 0
    let l1Delta = 0
    for (let i = 0; i < n; i++) {
      const d = merged[i]! - base[i]!
      if (merged[i] !== base[i]) kept++
      l1 += Math.abs(d)
      l1Delta += Math.abs(delta[i]!)
    }
    expect(Math.abs(kept / n - 0.3)).toBeLessThan(0.005)
    expect(Math.abs(l1 / l1Delta - 1)).toBeLessThan(1e-3)
  })

  it("is reproducible with a seed and changes with it", async () => {
    const baseDir = await writeModel({ w: base })
    const ft = await writeModel({ w: plus(base, delta) })
    const run = (seed: number) => runStep(merge, { models: [ft], base: baseDir }, { method: "dare_ties", models: [{ parameters: { weight: 1, density: 0.5 } }], seed })
    const [a, b, c] = await Promise.all([run(1), run(1), run(2)])
    const [ta, tb, tc] = await Promise.all([readTensor(a, "w"), readTensor(b, "w"), readTensor(c, "w")])
    expect(Buffer.compare(Buffer.from(ta.buffer), Buffer.from(tb.buffer))).toBe(0)
    expect(Buffer.compare(Buffer.from(ta.buffer), Buffer.from(tc.buffer))).not.toBe(0)
  })
})

describe("TIES trim", () => {
  it("keeps exactly max(1, int(density * numel)) entries, ties at the threshold included", async () => {
    const n = 10_001
    const base = new Float32Array(n)
    // only four distinct magnitudes: the top-k boundary falls inside a run of equal values
    const delta = new Float32Array(n).map((_, i) => [0.5, -0.25, 0.25, 1][i % 4]!)
    const baseDir = await writeModel({ w: base })
    const ft = await writeModel({ w: delta })
    for (const density of [0.1, 0.4, 0.9, 0.00001]) {
      const out = await runStep(merge, { models: [ft], base: baseDir }, { method: "ties", models: [{ parameters: { weight: 1, density } }] })
      const merged = await readTensor(out, "w")
      const kept = merged.filter((x) => x !== 0)
      expect(kept.length, `density ${density}`).toBe(Math.max(1, Math.trunc(density * n)))
      // the largest magnitudes win
      const smallestKept = Math.min(...kept.map(Math.abs))
      expect(delta.filter((x) => Math.abs(x) > smallestKept).length).toBeLessThanOrEqual(kept.length)
    }
  })
})

describe("streaming in chunks", () => {
  const cases: Array<[MethodName, Record<string, unknown>]> = [
    ["linear", {}],
    ["slerp", { t: 0.3 }],
    ["ties", { rescale: true }],
    ["dare_ties", {}],
    ["task_arithmetic", {}]
  ]
  for (const [method, extra] of cases) {
    it(`${method}: chunked computation equals one chunk`, async () => {
      const n = 50_003
      const base = gaussian(n, 3)
      const a = plus(base, gaussian(n, 4, 0.05))
      const b = plus(base, gaussian(n, 5, 0.05))
      const dirs = await Promise.all([writeModel({ w: a }), writeModel({ w: b }), writeModel({ w: base })])
      const readers = await Promise.all(dirs.map((d) => ModelReader.open(d)))
      const refs = readers.map((r) => r.get("w"))
      const run = async (chunk: number): Promise<Buffer> => {
        const parts: Array<Buffer> = []
        const slerp = method === "slerp"
        await mergeTensor(method, {
          name: "w",
          inputs: new ChunkedInputs(slerp ? [refs[2]!, refs[0]!] : refs, n, chunk),
          baseIndex: method === "linear" ? undefined : slerp ? 0 : 2,
          weight: slerp ? [undefined, undefined] : [0.6, 0.5, method === "linear" ? 0.2 : undefined],
          density: [0.4, 0.7, undefined],
          t: extra.t as number | undefined,
          normalize: method === "linear" || method === "ties",
          lambda: 1,
          rescale: method === "dare_ties" || extra.rescale === true,
          out: new Encoder("F32"),
          sink: async (bytes) => void parts.push(Buffer.from(bytes)),
          keepMask: (input, density) => bernoulliMask(9, "w", input, density)
        })
        return Buffer.concat(parts)
      }
      const whole = await run(1 << 20)
      const chunked = await run(4096)
      expect(whole.length).toBe(n * 4)
      if (method === "slerp") {
        // norms and dot are summed in another order: equal within float32 rounding
        const x = new Float32Array(whole.buffer, whole.byteOffset, n)
        const y = new Float32Array(chunked.buffer, chunked.byteOffset, n)
        expect(Math.max(...x.map((v, i) => Math.abs(v - y[i]!)))).toBeLessThan(1e-6)
      } else {
        expect(Buffer.compare(whole, chunked)).toBe(0)
      }
      await Promise.all(readers.map((r) => r.close()))
    })
  }
})

describe("parameters, as mergekit resolves them", () => {
  it("interpolates gradients over a slice's layers", () => {
    expect(evaluateSetting("x", [0, 1], 0.25)).toBeCloseTo(0.25, 12)
    expect(evaluateSetting("x", [0, 0.5, 1], 0.75)).toBeCloseTo(0.75, 12)
    expect(evaluateSetting("x", [1, 0, 1], 0.5)).toBe(0)
    expect(evaluateSetting("x", [0.2, 0.8], 1)).toBeCloseTo(0.8, 12)
    expect(evaluateSetting("x", [true, false], 0.9)).toBe(true)
  })

  it("takes the first filter that is a substring of the tensor name; no match falls through", () => {
    const t = [{ filter: "self_attn", value: 0.1 }, { filter: "mlp", value: [0, 1] }, { value: 0.5 }]
    expect(evaluateSetting("model.layers.3.self_attn.q_proj.weight", t, 0)).toBe(0.1)
    expect(evaluateSetting("model.layers.3.mlp.up_proj.weight", t, 0.5)).toBe(0.5)
    expect(evaluateSetting("model.norm.weight", t, 0)).toBe(0.5)
    expect(evaluateSetting("model.norm.weight", [{ filter: "mlp", value: 1 }], 0)).toBeUndefined()
  })
})

describe("upscale", () => {
  const layered = (n: number) => {
    const tensors: Record<string, Float32Array> = { "model.embed_tokens.weight": new Float32Array([1, 2]) }
    for (let i = 0; i < n; i++) tensors[`model.layers.${i}.w`] = new Float32Array([i, i + 0.5])
    tensors["model.norm.weight"] = new Float32Array([9, 9])
    return tensors
  }

  it("DUS renumbers layers [0, n-m) then [m, n) and rewrites per-layer config lists", async () => {
    const dir = await writeModel(layered(5), { num_hidden_layers: 5, layer_types: ["a0", "a1", "a2", "a3", "a4"], architectures: ["X"] })
    const out = await runStep(upscale, { models: [dir] }, { drop: 2 })
    const config = JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf-8"))
    expect(config.num_hidden_layers).toBe(6)
    expect(config.layer_types).toEqual(["a0", "a1", "a2", "a2", "a3", "a4"])
    expect(config.architectures).toEqual(["X"])
    const order = await Promise.all([0, 1, 2, 3, 4, 5].map(async (i) => (await readTensor(out, `model.layers.${i}.w`))[0]))
    expect(order).toEqual([0, 1, 2, 2, 3, 4])
    expect(fs.existsSync(path.join(out, "tokenizer.json"))).toBe(true)
  })

  it("stacks slices of several models, with passthrough scale filters", async () => {
    const a = await writeModel(layered(3), { num_hidden_layers: 3 })
    const b = await writeModel(Object.fromEntries(Object.entries(layered(3)).map(([k, v]) => [k, v.map((x) => x + 100)])), { num_hidden_layers: 3 })
    const out = await runStep(upscale, { models: [a, b] }, {
      slices: [{ model: 0, layerRange: [0, 2] }, { model: 1, layerRange: [1, 3] }],
      parameters: { scale: [{ filter: "layers", value: 2 }, { value: 1 }] }
    })
    const firsts = await Promise.all([0, 1, 2, 3].map(async (i) => (await readTensor(out, `model.layers.${i}.w`))[0]))
    expect(firsts).toEqual([0, 2, 202, 204])
    // embeddings from the first slice's model, the final norm from the last slice's
    expect([...(await readTensor(out, "model.embed_tokens.weight"))]).toEqual([1, 2])
    expect([...(await readTensor(out, "model.norm.weight"))]).toEqual([109, 109])
  })

  it("refuses a drop as large as the model", async () => {
    const dir = await writeModel(layered(3), { num_hidden_layers: 3 })
    await expect(runStep(upscale, { models: [dir] }, { drop: 3 })).rejects.toThrow(/drop 3 must be smaller than the model's 3 layers/)
  })
})

describe("mergekit configs as params", () => {
  const decode = (yaml: string) => () => Schema.decodeUnknownSync(MergeParams)({ mergekit: yaml })

  it("rejects what anneal does not implement, naming the key", () => {
    expect(decode("merge_method: model_stock\nmodels:\n  - model: a\n")).toThrow(/merge_method: "model_stock" is not supported/)
    expect(decode("merge_method: ties\nmodules:\n  text: {}\n")).toThrow(/modules: per-module configs are not supported/)
    expect(decode("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters: {weight: 1, gamma: 0.1}\n")).toThrow(/models\[0\]\.parameters\.gamma: ties has no parameter "gamma"/)
    expect(decode("merge_method: linear\nmodels:\n  - model: a+lora\n")).toThrow(/fold it first with the lora-merge step/)
    expect(decode("merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: &w 1\n")).toThrow(/YAML line 5: unsupported YAML feature/)
    expect(decode("merge_method: linear\nmodels: [a\n")).toThrow(/YAML line 2/)
  })

  it("maps model names onto the step's inputs and checks their number", async () => {
    const one = await writeModel({ w: new Float32Array([1, 2]) })
    const two = await writeModel({ w: new Float32Array([3, 6]) })
    const yaml = "merge_method: linear\nmodels:\n  - model: first\n    parameters: {weight: 3}\n  - model: second\n    parameters: {weight: 1}\n"
    const out = await runStep(merge, { models: [one, two] }, { mergekit: yaml })
    expect([...(await readTensor(out, "w"))]).toEqual([1.5, 3])
    await expect(runStep(merge, { models: [one] }, { mergekit: yaml })).rejects.toThrow(/names 2 model\(s\) besides base_model \(first, second\) but the step was given 1/)
    await expect(runStep(merge, { models: [one, two] }, { mergekit: yaml, method: "ties" })).rejects.toThrow(/give either mergekit or method/)
  })
})

/**
 * NEFTune through anneal: a recipe runs the sft step with and without `neftuneNoiseAlpha`, and the
 * worker reports the noise its input embeddings really carried in the first training forward pass
 * (the difference between the hooked output and the embedding module's own forward). With alpha the
 * noise is Uniform(-b, b) with b = alpha / sqrt(L * d) (NEFTune, arXiv 2310.05914; L the padded batch
 * length, d the embedding size, as transformers implements it); without alpha there is none. A worker
 * that drops the noise, scales it wrongly, or adds it when it is off fails this test.
 */
import * as fs from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { MetricEvent } from "../../../engine/events.ts"
import { annealIndex, cli, ranSteps, tempProject } from "../../helpers/project.ts"
import type { TempProject } from "../../helpers/project.ts"
import { makeFixtures } from "./helpers.ts"

const ALPHA = 5

let fx: string
let project: TempProject
beforeAll(async () => {
  fx = await makeFixtures()
  project = tempProject("anneal-neftune-")
}, 600_000)

afterAll(() => {
  if (project !== undefined) fs.rmSync(project.dir, { recursive: true, force: true })
})

const metricsOf = (events: ReadonlyArray<{ event: string }>, step: string): Record<string, number> =>
  Object.fromEntries(
    events.filter((e): e is MetricEvent => e.event === "metric" && (e as MetricEvent).step === step).map((e) => [e.name, Number(e.value)])
  )

describe("NEFTune in the sft step", () => {
  it("adds Uniform(-1, 1) * alpha / sqrt(L * d) noise to the embeddings while training, and none without alpha", async () => {
    const file = project.write("neftune.ts", `
import * as path from "node:path"
import { Instruction, recipe, sft, source } from ${JSON.stringify(annealIndex)}
export default recipe("neftune-noise", () => {
  const base = source.model(${JSON.stringify(`${fx}/base`)})
  const data = source.dataset(${JSON.stringify(`${fx}/instructions/data.jsonl`)}, Instruction)
  const tuning = { adapter: "full", maxSteps: 1, microBatchSize: 8, learningRate: 1e-3 } as const
  sft({ model: base, data }, { ...tuning, neftuneNoiseAlpha: ${ALPHA} }, { id: "noisy" })
  sft({ model: base, data }, tuning, { id: "plain" })
})
`)
    const r = await cli(["run", file, "--json", "--allow-cpu", "--jobs", "1", "--store", project.store])
    expect(r.exitCode, r.stderr.slice(-2000)).toBe(0)
    expect(ranSteps(r.events)).toEqual(["noisy", "plain"])

    const noisy = metricsOf(r.events, "noisy")
    const L = noisy.embedding_noise_seq_len!
    const d = noisy.embedding_noise_dim!
    expect(d).toBe(32) // the fixture model's hidden size
    expect(L).toBeGreaterThan(1)
    const bound = ALPHA / Math.sqrt(L * d)
    // never beyond the bound (float32 rounding of embedding + noise aside) ...
    expect(noisy.embedding_noise_max_abs!).toBeLessThanOrEqual(bound * 1.001)
    // ... and uniform on [-b, b]: with 8 x L x 32 draws the largest is within 1% of b (a miss has
    // probability (0.99)^(8*L*32) < 1e-8), and the standard deviation is b / sqrt(3)
    expect(noisy.embedding_noise_max_abs!).toBeGreaterThan(bound * 0.99)
    expect(Math.abs(noisy.embedding_noise_std! - bound / Math.sqrt(3))).toBeLessThan(0.05 * bound)

    const plain = metricsOf(r.events, "plain")
    expect(plain.embedding_noise_max_abs).toBe(0)
    expect(plain.embedding_noise_std).toBe(0)
  }, 600_000)
})

/** dpo with LoRA on a toy preference set: the chosen-minus-rejected log-probability margin grows. */
import * as path from "node:path"
import { beforeAll, expect, it } from "vitest"
import { dpo } from "../../../steps/train/index.ts"
import { makeFixtures, modelTools, runWorker } from "./helpers.ts"

let fx: string
beforeAll(async () => {
  fx = await makeFixtures()
})

it("dpo (LoRA, reference = adapters disabled) widens the chosen-minus-rejected log-prob margin", async () => {
  const run = await runWorker(dpo, {
    inputs: { model: path.join(fx, "base"), data: path.join(fx, "preferences") },
    params: {
      maxSteps: 12, microBatchSize: 4, learningRate: 5e-3, beta: 0.1,
      loraTargetModules: ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]
    }
  })
  expect(run.error).toBeUndefined()
  expect(run.exitCode).toBe(0)
  expect(Number(run.metrics.last_reward_margin)).toBeGreaterThan(Number(run.metrics.first_reward_margin))
  const { margins } = await modelTools("margin", path.join(fx, "preferences"), path.join(fx, "base"), run.output)
  expect(margins[1]).toBeGreaterThan(margins[0] + 1)
}, 600_000)

it("dpo refuses an instruction dataset before loading a model", async () => {
  const r = await runWorker(dpo, { inputs: { model: path.join(fx, "base"), data: path.join(fx, "instructions") } })
  expect(r.exitCode).toBe(2)
  expect(r.error).toMatch(/dpo: input 'data'.*'instruction', expected preference/)
}, 300_000)

/**
 * Real distributed training through a cluster executor (issue 14): the `pretrain` and `sft-lora` steps'
 * own commands, run as a 2-"node" gang of 1 gloo process each (Ray: a placement group of 2 bundles;
 * Slurm: 2 srun tasks of the one test node, `gangOnOneNode`), each node running torchrun through
 * engine/executors/cluster-node.ts. Called from ray.test.ts and slurm.test.ts, inside their cluster
 * fixture (no second cluster is started).
 *
 * - Equality: each run equals the 1-process run with the same global batch (2 x 2 vs 1 x 4) within
 *   max |weight difference| < 1e-4, the tolerance of test/steps/train/distributed.test.ts (which says
 *   why: the same gradient mean, summed in another order).
 * - With `killRank`: global rank 1 is SIGKILLed once the first checkpoint is complete. The step fails
 *   with a message naming the rank, no process of the step is left, and the rerun (same key, same
 *   resume dir, as the engine's next run) resumes from that checkpoint and still ends equal.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import type { EngineEvent } from "../../engine/events.ts"
import type { StepDefinition } from "../../engine/step.ts"
import type { Executor, StepSpec } from "../../engine/spec.ts"
import { projectRoot } from "../../engine/python.ts"
import { pretrain, sftLora } from "../../steps/train/index.ts"
import { makeFixtures, modelTools, singleProcessReference, specParams } from "../steps/train/helpers.ts"
import { jobWaitMs, waitFor } from "./cluster-ports.ts"
import { logsOf, makeStoreDir, newKey, runSpec, startSpec } from "./specs.ts"

const tolerance = 1e-4

type TrainingStep = { readonly definition: unknown }

let counter = 0

/** A training step's spec in a store's layout, with the step's own command (as the engine writes it). */
const trainingSpec = (
  store: string,
  step: TrainingStep,
  inputs: Record<string, string>,
  raw: Record<string, unknown>,
  key = newKey()
): StepSpec => {
  const def = step.definition as StepDefinition
  const params = specParams(step, raw)
  const n = ++counter
  const output = path.join(store, "staging", `${key.slice(0, 16)}-${process.pid}-${n}`)
  const resumeDir = path.join(store, "resume", key)
  const logPath = path.join(store, "logs", `${def.kind}-${n}.log`)
  const specPath = logPath.replace(/\.log$/, ".spec.json")
  for (const d of [output, resumeDir]) fs.mkdirSync(d, { recursive: true })
  const resources = typeof def.resources === "function" ? def.resources(params) : def.resources
  const cpus = resources?.cpus ?? 1
  const cmd = def.implementation.command!({ params, specPath, step: def.kind, gpus: [], cpus })
  const spec: StepSpec = {
    specVersion: 1,
    runId: n,
    step: def.kind,
    kind: def.kind,
    version: def.version,
    key,
    params,
    inputs,
    inputHashes: {},
    output,
    resumeDir,
    logPath,
    devices: { gpus: [], cpus },
    seed: Number(params.seed ?? 0),
    recipe: path.join(projectRoot, "test", "executors", "fixtures", "no-recipe.ts"),
    implementation: { type: "command", argv: [...cmd.argv], env: { ...cmd.env, CUDA_VISIBLE_DEVICES: "", ANNEAL_SPEC: specPath } }
  }
  fs.writeFileSync(specPath, JSON.stringify(spec, null, 2) + "\n")
  return spec
}

/** Processes whose command line names a file of this store: the node launchers, torchrun and every rank of its steps. */
const processesOf = (store: string): Array<{ pid: number; rank: number | undefined }> => {
  const found: Array<{ pid: number; rank: number | undefined }> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0")
      if (!cmdline.some((a) => a.startsWith(store + path.sep))) continue
      if (/\) [ZX] /.test(fs.readFileSync(`/proc/${entry}/stat`, "utf8"))) continue // exited, not yet reaped
      const env = fs.readFileSync(`/proc/${entry}/environ`, "utf8").split("\0")
      const rank = env.find((e) => e.startsWith("RANK="))
      found.push({ pid: Number(entry), rank: rank === undefined ? undefined : Number(rank.slice(5)) })
    } catch {
      // gone meanwhile
    }
  }
  return found
}

/** The optimizer steps a run reported (progress lines with a loss: global rank 0's only). */
const trainedSteps = (events: ReadonlyArray<EngineEvent>): Array<number> =>
  events.flatMap((e) => (e.event === "progress" && e.loss !== undefined ? [e.current] : []))

export interface DistributedTrainingOptions {
  /** the cluster executor, with whatever it needs to place a 2-node gang on the one test node */
  readonly executor: () => Executor
  /** kill global rank 1 of the pretrain run after its first checkpoint, then rerun and check the resume */
  readonly killRank?: boolean
}

export const distributedTrainingTests = (name: string, o: DistributedTrainingOptions) =>
  describe(`real distributed training on ${name} (2 nodes x 1 gloo process)`, () => {
    // the 1-process references, run by hand as the local executor would, once per test run for the Ray and
    // Slurm files (and distributed.test.ts, whose sft-lora reference is this one): singleProcessReference
    let fixtures: Promise<string> | undefined
    const fx = () => (fixtures ??= makeFixtures())
    const pretrainParams = { seqLen: 32, hiddenSize: 32, intermediateSize: 64, maxSteps: 24, learningRate: 3e-3, seed: 5 }
    const loraParams = { maxSteps: 6, learningRate: 1e-2, loraDropout: 0, seed: 3 }

    it(`pretrain: equals the 1-process run${o.killRank === true ? "; a killed rank fails the step cleanly and the rerun resumes from the checkpoint" : ""}`, async () => {
      const dir = await fx()
      const inputs = { data: path.join(dir, "text"), tokenizer: path.join(dir, "tokenizer") }
      const single = singleProcessReference(pretrain, inputs, pretrainParams)
      const store = makeStoreDir()
      const params = { ...pretrainParams, microBatchSize: 2, nodes: 2, processes: 1, saveSteps: 4 }
      const spec = trainingSpec(store, pretrain, inputs, params)
      let done = spec
      if (o.killRank === true) {
        const running = startSpec(o.executor(), spec)
        let victim: number | undefined
        // the first checkpoint is complete (the Trainer writes trainer_state.json last): kill rank 1, on node 1
        await waitFor("a complete checkpoint and rank 1's process", () => {
          if (!fs.existsSync(path.join(spec.resumeDir, "checkpoint-4", "trainer_state.json"))) return undefined
          victim = processesOf(store).find((p) => p.rank === 1)?.pid
          if (victim !== undefined) process.kill(victim, "SIGKILL")
          return victim
        }, jobWaitMs, 20)
        const exit = await running.done
        expect(exit._tag).toBe("Failure")
        const why = String((exit as { cause: unknown }).cause)
        console.log(`${name}: pretrain with rank 1 killed failed with: ${why.split("\n")[0]}`)
        expect(why).toMatch(/rank 1\b.*failed.*(-9|SIGKILL)/)
        // no rank, torchrun or node launcher of the step is left once the step has failed
        await waitFor("every process of the step to be gone", () => (processesOf(store).length === 0 ? true : undefined), 30_000, 200)
        expect(fs.existsSync(path.join(spec.output, "model.safetensors"))).toBe(false)
        // the engine's next run: same key and resume dir, a fresh staging dir
        done = trainingSpec(store, pretrain, inputs, params, spec.key)
        const rerun = await runSpec(o.executor(), done)
        expect(rerun.error?.message).toBeUndefined()
        expect(logsOf(rerun.events).some((m) => /resuming from .*checkpoint-(\d+)$/.test(m))).toBe(true)
        const steps = trainedSteps(rerun.events)
        console.log(`${name}: the rerun resumed at optimizer step ${steps[0]} of 24`)
        expect(steps[0]).toBeGreaterThan(4)
        expect(steps.at(-1)).toBe(24)
      } else {
        const run = await runSpec(o.executor(), spec)
        expect(run.error?.message).toBeUndefined()
        expect(trainedSteps(run.events).at(-1)).toBe(24)
      }
      // only global rank 0 reported; rank 1 (node 1) kept its own log beside the step's
      expect(fs.readFileSync(done.logPath.replace(/\.log$/, ".rank1.log"), "utf8")).not.toBe("")
      const d = await modelTools("maxdiff", await single, done.output)
      console.log(`${name}: pretrain, 2 nodes x 1 process (DDP) vs 1 process: max |weight difference| ${d.max_abs} (${d.tensor})`)
      expect(d.max_abs).toBeLessThan(tolerance)
    })

    it("sft-lora: equals the 1-process run", async () => {
      const dir = await fx()
      const inputs = { model: path.join(dir, "base"), data: path.join(dir, "instructions") }
      const single = singleProcessReference(sftLora, inputs, loraParams)
      const spec = trainingSpec(makeStoreDir(), sftLora, inputs, { ...loraParams, microBatchSize: 2, nodes: 2, processes: 1 })
      const run = await runSpec(o.executor(), spec)
      expect(run.error?.message).toBeUndefined()
      const d = await modelTools("maxdiff", await single, spec.output)
      console.log(`${name}: sft-lora, 2 nodes x 1 process (DDP) vs 1 process: max |adapter weight difference| ${d.max_abs} (${d.tensor})`)
      expect(d.max_abs).toBeLessThan(tolerance)
    })
  })

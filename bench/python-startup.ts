/**
 * What warm Python workers save: a run of 5 tiny Python steps (pretrain, 2 optimizer steps of a
 * 2-layer model each, different seeds) through the local executor, cold (ANNEAL_WARM_WORKERS=0) and
 * warm. Per step: seconds from the step's start (`started`) to the worker's first counted progress
 * event (after its imports, tokenizing and model set-up), and the whole run's wall time (the warm run
 * includes starting and stopping its warm process; its first step may still start cold, as in a real run).
 *
 *   npx tsx bench/python-startup.ts
 *
 * Last line: python step start: cold X s, warm Y s   (medians over the 5 steps)
 */
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import type { EngineEvent } from "../engine/events.ts"
import { makeLocalExecutor } from "../engine/executors/local.ts"
import type { Executor } from "../engine/spec.ts"
import { pretrain } from "../steps/train/index.ts"
import { makeFixtures } from "../test/steps/train/helpers.ts"
import { trainingSpec } from "../test/steps/train/warm-specs.ts"

const steps = 5

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const fx = await makeFixtures()
const inputs = { data: path.join(fx, "text"), tokenizer: path.join(fx, "tokenizer") }

const measure = async (name: string, executor: Executor): Promise<number> => {
  const starts: Array<number> = []
  const t0 = performance.now()
  try {
    for (let i = 0; i < steps; i++) {
      const spec = trainingSpec(pretrain, inputs, { maxSteps: 2, microBatchSize: 2, seqLen: 32, hiddenSize: 32, intermediateSize: 64, seed: i })
      const started = performance.now()
      let first: number | undefined
      let phase: number | undefined
      const emit = (e: EngineEvent) => {
        if (e.event !== "progress") return
        if (e.phase !== undefined && e.total === undefined) phase ??= (performance.now() - started) / 1000
        else first ??= (performance.now() - started) / 1000
      }
      await Effect.runPromise(executor.run(spec, emit))
      starts.push(first!)
      console.log(`${name} step ${i + 1}: first progress after ${first!.toFixed(2)} s (worker code running after ${phase?.toFixed(2)} s)`)
    }
  } finally {
    await executor.close?.()
  }
  const wall = (performance.now() - t0) / 1000
  console.log(`${name}: run of ${steps} steps ${wall.toFixed(1)} s wall, median start ${median(starts).toFixed(2)} s`)
  return median(starts)
}

console.log(`machine: ${os.availableParallelism()} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`)
const cold = await measure("cold", makeLocalExecutor({ warm: false }))
const warm = await measure("warm", makeLocalExecutor({ warm: true }))
console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`)
console.log(`python step start: cold ${cold.toFixed(2)} s, warm ${warm.toFixed(2)} s`)

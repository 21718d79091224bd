/**
 * Per-step overhead of each executor: the time from `run(spec)` to its result for a trivial step (the
 * executor tests' Python worker taking one step of no work), side by side for the local executor, a
 * one-node Slurm and a one-node Ray head, both started here on loopback as the tests start them.
 * Cluster jobs run the real path: sbatch / the Jobs API, the runner, `anneal exec-step`, the worker.
 *
 *   npx tsx bench/executor-overhead.ts [runs per executor, default 5]
 *
 * Prints each run, the median per executor, and last:
 *   executor overhead per step: local X s, slurm Y s, ray Z s
 */
import * as fs from "node:fs"
import type { Executor } from "../engine/spec.ts"
import { makeLocalExecutor } from "../engine/executors/local.ts"
import { makeRayExecutor } from "../engine/executors/ray.ts"
import { makeSlurmExecutor } from "../engine/executors/slurm.ts"
import { startRay } from "../test/executors/ray-cluster.ts"
import { startSlurm } from "../test/executors/slurm-cluster.ts"
import { makeStoreDir, runSpec, workerSpec } from "../test/executors/specs.ts"

const runs = Number(process.argv[2] ?? 5)

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const measure = async (name: string, executor: Executor): Promise<number> => {
  const store = makeStoreDir()
  const times: Array<number> = []
  try {
    // one unmeasured run: first-use costs (imports, Ray's first worker) are not per-step overhead
    for (let i = 0; i <= runs; i++) {
      const spec = workerSpec(store, { params: { steps: 1, text: `bench ${i}` } })
      const t0 = performance.now()
      const { error } = await runSpec(executor, spec)
      const seconds = (performance.now() - t0) / 1000
      if (error !== undefined) throw new Error(`${name}: ${error.message}`)
      if (i > 0) times.push(seconds)
      console.log(`${name} run ${i}${i === 0 ? " (warm-up)" : ""}: ${seconds.toFixed(2)} s`)
    }
  } finally {
    fs.rmSync(store, { recursive: true, force: true })
  }
  const m = median(times)
  console.log(`${name}: median ${m.toFixed(2)} s over ${runs} runs`)
  return m
}

const local = await measure("local", makeLocalExecutor())

const slurmCluster = await startSlurm()
let slurm: number
try {
  slurm = await measure("slurm", makeSlurmExecutor({ slurmConf: slurmCluster.slurmConf, pollSeconds: 0.25 }))
} finally {
  await slurmCluster.stop()
}

const rayCluster = await startRay()
let ray: number
try {
  ray = await measure("ray", makeRayExecutor({ address: rayCluster.address, pollSeconds: 0.25 }))
} finally {
  await rayCluster.stop()
}

console.log(`executor overhead per step: local ${local.toFixed(2)} s, slurm ${slurm.toFixed(2)} s, ray ${ray.toFixed(2)} s`)

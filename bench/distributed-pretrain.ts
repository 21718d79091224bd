/**
 * The launch overhead of a distributed pretrain: the same tiny pretrain (2-layer Llama, 64-token
 * sequences, 8 per process, gloo on CPU) with 1, 2 and 4 processes, through `anneal run` (the pretrain
 * step: torchrun argv from steps/train/torchrun.ts, memory-mapped tokens, rank-0 progress, per-rank logs,
 * commit) and launched directly with torchrun (bench/pretrain_direct.py, the same model and
 * TrainingArguments), alternating. Tokens/s = optimizer steps x 64 x 8 x processes / the Trainer's
 * train_runtime on both sides; wall seconds (process start to exit) beside it.
 *
 *   npx tsx bench/distributed-pretrain.ts [--steps 60] [--repeats 1] [--processes 1,2,4] [--ray]
 *
 * With --ray, anneal's side runs through the Ray executor on a one-node Ray head started here on
 * loopback (as the tests start it): the step's torchrun runs inside the Ray job.
 *
 * Last line: `distributed pretrain overhead vs direct torchrun: N%` (tokens/s summed over the process
 * counts, positive = anneal slower).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { checkPythonEnv, projectRoot, pythonEnvVars } from "../engine/python.ts"

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "60" }, repeats: { type: "string", default: "1" }, processes: { type: "string", default: "1,2,4" },
    ray: { type: "boolean", default: false }
  }
})
const steps = Number(values.steps)
const repeats = Number(values.repeats)
const counts = values.processes!.split(",").map(Number)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-bench-dist-"))
const python = checkPythonEnv()
const env = pythonEnvVars()

await execa(python, [path.join(projectRoot, "test", "steps", "train", "make_fixtures.py"), dir], { env })
const text = path.join(dir, "text")
const tokenizer = path.join(dir, "tokenizer")
fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "bench", type: "module", private: true }))
for (const n of counts) {
  fs.writeFileSync(path.join(dir, `recipe-${n}.ts`), `
import { recipe, source, pretrain, Text } from ${JSON.stringify(path.join(projectRoot, "index.ts"))}
export default recipe("distributed-pretrain-${n}", () => {
  pretrain({ data: source.dataset(${JSON.stringify(text)}, Text), tokenizer: source.tokenizer(${JSON.stringify(tokenizer)}) },
    { processes: ${n}, maxSteps: ${steps}, seqLen: 64, microBatchSize: 8, hiddenSize: 64, numLayers: 2, numHeads: 4,
      intermediateSize: 256, learningRate: 3e-4, lrScheduler: "cosine", seed: 0 }, { id: "pretrain" })
})
`)
}

interface Sample { readonly tokensPerSecond: number; readonly wall: number }

// --ray: anneal's runs go to a one-node Ray head on loopback, named in the recipes' anneal.config.json
const rayCluster = values.ray === true ? await (await import("../test/executors/ray-cluster.ts")).startRay() : undefined
if (rayCluster !== undefined) fs.writeFileSync(path.join(dir, "anneal.config.json"), JSON.stringify({ ray: { address: rayCluster.address, pollSeconds: 0.25 } }))
const executorArgs = rayCluster !== undefined ? ["--executor", "ray"] : []

const viaAnneal = async (n: number, i: number): Promise<Sample> => {
  const t0 = performance.now()
  const r = await execa("npx", [
    "anneal", "run", path.join(dir, `recipe-${n}.ts`), "--json", "--allow-cpu", "--jobs", String(Math.max(n, 1)),
    "--store", path.join(dir, `store-${n}-${i}`), ...executorArgs
  ], { cwd: projectRoot, reject: false, env: { ANNEAL_WARM_WORKERS: "0" } })
  const wall = (performance.now() - t0) / 1000
  const metrics: Record<string, number> = {}
  for (const line of String(r.stdout).split("\n")) {
    try {
      const e = JSON.parse(line)
      if (e.event === "metric" && e.step === "pretrain") metrics[e.name] = e.value
    } catch { /* not JSON */ }
  }
  if (r.exitCode !== 0 || metrics.train_runtime === undefined) throw new Error(`anneal run failed:\n${String(r.stdout).slice(-2000)}\n${String(r.stderr).slice(-2000)}`)
  return { tokensPerSecond: (steps * 64 * 8 * n) / metrics.train_runtime, wall }
}

const direct = async (n: number, i: number): Promise<Sample> => {
  const t0 = performance.now()
  const script = [path.join(projectRoot, "bench", "pretrain_direct.py"), text, tokenizer, String(steps), path.join(dir, `direct-${n}-${i}`)]
  const argv = n === 1 ? script : ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", String(n), ...script]
  const r = await execa(python, argv, { env })
  const wall = (performance.now() - t0) / 1000
  const out = JSON.parse(String(r.stdout).trim().split("\n").at(-1)!)
  return { tokensPerSecond: out.tokens_per_second, wall }
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const rows: Array<{ n: number; anneal: Array<Sample>; torchrun: Array<Sample> }> = counts.map((n) => ({ n, anneal: [], torchrun: [] }))
try {
  for (let i = 0; i < repeats; i++) {
    for (const row of rows) {
      // alternate, so drift in machine load hits both sides alike
      row.torchrun.push(await direct(row.n, i))
      row.anneal.push(await viaAnneal(row.n, i))
      console.log(`run ${i + 1}, ${row.n} process(es): torchrun ${row.torchrun.at(-1)!.tokensPerSecond.toFixed(0)} tok/s, anneal ${row.anneal.at(-1)!.tokensPerSecond.toFixed(0)} tok/s`)
    }
  }
} finally {
  await rayCluster?.stop()
}
console.log("")
const side = rayCluster !== undefined ? "anneal on Ray" : "anneal"
console.log(`| tiny pretrain, ${steps} steps, CPU gloo (median of ${repeats}) | torchrun tok/s | ${side} tok/s | torchrun wall s | ${side} wall s |`)
console.log("|---|---:|---:|---:|---:|")
let sumDirect = 0
let sumAnneal = 0
for (const row of rows) {
  const d = median(row.torchrun.map((s) => s.tokensPerSecond))
  const a = median(row.anneal.map((s) => s.tokensPerSecond))
  sumDirect += d
  sumAnneal += a
  console.log(`| ${row.n} process(es) | ${d.toFixed(0)} | ${a.toFixed(0)} | ${median(row.torchrun.map((s) => s.wall)).toFixed(1)} | ${median(row.anneal.map((s) => s.wall)).toFixed(1)} |`)
}
console.log(`load average at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(" ")} (${os.cpus().length} cores)`)
console.log(`distributed pretrain overhead${rayCluster !== undefined ? " on Ray" : ""} vs direct torchrun: ${(((sumDirect - sumAnneal) / sumDirect) * 100).toFixed(1)}%`)
fs.rmSync(dir, { recursive: true, force: true })

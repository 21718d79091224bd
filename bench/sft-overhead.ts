/**
 * The engine's overhead on a training step: the same tiny SFT (LoRA on a 2-layer Llama, Alpaca-templated
 * instructions, CPU) run through `anneal run` (the sft-lora step: spec, Python worker, progress
 * callback, commit to the store) and directly through TRL (bench/sft_direct.py, the same SFTConfig),
 * alternating, `--repeats` times each. Tokens per second is non-padding tokens / the Trainer's
 * train_runtime on both sides; wall-clock seconds per run (process start to exit) are shown beside it.
 *
 *   npx tsx bench/sft-overhead.ts [--steps 300] [--repeats 3]
 *
 * Last line: `sft overhead vs direct trl: N%` (median tokens/s, positive = anneal slower).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { checkPythonEnv, projectRoot, pythonEnvVars } from "../engine/python.ts"

const { values } = parseArgs({ options: { steps: { type: "string", default: "300" }, repeats: { type: "string", default: "3" } } })
const steps = Number(values.steps)
const repeats = Number(values.repeats)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-bench-sft-"))
const python = checkPythonEnv()
const env = pythonEnvVars()

await execa(python, [path.join(projectRoot, "test", "steps", "train", "make_fixtures.py"), dir], { env })
const model = path.join(dir, "base")
const data = path.join(dir, "instructions")
fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "bench", type: "module", private: true }))
fs.writeFileSync(path.join(dir, "recipe.ts"), `
import { recipe, source, sftLora, Instruction } from ${JSON.stringify(path.join(projectRoot, "index.ts"))}
export default recipe("sft-overhead", () => {
  sftLora({ model: source.model(${JSON.stringify(model)}), data: source.dataset(${JSON.stringify(data)}, Instruction) },
    { maxSteps: ${steps}, microBatchSize: 4 }, { id: "sft" })
})
`)

interface Sample { readonly tokensPerSecond: number; readonly wall: number }

const viaAnneal = async (i: number): Promise<Sample> => {
  const t0 = performance.now()
  const r = await execa("npx", ["anneal", "run", path.join(dir, "recipe.ts"), "--json", "--allow-cpu", "--store", path.join(dir, `store-${i}`)], {
    cwd: projectRoot, reject: false
  })
  const wall = (performance.now() - t0) / 1000
  const metrics: Record<string, number> = {}
  for (const line of String(r.stdout).split("\n")) {
    try {
      const e = JSON.parse(line)
      if (e.event === "metric" && e.step === "sft") metrics[e.name] = e.value
    } catch { /* not JSON */ }
  }
  if (r.exitCode !== 0 || metrics.train_runtime === undefined) throw new Error(`anneal run failed:\n${String(r.stderr).slice(-2000)}`)
  return { tokensPerSecond: metrics.num_input_tokens_seen! / metrics.train_runtime, wall }
}

const direct = async (i: number): Promise<Sample> => {
  const t0 = performance.now()
  const r = await execa(python, [path.join(projectRoot, "bench", "sft_direct.py"), model, data, String(steps), path.join(dir, `direct-${i}`)], { env })
  const wall = (performance.now() - t0) / 1000
  const out = JSON.parse(String(r.stdout).trim().split("\n").at(-1)!)
  return { tokensPerSecond: out.tokens_per_second, wall }
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const anneal: Array<Sample> = []
const trl: Array<Sample> = []
for (let i = 0; i < repeats; i++) {
  // alternate, so drift in machine load hits both sides alike
  trl.push(await direct(i))
  anneal.push(await viaAnneal(i))
  console.log(`run ${i + 1}: direct trl ${trl.at(-1)!.tokensPerSecond.toFixed(0)} tok/s, anneal ${anneal.at(-1)!.tokensPerSecond.toFixed(0)} tok/s`)
}
const a = median(anneal.map((s) => s.tokensPerSecond))
const d = median(trl.map((s) => s.tokensPerSecond))
console.log("")
console.log(`| tiny SFT, ${steps} steps, CPU (median of ${repeats}) | tokens/s | wall s |`)
console.log("|---|---:|---:|")
console.log(`| direct TRL | ${d.toFixed(0)} | ${median(trl.map((s) => s.wall)).toFixed(1)} |`)
console.log(`| anneal run (sft-lora) | ${a.toFixed(0)} | ${median(anneal.map((s) => s.wall)).toFixed(1)} |`)
console.log(`sft overhead vs direct trl: ${(((d - a) / d) * 100).toFixed(1)}%`)
fs.rmSync(dir, { recursive: true, force: true })

/**
 * What the eval step costs beyond the evaluation: the same model (a tiny 2-layer Llama from the test
 * fixtures) on the same local multiple-choice task (the demo's quiz, recipes/data/demo/quiz.jsonl, 31
 * questions x 4 choices), CPU, alternating, `--repeats` times each:
 *
 * - `lm_eval run` directly, the way a user runs it (`--include_path` with the task's YAML);
 * - bench/eval_direct.py: the least lm-eval can do (the local task only, no index of the built-in tasks);
 * - `anneal run` of a recipe holding one eval step (a fresh store each time: spec, worker, commit).
 *
 *   npx tsx bench/eval-overhead.ts [--repeats 3]
 *
 * The scores must agree (the step runs the harness on the same YAML). Wall seconds are process start to
 * exit, medians. Last line: `eval overhead vs direct lm-eval: N%` (the step vs `lm_eval run`; negative =
 * the step is faster, since it skips indexing ~14,000 built-in task YAMLs that a local task never uses).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { checkPythonEnv, projectRoot, pythonEnvVars } from "../engine/python.ts"

const { values } = parseArgs({ options: { repeats: { type: "string", default: "3" } } })
const repeats = Number(values.repeats)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-bench-eval-"))
const python = checkPythonEnv()
const env = { ...pythonEnvVars(), CUDA_VISIBLE_DEVICES: "" }
const quiz = path.join(projectRoot, "recipes", "data", "demo", "quiz.jsonl")
const task = "demo_quiz"

await execa(python, [path.join(projectRoot, "test", "steps", "train", "make_fixtures.py"), dir], { env })
const model = path.join(dir, "base")
// the task YAML the step writes for a local benchmark (steps/train/eval/worker.py: write_local_task)
const taskDir = path.join(dir, "tasks")
fs.mkdirSync(taskDir)
fs.writeFileSync(path.join(taskDir, `${task}.yaml`), JSON.stringify({
  task, dataset_path: "json", dataset_kwargs: { data_files: { test: [quiz] } }, test_split: "test",
  output_type: "multiple_choice", doc_to_text: "Question: {{question}}\nAnswer:", doc_to_choice: "{{choices}}",
  doc_to_target: "answer", target_delimiter: " ",
  metric_list: [
    { metric: "acc", aggregation: "mean", higher_is_better: true },
    { metric: "acc_norm", aggregation: "mean", higher_is_better: true }
  ]
}, null, 2))
fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "bench", type: "module", private: true }))
fs.writeFileSync(path.join(dir, "recipe.ts"), `
import { evaluate, recipe, source } from ${JSON.stringify(path.join(projectRoot, "index.ts"))}
export default recipe("eval-overhead", () => {
  evaluate({ model: source.model(${JSON.stringify(model)}), benchmarks: [source.dataset(${JSON.stringify(quiz)})] },
    { localTaskNames: [${JSON.stringify(task)}] }, { id: "eval", allowCpu: true })
})
`)

interface Sample { readonly wall: number; readonly acc: number }

const timed = async (run: () => Promise<number>): Promise<Sample> => {
  const t0 = performance.now()
  const acc = await run()
  return { wall: (performance.now() - t0) / 1000, acc }
}

const lmEvalCli = (i: number) => timed(async () => {
  const out = path.join(dir, `cli-${i}`)
  const r = await execa(python, [
    "-m", "lm_eval", "run", "--model", "hf", "--model_args", `pretrained=${model},dtype=float32`, "--tasks", task,
    "--include_path", taskDir, "--num_fewshot", "0", "--device", "cpu", "--batch_size", "8", "--output_path", out
  ], { env, reject: false })
  if (r.exitCode !== 0) throw new Error(`lm_eval run failed:\n${String(r.stderr).slice(-2000)}`)
  const files: Array<string> = []
  const walk = (d: string) => fs.readdirSync(d, { withFileTypes: true }).forEach((e) =>
    e.isDirectory() ? walk(path.join(d, e.name)) : e.name.startsWith("results") && files.push(path.join(d, e.name))
  )
  walk(out)
  return JSON.parse(fs.readFileSync(files[0]!, "utf8")).results[task]["acc,none"]
})

const lmEvalMinimal = () => timed(async () => {
  const r = await execa(python, [path.join(projectRoot, "bench", "eval_direct.py"), model, taskDir, task], { env })
  return JSON.parse(String(r.stdout).trim().split("\n").at(-1)!).acc
})

const viaAnneal = (i: number) => timed(async () => {
  const store = path.join(dir, `store-${i}`)
  const r = await execa(process.execPath, [path.join(projectRoot, "bin", "anneal.js"), "run", path.join(dir, "recipe.ts"), "--json", "--store", store], {
    cwd: projectRoot, reject: false
  })
  let output: string | undefined
  for (const line of String(r.stdout).split("\n")) {
    try {
      const e = JSON.parse(line)
      if (e.event === "step" && e.step === "eval") output = e.output
    } catch { /* not JSON */ }
  }
  if (r.exitCode !== 0 || output === undefined) throw new Error(`anneal run failed:\n${String(r.stderr).slice(-2000)}`)
  return JSON.parse(fs.readFileSync(path.join(store, "artifacts", output, "report.json"), "utf8")).results.results[task]["acc,none"]
})

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const cli: Array<Sample> = []
const minimal: Array<Sample> = []
const anneal: Array<Sample> = []
for (let i = 0; i < repeats; i++) {
  // alternate, so drift in machine load hits every side alike
  cli.push(await lmEvalCli(i))
  minimal.push(await lmEvalMinimal())
  anneal.push(await viaAnneal(i))
  console.log(`run ${i + 1}: lm_eval run ${cli.at(-1)!.wall.toFixed(1)} s, minimal lm-eval ${minimal.at(-1)!.wall.toFixed(1)} s, anneal eval step ${anneal.at(-1)!.wall.toFixed(1)} s`)
}
const accs = new Set([...cli, ...minimal, ...anneal].map((s) => s.acc))
if (accs.size !== 1) throw new Error(`the scores differ: ${[...accs].join(", ")}`)
const c = median(cli.map((s) => s.wall))
const m = median(minimal.map((s) => s.wall))
const a = median(anneal.map((s) => s.wall))
console.log("")
console.log(`| ${task} (31 x 4 choices), tiny Llama, CPU, median of ${repeats} | wall s | acc |`)
console.log("|---|---:|---:|")
console.log(`| lm_eval run (CLI, --include_path) | ${c.toFixed(1)} | ${cli[0]!.acc.toFixed(4)} |`)
console.log(`| lm-eval, local task only (bench/eval_direct.py) | ${m.toFixed(1)} | ${minimal[0]!.acc.toFixed(4)} |`)
console.log(`| anneal run (eval step, fresh store) | ${a.toFixed(1)} | ${anneal[0]!.acc.toFixed(4)} |`)
console.log(`eval overhead vs the least lm-eval can do: ${(((a - m) / m) * 100).toFixed(1)}%`)
console.log(`eval overhead vs direct lm-eval: ${(((a - c) / c) * 100).toFixed(1)}%`)
fs.rmSync(dir, { recursive: true, force: true })

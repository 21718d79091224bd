/**
 * Engine overhead on a generated recipe of 10,000 no-op steps (a few hundred roots, random fan-in):
 * the first run's per-step overhead, and a fully cached rerun end to end (a fresh `anneal run` process:
 * start-up, recipe import, graph validation, source hashing, 10,000 key computations and lookups).
 * With DVC installed (`pip install dvc`, optional; `--dvc PATH` names its executable), the same shape
 * is timed through `dvc repro` at a smaller size for the side-by-side ratio.
 *
 *   npm run bench:engine [-- --steps 10000] [-- --dvc-stages 300] [-- --dvc PATH]
 *
 * Last line: `null rerun of 10000 steps: X s`.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { projectRoot } from "../engine/python.ts"

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "10000" },
    "dvc-stages": { type: "string", default: "300" },
    dvc: { type: "string", default: "dvc" },
    keep: { type: "boolean" }
  }
})
const steps = Number(values.steps)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-bench-engine-"))
fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "bench", type: "module", private: true }))
fs.writeFileSync(path.join(dir, "seed.txt"), "seed\n")

const recipe = `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Schema } from ${JSON.stringify(path.join(projectRoot, "index.ts"))}
const noop = defineStep({
  kind: "noop", version: 1, params: Schema.Struct({ i: Schema.Int }),
  inputs: { parts: Port.many(Port.files()) }, output: Port.files(),
  run: (ctx) => { fs.writeFileSync(path.join(ctx.output, "out"), String(ctx.params.i)) }
})
let seed = 42
const rand = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
export default recipe("null-bench", () => {
  const src = source.files("seed.txt")
  const h: Array<any> = []
  const roots = Math.max(1, Math.floor(${steps} / 30))
  for (let i = 0; i < ${steps}; i++) {
    const parts = [] as Array<any>
    if (i < roots) parts.push(src)
    else for (let k = 0, n = 1 + Math.floor(rand() * 3); k < n; k++) parts.push(h[Math.floor(rand() * i)])
    h.push(noop({ parts }, { i }, { id: "s" + i }))
  }
})
`
fs.writeFileSync(path.join(dir, "recipe.ts"), recipe)

const anneal = async (label: string) => {
  const t = performance.now()
  const r = await execa(process.execPath, [path.join(projectRoot, "bin", "anneal.js"), "run", path.join(dir, "recipe.ts"), "--json"], { reject: false })
  const seconds = (performance.now() - t) / 1000
  const last = JSON.parse(String(r.stdout).trim().split("\n").at(-1) ?? "{}") as { ran?: number; cached?: number; seconds?: number }
  if (r.exitCode !== 0) throw new Error(`${label} failed: ${String(r.stderr).slice(0, 500)}`)
  return { seconds, engineSeconds: last.seconds ?? NaN, ran: last.ran, cached: last.cached }
}

const first = await anneal("first run")
console.log(`first run:   ${steps} steps ran=${first.ran} in ${first.seconds.toFixed(2)} s wall (${((first.seconds / steps) * 1000).toFixed(2)} ms per step, fsync included)`)
const nulls = []
for (let i = 0; i < 3; i++) nulls.push(await anneal("null rerun"))
const best = nulls.reduce((a, b) => (a.seconds < b.seconds ? a : b))
console.log(`null rerun:  cached=${best.cached} ran=${best.ran}; best of 3: ${best.seconds.toFixed(3)} s wall, ${best.engineSeconds.toFixed(3)} s inside the engine`)

// DVC side by side, when available: the same chain shape at a size DVC handles in reasonable time
const dvcBin = values.dvc
const dvc = await execa(dvcBin, ["--version"], { reject: false }).catch(() => undefined)
if (dvc !== undefined && dvc.exitCode === 0) {
  const stages = Number(values["dvc-stages"])
  const ddir = path.join(dir, "dvc")
  fs.mkdirSync(ddir)
  await execa("git", ["init", "-q"], { cwd: ddir })
  await execa(dvcBin, ["init", "-q"], { cwd: ddir })
  fs.writeFileSync(path.join(ddir, "seed.txt"), "seed\n")
  const lines = ["stages:"]
  for (let i = 0; i < stages; i++) {
    const dep = i < Math.max(1, Math.floor(stages / 30)) ? "seed.txt" : `o${Math.floor((i * 7919) % i)}`
    lines.push(`  s${i}:`, `    cmd: echo ${i} > o${i}`, `    deps: [${dep}]`, `    outs: [o${i}]`)
  }
  fs.writeFileSync(path.join(ddir, "dvc.yaml"), lines.join("\n") + "\n")
  await execa(dvcBin, ["repro", "-q"], { cwd: ddir })
  const t = performance.now()
  await execa(dvcBin, ["repro", "-q"], { cwd: ddir })
  const dvcSeconds = (performance.now() - t) / 1000
  const annealPerStage = best.seconds / steps
  const dvcPerStage = dvcSeconds / stages
  console.log(`dvc repro null rerun of ${stages} stages: ${dvcSeconds.toFixed(2)} s (${(dvcPerStage * 1000).toFixed(2)} ms per stage)`)
  console.log(`per-step null-rerun cost, anneal vs dvc: ${(dvcPerStage / annealPerStage).toFixed(0)}x less`)
} else {
  console.log("dvc not installed: skipping the side-by-side (pip install dvc to include it)")
}
if (values.keep !== true) fs.rmSync(dir, { recursive: true, force: true })
console.log(`null rerun of ${steps} steps: ${best.seconds.toFixed(2)} s`)

/**
 * Engine overhead, three figures:
 *
 * - a generated recipe of 10,000 no-op steps (a few hundred roots, random fan-in): the first run (every
 *   step executed and committed: fsync, rename, database rows) and a fully cached rerun end to end (a
 *   fresh `anneal run` process: start-up, recipe import, graph validation, source hashing, 10,000 key
 *   computations and lookups). `executed no-op step` is what an executed step costs beyond a cached
 *   one: (first run - null rerun) / steps.
 * - `commit of 100000 files`: the store's commit (hashing on the worker pool, flush, rename, manifest,
 *   database row) of one step output of 100,000 small files, through the Store API.
 * - DVC side by side at equal size: the same shape, 300 steps for both tools, each the best of the same
 *   number of null reruns, so each tool's start-up is spread over the same number of steps. DVC is
 *   taken from `--dvc PATH`, else from PATH, else installed from PyPI into a venv under the temp
 *   directory (kept for the next run); when none of that works the side-by-side is skipped, saying so.
 * - the null rerun again from the installed package, as a user runs it: this checkout packed (`npm pack`) and
 *   installed into a fresh project, its launcher run with the Node 24 the package brings (and with the
 *   bench's own Node when that is older: the launcher then re-runs itself under Node 24); then with its
 *   start-up bundle and without (ANNEAL_NO_STARTUP_BUNDLE=1), alternated; then printing plain lines into
 *   a pipe (CI logs), and with the live view in a pseudo-terminal (a user at a terminal).
 *
 *   npm run bench:engine [-- --steps 10000] [-- --dvc-stages 300] [-- --repeats 3] [-- --files 100000] [-- --dvc PATH] [-- --no-dvc] [-- --no-installed]
 *
 * Last lines: `executed no-op step: X ms`, `commit of 100000 files: X s`, `null rerun of 10000 steps: X s`
 * (the installed package's, when it was measured; the checkout's figure on the line before).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { execa } from "execa"
import { projectRoot } from "../engine/python.ts"
import { Store } from "../cache/store.ts"

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "10000" },
    "dvc-stages": { type: "string", default: "300" },
    repeats: { type: "string", default: "3" },
    files: { type: "string", default: "100000" },
    dvc: { type: "string" },
    "no-dvc": { type: "boolean" },
    "no-installed": { type: "boolean" },
    keep: { type: "boolean" }
  }
})
const steps = Number(values.steps)
const small = Number(values["dvc-stages"])
const repeats = Number(values.repeats)
const nFiles = Number(values.files)
const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-bench-engine-"))

/** Runs a command under GNU time when there is one, for its CPU seconds (user + system) beside wall time. */
const timeBin = fs.existsSync("/usr/bin/time") ? "/usr/bin/time" : undefined
const timed = async (file: string, args: ReadonlyArray<string>, options: { cwd?: string; env?: Record<string, string> | undefined } = {}) => {
  const r = timeBin === undefined
    ? await execa(file, args, { ...options, reject: false })
    : await execa(timeBin, ["-f", "BENCH_CPU %U %S", file, ...args], { ...options, reject: false })
  const m = /BENCH_CPU ([\d.]+) ([\d.]+)\s*$/.exec(String(r.stderr))
  return { r, cpu: m === null ? NaN : Number(m[1]) + Number(m[2]) }
}
const load = () => os.loadavg()[0]!.toFixed(1)

/** A project with the bench recipe at `n` steps (deterministic shape), importing anneal from `from`. */
const makeProject = (n: number, from = path.join(projectRoot, "index.ts"), name = `p${n}`): string => {
  const dir = path.join(root, name)
  fs.mkdirSync(dir)
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "bench", type: "module", private: true }))
  fs.writeFileSync(path.join(dir, "seed.txt"), "seed\n")
  fs.writeFileSync(path.join(dir, "recipe.ts"), `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Schema } from ${JSON.stringify(from)}
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
  const roots = Math.max(1, Math.floor(${n} / 30))
  for (let i = 0; i < ${n}; i++) {
    const parts = [] as Array<any>
    if (i < roots) parts.push(src)
    else for (let k = 0, n = 1 + Math.floor(rand() * 3); k < n; k++) parts.push(h[Math.floor(rand() * i)])
    h.push(noop({ parts }, { i }, { id: "s" + i }))
  }
})
`)
  return dir
}

/**
 * One `anneal run` in a fresh process: wall seconds, its CPU seconds, and the engine's own figure. By
 * default this checkout's launcher under the Node running the bench (from the TypeScript sources); `cli`
 * names another launcher and the Node to run it with (the installed package).
 */
const anneal = async (dir: string, label: string, cli: { node: string; bin: string; env?: Record<string, string> } = { node: process.execPath, bin: path.join(projectRoot, "bin", "anneal.js") }) => {
  const t = performance.now()
  const { r, cpu } = await timed(cli.node, [cli.bin, "run", path.join(dir, "recipe.ts"), "--json"], { env: cli.env })
  const seconds = (performance.now() - t) / 1000
  if (r.exitCode !== 0) throw new Error(`${label} failed: ${String(r.stderr).slice(0, 500)}`)
  const last = JSON.parse(String(r.stdout).trim().split("\n").at(-1) ?? "{}") as { ran?: number; cached?: number; seconds?: number }
  return { seconds, cpu, engineSeconds: last.seconds ?? NaN, ran: last.ran, cached: last.cached }
}

/** The best of n runs, with the median of their wall times (this machine's speed drifts within minutes). */
const bestOf = async (dir: string, n: number, cli?: Parameters<typeof anneal>[2]) => {
  const runs = []
  for (let i = 0; i < n; i++) runs.push(await anneal(dir, "null rerun", cli))
  const sorted = runs.map((r) => r.seconds).sort((a, b) => a - b)
  return { ...runs.reduce((a, b) => (a.seconds < b.seconds ? a : b)), median: sorted[(sorted.length - 1) >> 1]! }
}

// 1. the 10,000-step recipe: first run, then the fully cached rerun
const big = makeProject(steps)
const first = await anneal(big, "first run")
console.log(`first run:   ${steps} steps ran=${first.ran} in ${first.seconds.toFixed(2)} s wall (${((first.seconds / steps) * 1000).toFixed(2)} ms per step), ${first.cpu.toFixed(2)} s CPU, load ${load()}`)
const best = await bestOf(big, repeats)
console.log(`null rerun:  cached=${best.cached} ran=${best.ran}; best of ${repeats}: ${best.seconds.toFixed(3)} s wall (median ${best.median.toFixed(3)} s), ${best.engineSeconds.toFixed(3)} s inside the engine, ${best.cpu.toFixed(2)} s CPU, load ${load()}`)
const executedMs = ((first.seconds - best.seconds) / steps) * 1000

// 1b. the same recipe as a user runs it: this checkout packed (`npm pack`, which builds dist/), installed
// into a fresh project, its launcher run by the Node 24 the package brings; and, when the bench's own
// Node is older than 22.15, by that Node too (the launcher re-runs itself under Node 24)
const installed = await (async () => {
  if (values["no-installed"] === true) return undefined
  const packed = await execa("npm", ["pack", "--pack-destination", root, "--silent"], { cwd: projectRoot, reject: false })
  const tarball = String(packed.stdout).trim().split("\n").at(-1) ?? ""
  if (packed.exitCode !== 0 || !fs.existsSync(path.join(root, tarball))) {
    console.log(`npm pack failed: skipping the installed package (${String(packed.stderr).slice(0, 300)})`)
    return undefined
  }
  const dir = makeProject(steps, "anneal", "installed")
  const install = await execa("npm", ["install", "--no-audit", "--no-fund", path.join(root, tarball)], { cwd: dir, reject: false })
  if (install.exitCode !== 0) {
    console.log(`npm install of the packed tarball failed: skipping the installed package (${String(install.stderr).slice(0, 300)})`)
    return undefined
  }
  const bin = path.join(dir, "node_modules", "anneal", "bin", "anneal.js")
  const node24 = path.join(dir, "node_modules", "node", "bin", "node")
  await anneal(dir, "first run (installed)", { node: node24, bin })
  const direct = await bestOf(dir, repeats, { node: node24, bin })
  console.log(`null rerun, installed package (Node ${String((await execa(node24, ["--version"])).stdout).trim()}): best of ${repeats}: ${direct.seconds.toFixed(3)} s wall (median ${direct.median.toFixed(3)} s), ${direct.engineSeconds.toFixed(3)} s inside the engine, ${direct.cpu.toFixed(2)} s CPU, load ${load()}`)
  // the start-up bundle (scripts/startup-bundle.js) against every module loaded from its own file,
  // alternated so that a drift of the machine's speed touches both alike
  const seconds: Record<"bundle" | "files", Array<number>> = { bundle: [], files: [] }
  for (let i = 0; i < Math.max(repeats, 5); i++) {
    seconds.bundle.push((await anneal(dir, "null rerun (bundle)", { node: node24, bin })).seconds)
    seconds.files.push((await anneal(dir, "null rerun (files)", { node: node24, bin, env: { ANNEAL_NO_STARTUP_BUNDLE: "1" } })).seconds)
  }
  const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  console.log(`null rerun, installed package, alternated ${seconds.bundle.length} times: start-up bundle median ${median(seconds.bundle).toFixed(3)} s (best ${Math.min(...seconds.bundle).toFixed(3)}), modules from their files (ANNEAL_NO_STARTUP_BUNDLE=1) median ${median(seconds.files).toFixed(3)} s (best ${Math.min(...seconds.files).toFixed(3)}), load ${load()}`)
  // the same rerun as CI logs see it: plain lines into a pipe (the reporter a run gets without --json
  // and without a terminal), best of the same number of runs
  const plain: Array<number> = []
  for (let i = 0; i < repeats; i++) {
    const t = performance.now()
    const { r } = await timed(node24, [bin, "run", path.join(dir, "recipe.ts")], {})
    plain.push((performance.now() - t) / 1000)
    if (r.exitCode !== 0 || !String(r.stdout).includes(`cached ${steps} `)) throw new Error(`null rerun (plain lines) failed: ${String(r.stderr).slice(0, 500)}${String(r.stdout).slice(-300)}`)
  }
  console.log(`null rerun, installed package, plain lines into a pipe: best of ${repeats}: ${Math.min(...plain).toFixed(3)} s wall (median ${median(plain).toFixed(3)} s), load ${load()}`)
  // and as a user at a terminal sees it: the live view, in a pseudo-terminal (Python's pty module, given
  // an argument array; it adds its own start-up and copying), best of the same number of runs
  const terminal: Array<number> = []
  for (let i = 0; i < repeats; i++) {
    const t = performance.now()
    const r = await execa("python3", ["-c", "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)", node24, bin, "run", path.join(dir, "recipe.ts")], { reject: false, stdin: "ignore" })
    terminal.push((performance.now() - t) / 1000)
    if (r.exitCode !== 0 || !String(r.stdout).includes(`cached ${steps} `)) throw new Error(`null rerun (terminal) failed: ${String(r.stderr).slice(0, 500)}${String(r.stdout).slice(-300)}`)
  }
  console.log(`null rerun, installed package, live view in a pseudo-terminal: best of ${repeats}: ${Math.min(...terminal).toFixed(3)} s wall (median ${median(terminal).toFixed(3)} s), load ${load()}`)
  const [major, minor] = process.versions.node.split(".").map(Number) as [number, number]
  if (major < 22 || (major === 22 && minor < 15) || major === 23) {
    const relaunched = await bestOf(dir, repeats, { node: process.execPath, bin })
    console.log(`null rerun, installed package started by Node ${process.version} (re-runs itself under Node 24): best of ${repeats}: ${relaunched.seconds.toFixed(3)} s wall`)
  }
  return direct
})()

// 2. one commit of many small files, through the store
const commitSeconds = await (async () => {
  const store = Store.open(path.join(root, "commit-store"))
  try {
    const staging = store.newStaging("c".repeat(64))
    for (let i = 0; i < nFiles; i += 1000) {
      const sub = path.join(staging, `d${i / 1000}`)
      fs.mkdirSync(sub)
      for (let j = i; j < Math.min(nFiles, i + 1000); j++) fs.writeFileSync(path.join(sub, `f${j}.json`), `{"row":${j}}\n`)
    }
    const c0 = process.cpuUsage()
    const t = performance.now()
    const c = await store.commit(staging, "dataset", {})
    const s = (performance.now() - t) / 1000
    const cpu = process.cpuUsage(c0)
    console.log(`commit:      ${c.files} files in ${s.toFixed(2)} s wall (${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU on the main thread, workers excluded), load ${load()}`)
    return s
  } finally {
    store.close()
  }
})()

// 3. DVC side by side at equal size
const findDvc = async (): Promise<string | undefined> => {
  const works = async (bin: string) => (await execa(bin, ["--version"], { reject: false }).catch(() => undefined))?.exitCode === 0
  if (values.dvc !== undefined) return (await works(values.dvc)) ? values.dvc : undefined
  if (await works("dvc")) return "dvc"
  const venv = path.join(os.tmpdir(), "anneal-bench-dvc-venv")
  const bin = path.join(venv, "bin", "dvc")
  if (await works(bin)) return bin
  console.log(`dvc not found: installing it from PyPI into ${venv} ...`)
  const made = await execa("python3", ["-m", "venv", venv], { reject: false }).catch(() => undefined)
  if (made?.exitCode !== 0) return undefined
  const pip = await execa(path.join(venv, "bin", "pip"), ["install", "-q", "dvc"], { reject: false, timeout: 900_000 }).catch(() => undefined)
  return pip?.exitCode === 0 && (await works(bin)) ? bin : undefined
}
const dvcBin = values["no-dvc"] === true ? undefined : await findDvc()
if (dvcBin !== undefined) {
  const ddir = path.join(root, "dvc")
  fs.mkdirSync(ddir)
  await execa("git", ["init", "-q"], { cwd: ddir })
  await execa(dvcBin, ["init", "-q"], { cwd: ddir })
  fs.writeFileSync(path.join(ddir, "seed.txt"), "seed\n")
  const lines = ["stages:"]
  for (let i = 0; i < small; i++) {
    const dep = i < Math.max(1, Math.floor(small / 30)) ? "seed.txt" : `o${Math.floor((i * 7919) % i)}`
    lines.push(`  s${i}:`, `    cmd: echo ${i} > o${i}`, `    deps: [${dep}]`, `    outs: [o${i}]`)
  }
  fs.writeFileSync(path.join(ddir, "dvc.yaml"), lines.join("\n") + "\n")
  await execa(dvcBin, ["repro", "-q"], { cwd: ddir })
  const dvcRuns: Array<{ seconds: number; cpu: number }> = []
  for (let i = 0; i < repeats; i++) {
    const t = performance.now()
    const { r, cpu } = await timed(dvcBin, ["repro", "-q"], { cwd: ddir })
    if (r.exitCode !== 0) throw new Error(`dvc repro failed: ${String(r.stderr).slice(0, 500)}`)
    dvcRuns.push({ seconds: (performance.now() - t) / 1000, cpu })
  }
  const dvcBest = dvcRuns.reduce((a, b) => (a.seconds < b.seconds ? a : b))
  const smallDir = makeProject(small)
  await anneal(smallDir, "first run (small)")
  const annealSmall = await bestOf(smallDir, repeats)
  console.log(`null rerun of ${small} steps, best of ${repeats}: anneal ${annealSmall.seconds.toFixed(3)} s (${annealSmall.cpu.toFixed(2)} s CPU), dvc repro ${dvcBest.seconds.toFixed(3)} s (${dvcBest.cpu.toFixed(2)} s CPU): anneal ${(dvcBest.seconds / annealSmall.seconds).toFixed(1)}x faster at equal size (load ${load()})`)
  console.log(`per-step null-rerun cost: anneal ${((best.seconds / steps) * 1000).toFixed(3)} ms at ${steps} steps, ${((annealSmall.seconds / small) * 1000).toFixed(2)} ms at ${small}; dvc ${((dvcBest.seconds / small) * 1000).toFixed(2)} ms at ${small}`)
} else {
  console.log(`dvc ${values["no-dvc"] === true ? "left out (--no-dvc)" : "not available and could not be installed"}: skipping the side-by-side`)
}
if (values.keep !== true) fs.rmSync(root, { recursive: true, force: true })
console.log(`executed no-op step: ${executedMs.toFixed(2)} ms`)
console.log(`commit of ${nFiles} files: ${commitSeconds.toFixed(2)} s`)
if (installed !== undefined) console.log(`null rerun of ${steps} steps from this checkout's sources (tsx): ${best.seconds.toFixed(2)} s`)
// the figure a user sees: the installed package when it was measured
console.log(`null rerun of ${steps} steps: ${(installed ?? best).seconds.toFixed(2)} s${installed === undefined ? " (from this checkout's sources)" : " (installed package)"}`)

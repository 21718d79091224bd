/**
 * Start-up of the `anneal` command: wall time of `anneal --help`, of `anneal plan` on the small recipes
 * (curation: TypeScript steps only; demo: the whole pipeline) and of a fully cached `anneal run` of the
 * curation recipe printing plain lines into a pipe, each the median of N fresh processes, with the CPU
 * seconds (user + system, from GNU time when there is one) and the load average. Plans and runs use a
 * store in a temporary directory, where a first run has built the curation recipe.
 *
 * The command runs as a user types it, `node bin/anneal.js ...`, under two Nodes: the Node 24 that
 * anneal brings (what `npm run` and `npx` put first on PATH) and, when the `node` on PATH is older than
 * 22.15, that one too, which re-runs the launcher under Node 24 (one Node start more).
 * `--modules` also counts the modules each command loads (a module hook registered before the
 * launcher), grouped by where they come from.
 *
 *   npx tsx bench/startup.ts [--runs 10] [--modules]
 *
 * Last lines: `anneal --help: X s`, `plan of recipes/curation.ts: Y s`, `plan of recipes/demo.ts: Z s`,
 * `cached run of recipes/curation.ts: W s` (medians under the Node 24 that anneal brings).
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { createRequire } from "node:module"

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" }, modules: { type: "boolean" } } })
const runs = Number(values.runs)
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: expected a positive integer, got ${values.runs}`)

const root = path.resolve(import.meta.dirname, "..")
const launcher = path.join(root, "bin", "anneal.js")
const node24 = path.join(path.dirname(createRequire(import.meta.url).resolve("node/package.json")), "bin", "node")
const timeBin = fs.existsSync("/usr/bin/time") ? "/usr/bin/time" : undefined
const load = () => os.loadavg().map((l) => l.toFixed(2)).join(" ")

/** One fresh process: wall seconds, CPU seconds (NaN without GNU time), and the exit status checked. */
const once = (node: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env) => {
  const argv = [node, launcher, ...args]
  const started = performance.now()
  const r = timeBin === undefined
    ? spawnSync(argv[0]!, argv.slice(1), { cwd: root, env, encoding: "utf8" })
    : spawnSync(timeBin, ["-f", "BENCH_CPU %U %S", ...argv], { cwd: root, env, encoding: "utf8" })
  const seconds = (performance.now() - started) / 1000
  if (r.status !== 0) throw new Error(`${args.join(" ")} exited with ${r.status ?? r.signal}: ${String(r.stderr).trim().split("\n").at(-1)}`)
  const m = /BENCH_CPU ([\d.]+) ([\d.]+)\s*$/.exec(String(r.stderr))
  return { seconds, cpu: m === null ? NaN : Number(m[1]) + Number(m[2]), stderr: String(r.stderr) }
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const store = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "anneal-bench-startup-")), "store")
const commands: ReadonlyArray<{ readonly label: string; readonly args: ReadonlyArray<string> }> = [
  { label: "anneal --help", args: ["--help"] },
  { label: "plan of recipes/curation.ts", args: ["plan", "recipes/curation.ts", "--store", store] },
  { label: "plan of recipes/demo.ts", args: ["plan", "recipes/demo.ts", "--store", store] },
  { label: "cached run of recipes/curation.ts", args: ["run", "recipes/curation.ts", "--store", store] }
]

// the first `node` on PATH outside node_modules (npx and npm run put anneal's own Node 24 first)
const pathDirs = (process.env.PATH ?? "").split(path.delimiter).filter((d) => d !== "" && !d.split(path.sep).includes("node_modules"))
const onPath = pathDirs.map((d) => path.join(d, "node")).find((f) => fs.existsSync(f)) ?? "node"
const pathNode = spawnSync(onPath, ["-p", "process.versions.node + ' ' + process.execPath"], { encoding: "utf8" })
const [pathVersion, pathExec] = pathNode.status === 0 ? pathNode.stdout.trim().split(" ") : [undefined, undefined]
const [major, minor] = (pathVersion ?? "0.0").split(".").map(Number) as [number, number]
const pathNodeIsOld = pathExec !== undefined && (major < 22 || (major === 22 && minor < 15) || major === 23)
const nodes: ReadonlyArray<{ readonly name: string; readonly exec: string }> = [
  { name: "node 24 (anneal's own)", exec: node24 },
  ...(pathNodeIsOld ? [{ name: `node ${pathVersion} on PATH (re-runs under Node 24)`, exec: pathExec! }] : [])
]

console.log(`${runs} runs each, ${os.cpus().length} CPUs, load ${load()} at the start`)
// the curation recipe built once into the bench's store, then one warm-up of each command, so that the
// compile caches (tsx's, V8's) hold the current sources
once(node24, ["run", "recipes/curation.ts", "--store", store])
for (const c of commands) once(node24, c.args)

const medians = new Map<string, number>()
for (const n of nodes) {
  for (const c of commands) {
    const walls: Array<number> = []
    const cpus: Array<number> = []
    for (let i = 0; i < runs; i++) {
      const r = once(n.exec, c.args)
      walls.push(r.seconds)
      cpus.push(r.cpu)
    }
    if (n.exec === node24) medians.set(c.label, median(walls))
    console.log(
      `${n.name.padEnd(44)} ${c.label.padEnd(34)} median ${median(walls).toFixed(3)} s wall (min ${Math.min(...walls).toFixed(3)}, max ${Math.max(...walls).toFixed(3)}), ` +
        `${median(cpus).toFixed(2)} s CPU, load ${load()}`
    )
  }
}

if (values.modules === true) {
  // A hook registered before the launcher sees every module load (Node's own loader and tsx's), and
  // prints the counts by origin when the process exits.
  const hook = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "anneal-bench-startup-")), "count-modules.mjs")
  fs.writeFileSync(
    hook,
    `import { registerHooks } from "node:module"
const seen = new Set()
registerHooks({ load: (url, context, next) => { seen.add(url); return next(url, context) } })
process.on("exit", () => {
  const groups = {}
  for (const url of seen) {
    const m = /\\/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(url)
    const g = url.startsWith("node:") ? "node builtins" : m !== null ? m[1] : url.startsWith("file:") ? "anneal sources" : "other"
    groups[g] = (groups[g] ?? 0) + 1
  }
  const top = Object.entries(groups).sort((a, b) => b[1] - a[1]).map(([g, n]) => g + " " + n).join(", ")
  process.stderr.write("BENCH_MODULES " + seen.size + " (" + top + ")\\n")
})
`
  )
  for (const c of commands) {
    const r = once(node24, c.args, { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import ${hook}`.trim() })
    const lines = r.stderr.split("\n").filter((l) => l.startsWith("BENCH_MODULES "))
    console.log(`modules loaded by ${c.label}: ${lines.map((l) => l.slice("BENCH_MODULES ".length)).join(" | ")}`)
  }
  fs.rmSync(path.dirname(hook), { recursive: true, force: true })
}

fs.rmSync(path.dirname(store), { recursive: true, force: true })
for (const c of commands) console.log(`${c.label}: ${medians.get(c.label)!.toFixed(2)} s`)

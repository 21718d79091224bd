/**
 * Start-up: what the command loads before it does anything. `anneal --help` loads neither the engine nor
 * Effect; `anneal plan` loads none of what only a run that starts processes or talks to a cluster needs
 * (execa and its ~140 modules, node:http, the cluster executors); a run that prints plain lines loads no
 * Ink or React, and a local run no cluster executor; and when such a module cannot load, the step that
 * needed it fails with a message naming it, while the rest of the command works. (Times are in
 * bench/startup.ts.)
 */
import * as fs from "node:fs"
import { describe, expect, it } from "vitest"
import { annealIndex, cli, statuses, tempProject } from "../helpers/project.ts"

/**
 * A module hook loaded before the launcher (NODE_OPTIONS --import): writes every URL loaded to
 * $MODULES_OUT when the process exits; with $REFUSE set, resolving that package name fails as a
 * missing package would.
 */
const hook = `
import * as fs from "node:fs"
import { registerHooks } from "node:module"
import { isMainThread } from "node:worker_threads"
const loaded = []
// the CLI's own thread only: a worker thread (source hashing) and the processes a step starts get
// --import too, and must not write the list
const cli = isMainThread && /anneal\\.js$/.test(process.argv[1] ?? "")
if (cli) registerHooks({
  resolve: (specifier, context, next) => {
    if (process.env.REFUSE !== undefined && specifier === process.env.REFUSE) throw new Error("Cannot find package '" + specifier + "' (refused by the test)")
    return next(specifier, context)
  },
  load: (url, context, next) => {
    loaded.push(url)
    return next(url, context)
  }
})
if (cli) process.on("exit", () => fs.writeFileSync(process.env.MODULES_OUT, loaded.join("\\n")))
`

const recipe = `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Text, Schema } from ${JSON.stringify(annealIndex)}

const upper = defineStep({
  kind: "upper", version: 1, params: Schema.Struct({}),
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  run: async (ctx) => {
    const text = fs.readFileSync(ctx.inputs.data, "utf8").trim().toUpperCase()
    fs.writeFileSync(path.join(ctx.output, "data.jsonl"), JSON.stringify({ text }) + "\\n")
  }
})

const tooled = defineStep({
  kind: "tooled", version: 1, params: Schema.Struct({}),
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  command: () => ({ argv: [process.execPath, "tool.mjs"] })
})

export default recipe("startup", () => {
  const data = source.dataset("data.txt", Text)
  upper({ data })
  tooled({ data })
})
`

/** the command step's program: one row into its output */
const tool = `
import * as fs from "node:fs"
import * as path from "node:path"
const spec = JSON.parse(fs.readFileSync(process.env.ANNEAL_SPEC, "utf8"))
fs.writeFileSync(path.join(spec.output, "data.jsonl"), JSON.stringify({ text: "from the tool" }) + "\\n")
`

const project = () => {
  const p = tempProject("anneal-startup-")
  p.write("data.txt", "alpha\n")
  p.write("recipe.ts", recipe)
  p.write("tool.mjs", tool)
  p.write("hook.mjs", hook)
  const modules = p.file("modules.txt")
  const env = (extra: Record<string, string> = {}) => ({ NODE_OPTIONS: `--import ${p.file("hook.mjs")}`, MODULES_OUT: modules, ...extra })
  const loaded = () => fs.readFileSync(modules, "utf8").split("\n").filter((u) => u !== "")
  return { p, env, loaded }
}

const fromPackage = (urls: ReadonlyArray<string>, name: string) => urls.filter((u) => u.includes(`/node_modules/${name}/`))

/** The cluster executors' code (not their registrations, slurm-config.ts and ray-config.ts): only a run on a cluster needs it. */
const clusterCode = /\/engine\/executors\/(slurm|ray|cluster-executor|cluster-job|placement|shard-jobs)\.[jt]s$/
const clusterModules = (urls: ReadonlyArray<string>) => urls.filter((u) => clusterCode.test(u)).map((u) => u.replace(/^.*\/engine\//, "engine/"))

describe("start-up", () => {
  it("--help loads neither the engine nor Effect, plan neither execa nor node:http, a plain run no Ink", async () => {
    const { p, env, loaded } = project()
    const help = await cli(["--help"], { cwd: p.dir, env: env() })
    expect(help.exitCode, help.stderr).toBe(0)
    expect(help.stdout).toMatch(/plan <recipe>/)
    const helpModules = loaded()
    expect(helpModules.some((u) => u.endsWith("/cli/main.ts") || u.endsWith("/cli/main.js")), "the hook saw the CLI load").toBe(true)
    expect(fromPackage(helpModules, "effect")).toEqual([])
    expect(helpModules.filter((u) => /\/(engine|cache|steps)\//.test(u) && !u.includes("/node_modules/"))).toEqual([])

    const plan = await cli(["plan", p.file("recipe.ts"), "--store", p.store], { cwd: p.dir, env: env() })
    expect(plan.exitCode, plan.stderr).toBe(0)
    expect(plan.stdout).toMatch(/upper/)
    expect(plan.stdout).toMatch(/tooled/)
    const planModules = loaded()
    expect(fromPackage(planModules, "effect").length, "the hook saw Effect load").toBeGreaterThan(0)
    expect(fromPackage(planModules, "execa")).toEqual([])
    expect(planModules.filter((u) => u === "node:http" || u === "node:https")).toEqual([])
    expect(planModules.some((u) => u.endsWith("/engine/executors/slurm-config.ts")), "the hook saw the registrations load").toBe(true)
    expect(clusterModules(planModules)).toEqual([])

    // a run into a pipe prints plain lines: the live view's Ink and React (~500 modules) stay unloaded
    const run = await cli(["run", p.file("recipe.ts"), "--store", p.store], { cwd: p.dir, env: env() })
    expect(run.exitCode, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/ran 2/)
    const runModules = loaded()
    expect(fromPackage(runModules, "execa").length, "the command step started through execa").toBeGreaterThan(0)
    expect([...fromPackage(runModules, "ink"), ...fromPackage(runModules, "react")]).toEqual([])
    expect(clusterModules(runModules)).toEqual([])
  })

  it("plan on a cluster describes from the registration alone; a run there loads the executor at its first step", async () => {
    const { p, env, loaded } = project()
    p.write("anneal.config.json", JSON.stringify({ slurm: { partition: "gpu" }, ray: { address: "http://127.0.0.1:1" } }))
    const plan = await cli(["plan", p.file("recipe.ts"), "--store", p.store, "--executor", "slurm"], { cwd: p.dir, env: env() })
    expect(plan.exitCode, plan.stderr).toBe(0)
    expect(plan.stdout).toMatch(/^ {2}tooled: slurm: sbatch --requeue --cpus-per-task=1 .*--partition=gpu /m)
    expect(clusterModules(loaded())).toEqual([])

    // nothing listens on port 1: the command step's job cannot be submitted, and fails in one line
    // naming the executor, the step and the address; the TS step runs on the driver (placement "auto")
    const r = await cli(["run", p.file("recipe.ts"), "--store", p.store, "--executor", "ray", "--json", "--keep-going"], { cwd: p.dir, env: env() })
    expect(r.exitCode).toBe(1)
    expect(statuses(r.events)).toEqual({ upper: "ran", tooled: "failed" })
    const failed = r.events.find((e) => e.event === "step" && e.step === "tooled" && e.status === "failed") as { error?: string } | undefined
    expect(failed?.error).toMatch(/^ray: submitting the job: cannot reach the Ray Jobs API at http:\/\/127\.0\.0\.1:1: /)
    expect(failed?.error?.split("\n")).toHaveLength(1)
    expect(clusterModules(loaded())).toEqual(expect.arrayContaining(["engine/executors/ray.ts", "engine/executors/cluster-executor.ts"]))
    expect(clusterModules(loaded())).not.toContain("engine/executors/slurm.ts")
  })

  it("a run whose command step cannot load execa fails that step naming it; the TypeScript step runs", async () => {
    const { p, env } = project()
    const r = await cli(["run", p.file("recipe.ts"), "--store", p.store, "--json", "--keep-going"], { cwd: p.dir, env: env({ REFUSE: "execa" }) })
    expect(r.exitCode).toBe(1)
    expect(statuses(r.events)).toEqual({ upper: "ran", tooled: "failed" })
    expect(r.stdout + r.stderr).toMatch(/cannot load execa, which starts its process: Cannot find package 'execa'/)
  })
})

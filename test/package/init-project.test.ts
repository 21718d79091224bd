/**
 * anneal as a user gets it: `npm pack` this repository (a copy of its working tree), `npx --package <tarball> anneal init p` in a fresh
 * directory, `npm install` there, `npx anneal run recipe.ts` (and again: nothing runs), `tsc` over the
 * project with two user tsconfigs (`tsc --init`'s defaults; strict + exactOptionalPropertyTypes with the
 * libraries' declarations checked too), and a wrong wiring that must not compile. Everything runs with
 * the machine's own Node and npm, outside this repository; the machine's npm cache makes installs quick.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { explain, npmCacheDir, packCheckout, sh, tempDir } from "./user-env.ts"
import type { Ran } from "./user-env.ts"

interface StepLine {
  readonly event: string
  readonly step?: string
  readonly status?: string
  readonly ran?: number
  readonly cached?: number
}

const events = (stdout: string): Array<StepLine> =>
  stdout.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as StepLine)

const statuses = (stdout: string): Record<string, string> =>
  Object.fromEntries(events(stdout).filter((e) => e.event === "step").map((e) => [e.step!, e.status!]))

const timings: Array<string> = []
const step = async (what: string, argv: ReadonlyArray<string>, cwd: string, env: Record<string, string> = {}): Promise<Ran> => {
  const r = await sh(argv, cwd, env)
  timings.push(`${what} ${r.seconds.toFixed(1)}s`)
  return r
}

/** The _npx/ directories npx made for our tarball (their package.json names it), to remove afterwards. */
const npxDirsFor = (tarball: string): Array<string> => {
  const root = path.join(npmCacheDir(), "_npx")
  if (!fs.existsSync(root)) return []
  return fs.readdirSync(root).map((d) => path.join(root, d)).filter((d) => {
    try {
      return fs.readFileSync(path.join(d, "package.json"), "utf8").includes(tarball)
    } catch {
      return false
    }
  })
}

describe("anneal as an installed package", () => {
  let tmp = ""
  let tarball = ""
  let project = ""

  beforeAll(async () => {
    tmp = tempDir("anneal-init-project-")
    const pack = await packCheckout(tmp)
    timings.push(`npm pack ${pack.ran.seconds.toFixed(1)}s`)
    expect(pack.ran.exitCode, explain(["npm", "pack"], pack.ran)).toBe(0)
    tarball = pack.tarball!
    expect(fs.existsSync(tarball), tarball).toBe(true)
  }, 600_000)

  afterAll(() => {
    if (tarball !== "") for (const d of npxDirsFor(tarball)) fs.rmSync(d, { recursive: true, force: true })
    if (tmp !== "" && process.env.ANNEAL_KEEP_TEST_DIRS !== "1") fs.rmSync(tmp, { recursive: true, force: true })
    if (timings.length > 0) process.stderr.write(`package test timings: ${timings.join(", ")}\n`)
  })

  it("npx --package <tarball> anneal init p scaffolds a project that depends on that tarball, and refuses a non-empty dir", async () => {
    const argv = ["npx", "--yes", "--package", tarball, "anneal", "init", "p"]
    const init = await step("npx anneal init", argv, tmp)
    expect(init.exitCode, explain(argv, init)).toBe(0)
    project = path.join(tmp, "p")
    for (const f of ["package.json", "tsconfig.json", "recipe.ts", "data/instructions.jsonl", ".gitignore", "README.md"]) {
      expect(fs.existsSync(path.join(project, f)), f).toBe(true)
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(project, "package.json"), "utf8")) as {
      type: string
      dependencies: Record<string, string>
      allowScripts: Record<string, boolean>
    }
    expect(pkg.type).toBe("module")
    expect(pkg.dependencies.anneal).toBe(`file:${tarball}`)
    // npm keys a non-registry package's scripts by its exact spec; node's and esbuild's by name
    expect(pkg.allowScripts).toEqual({ [`file:${tarball}`]: true, node: true, esbuild: true })
    expect(fs.readFileSync(path.join(project, ".gitignore"), "utf8")).toContain(".anneal/")

    expect(init.stdout).toContain("npx anneal run recipe.ts")

    // anneal's own words: one line (npm's install noise, if any, is the next test's business)
    const again = await sh(argv, tmp)
    expect(again.exitCode).toBe(2)
    expect(again.stderr.split("\n").filter((l) => l.startsWith("anneal:"))).toEqual([
      "anneal: init: p is not empty; give a new or empty directory (anneal init my-recipes)"
    ])
  }, 600_000)

  let install: Ran | undefined
  it("npm install, then npx anneal run recipe.ts runs every step; a rerun runs nothing", async () => {
    expect(project, "init must have succeeded").not.toBe("")
    install = await step("npm install", ["npm", "install", "--no-audit", "--no-fund"], project)
    expect(install.exitCode, explain(["npm", "install"], install)).toBe(0)

    // as on a fresh machine: no Python environment built (the recipe's steps are all TypeScript)
    const fresh = { ANNEAL_CACHE_DIR: path.join(tmp, "empty-cache") }
    const run = await step("npx anneal run", ["npx", "anneal", "run", "recipe.ts", "--json"], project, fresh)
    expect(run.exitCode, explain(["npx", "anneal", "run", "recipe.ts", "--json"], run)).toBe(0)
    expect(statuses(run.stdout)).toEqual({ clean: "ran", dedup: "ran", "word-counts": "ran", format: "ran" })
    expect(run.stderr).not.toMatch(/npm warn|EBADENGINE|ExperimentalWarning/i)
    expect(run.stderr.trim(), "nothing on stderr for a clean --json run").toBe("")

    const show = await sh(["npx", "anneal", "show", "word-counts", "--recipe", "recipe.ts", "--json"], project)
    expect(show.exitCode, explain(["npx", "anneal", "show"], show)).toBe(0)
    const out = (JSON.parse(show.stdout) as { output: { path: string } }).output.path
    const report = JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8")) as { rows: number; firstWords: Record<string, number> }
    // 24 sample rows: clean drops the one with an empty answer, dedup the 3 exact repeats
    expect(report.rows).toBe(20)
    expect(Object.keys(report.firstWords).length).toBe(5)

    const rerun = await step("npx anneal run (rerun)", ["npx", "anneal", "run", "recipe.ts", "--json"], project, fresh)
    expect(rerun.exitCode, explain(["npx", "anneal", "run"], rerun)).toBe(0)
    expect(Object.values(statuses(rerun.stdout)).every((s) => s === "cached"), rerun.stdout).toBe(true)
    expect(events(rerun.stdout).at(-1)).toMatchObject({ event: "run", ran: 0, cached: 4 })
  }, 600_000)

  it("npm install prints no engine warnings, whatever the machine's Node", () => {
    expect(install, "npm install must have run").toBeDefined()
    const warnings = install!.stderr.split("\n").filter((l) => /EBADENGINE.*package:/.test(l))
    expect(warnings, "npm install under the machine's own Node warned that packages want a newer Node").toEqual([])
    // nor any other warning (npm 11's unreviewed install scripts: the allowScripts init wrote covers them)
    expect(install!.stderr.split("\n").filter((l) => /^npm warn/i.test(l)), install!.stderr).toEqual([])
  })

  it("npm install run by Node 24 (the node anneal brings) prints no warning either", async () => {
    expect(install, "npm install must have run").toBeDefined()
    const npm = await sh(["sh", "-c", "command -v npm"], tmp)
    const npmCli = path.join(path.dirname(fs.realpathSync(npm.stdout.trim())), "npm-cli.js")
    const node24 = path.join(project, "node_modules", "node", "bin", "node")
    if (!fs.existsSync(npmCli) || !fs.existsSync(node24)) return // an npm laid out otherwise: the test above covers it
    const again = path.join(tmp, "p24")
    fs.mkdirSync(again)
    fs.copyFileSync(path.join(project, "package.json"), path.join(again, "package.json"))
    const r = await step("npm install (Node 24)", [node24, npmCli, "install", "--no-audit", "--no-fund"], again)
    expect(r.exitCode, explain([node24, npmCli, "install"], r)).toBe(0)
    expect(r.stderr.split("\n").filter((l) => /^npm warn/i.test(l)), r.stderr).toEqual([])
  }, 600_000)

  it("tsc checks the recipe under the project's tsconfig, tsc --init's defaults, and strict + exactOptionalPropertyTypes", async () => {
    expect(project, "init must have succeeded").not.toBe("")
    const own = await step("tsc (project tsconfig)", ["npx", "tsc", "-p", "tsconfig.json"], project)
    expect(own.exitCode, explain(["npx", "tsc"], own)).toBe(0)

    // tsc --init writes a tsconfig.json into its cwd: make it in a scratch dir, use it from the project
    const scratch = path.join(tmp, "tsc-init")
    fs.mkdirSync(scratch)
    const tscBin = path.join(project, "node_modules", ".bin", "tsc")
    const initCfg = await sh([tscBin, "--init"], scratch)
    expect(initCfg.exitCode, explain(["tsc", "--init"], initCfg)).toBe(0)
    fs.copyFileSync(path.join(scratch, "tsconfig.json"), path.join(project, "tsconfig.init.json"))
    const defaults = await step("tsc (tsc --init defaults)", ["npx", "tsc", "-p", "tsconfig.init.json", "--noEmit"], project)
    expect(defaults.exitCode, explain(["npx", "tsc", "-p", "tsconfig.init.json"], defaults)).toBe(0)

    fs.writeFileSync(
      path.join(project, "tsconfig.strict.json"),
      JSON.stringify({
        compilerOptions: {
          target: "esnext",
          module: "nodenext",
          strict: true,
          exactOptionalPropertyTypes: true,
          noUncheckedIndexedAccess: true,
          noImplicitOverride: true,
          noPropertyAccessFromIndexSignature: true,
          skipLibCheck: false,
          noEmit: true,
          types: ["node"]
        },
        include: ["recipe.ts"]
      })
    )
    const strict = await step("tsc (strict)", ["npx", "tsc", "-p", "tsconfig.strict.json"], project)
    expect(strict.exitCode, explain(["npx", "tsc", "-p", "tsconfig.strict.json"], strict)).toBe(0)
  }, 600_000)

  it("a Dataset<Text> wired where Dataset<Instruction> is wanted fails tsc in the user's project", async () => {
    expect(project, "init must have succeeded").not.toBe("")
    const recipe = fs.readFileSync(path.join(project, "recipe.ts"), "utf8")
    const wired = "wordCounts({ data: unique }, { top: 5 })"
    expect(recipe).toContain(wired)
    const wrong = recipe
      .replace(/import \{ ([^}]*) \} from "anneal"/, (_m, names: string) => `import { ${names}, Text } from "anneal"`)
      .replace(wired, `wordCounts({ data: source.dataset("data/instructions.jsonl", Text) }, { top: 5 })`)
    fs.writeFileSync(path.join(project, "wrong.ts"), wrong)
    try {
      const r = await step("tsc (wrong wiring)", ["npx", "tsc", "-p", "tsconfig.json"], project)
      expect(r.exitCode, explain(["npx", "tsc"], r)).not.toBe(0)
      const errors = (r.stdout + r.stderr).split("\n").filter((l) => /error TS\d+/.test(l))
      expect(errors.length, r.stdout).toBeGreaterThan(0)
      expect(errors.every((l) => l.startsWith("wrong.ts(")), errors.join("\n")).toBe(true)
      // the types print structurally: a text row where an instruction row is wanted
      expect(r.stdout).toMatch(/not assignable[\s\S]*readonly text: string[\s\S]*readonly instruction: string/)
    } finally {
      fs.rmSync(path.join(project, "wrong.ts"))
    }
  }, 600_000)
})

/**
 * The package as npm ships it: `npm pack` (whose `prepare` runs the build) from a copy of this checkout,
 * unpacked as node_modules/anneal of a project outside the repository. The tarball holds compiled
 * JavaScript with declarations, the Python workers and runtime, and no TypeScript sources; the bin
 * starts from it under Node 24 and, through its re-exec into the node@24 it brings, under an older
 * system Node; a recipe that imports "anneal" loads from dist/, and the live view runs in a terminal.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { projectRoot } from "../../engine/python.ts"
import { openTerminal } from "../cli/tmux.ts"

const manifest = JSON.parse(fs.readFileSync(path.join(projectRoot, "package.json"), "utf8")) as { files: Array<string> }
/** what the build reads, and the top of everything package.json's `files` lists */
const packagedPaths = [
  ...new Set(["package.json", "scripts", "tsconfig.json", "tsconfig.build.json", "index.ts", "engine", "cache", "steps", "cli", ...manifest.files.map((f) => f.split("/")[0]!)])
]
const skipped = new Set(["node_modules", "dist", ".anneal", "__pycache__", ".pytest_cache"])

let work: string
let files: Array<string>
let project: string
let bin: string

/** An older Node than the package runs on (these machines ship Node 20), if the machine has one. */
const oldNode = ["/usr/bin/node", "/bin/node", "/usr/local/bin/node"].find((p) => {
  if (!fs.existsSync(p)) return false
  const major = Number(execFileSync(p, ["-p", "process.versions.node"], { encoding: "utf8" }).split(".")[0])
  return major < 22
})

/** `names` and everything they depend on, as this repository's (hoisted) node_modules holds them. */
const dependencyClosure = (names: ReadonlyArray<string>): Set<string> => {
  const found = new Set<string>()
  const queue = [...names]
  const depsOf = (dir: string): Array<string> => {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as Record<string, Record<string, string> | undefined>
    const own = [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})]
    // packages nested under it come with its link, and need what they depend on too
    const nested = path.join(dir, "node_modules")
    if (!fs.existsSync(nested)) return own
    for (const entry of fs.readdirSync(nested)) {
      if (entry.startsWith(".")) continue
      const dirs = entry.startsWith("@") ? fs.readdirSync(path.join(nested, entry)).map((e) => path.join(nested, entry, e)) : [path.join(nested, entry)]
      for (const d of dirs) if (fs.existsSync(path.join(d, "package.json"))) own.push(...depsOf(d))
    }
    return own
  }
  while (queue.length > 0) {
    const name = queue.pop()!
    if (found.has(name)) continue
    const dir = path.join(projectRoot, "node_modules", name)
    if (!fs.existsSync(path.join(dir, "package.json"))) continue // an optional one for another platform
    found.add(name)
    queue.push(...depsOf(dir))
  }
  return found
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-package-"))
  // pack a copy, so the build's dist/ never races with anything using this checkout
  const checkout = path.join(work, "checkout")
  for (const p of packagedPaths) {
    if (!fs.existsSync(path.join(projectRoot, p))) continue
    fs.cpSync(path.join(projectRoot, p), path.join(checkout, p), { recursive: true, filter: (src) => !skipped.has(path.basename(src)) })
  }
  fs.symlinkSync(path.join(projectRoot, "node_modules"), path.join(checkout, "node_modules"))
  const packed = await execa("npm", ["pack", "--json", "--pack-destination", work], { cwd: checkout, env: { npm_config_loglevel: "error" } })
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
  files = info!.files.map((f) => f.path)
  project = path.join(work, "project")
  const installed = path.join(project, "node_modules", "anneal")
  fs.mkdirSync(installed, { recursive: true })
  execFileSync("tar", ["xzf", path.join(work, info!.filename), "-C", installed, "--strip-components=1"])
  // the packed package's dependencies and theirs (only those: what the build bundled into dist/vendor/
  // must not be found here), as `npm install` would place them beside the package
  const shipped = JSON.parse(fs.readFileSync(path.join(installed, "package.json"), "utf8")) as { dependencies: Record<string, string> }
  for (const dep of dependencyClosure(Object.keys(shipped.dependencies))) {
    fs.mkdirSync(path.dirname(path.join(project, "node_modules", dep)), { recursive: true })
    fs.symlinkSync(path.join(projectRoot, "node_modules", dep), path.join(project, "node_modules", dep))
  }
  fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "user", type: "module", private: true }))
  bin = path.join(installed, "bin", "anneal.js")
}, 600_000)

afterAll(() => {
  if (work !== undefined) fs.rmSync(work, { recursive: true, force: true })
})

describe("the packed package", () => {
  it("holds compiled JavaScript with declarations, the Python files and no TypeScript sources", () => {
    expect(files).toContain("dist/index.js")
    expect(files).toContain("dist/index.d.ts")
    expect(files).toContain("dist/cli/main.js")
    expect(files).toContain("bin/anneal.js")
    expect(files).toContain("python/requirements.lock")
    expect(files).toContain("python/anneal_worker/protocol.py")
    expect(files).toContain("dist/steps/train/sft/worker.py")
    expect(files.filter((f) => f.startsWith("dist/steps/data/py/")).length).toBeGreaterThan(0)
    expect(files.filter((f) => /\.tsx?$/.test(f) && !f.endsWith(".d.ts") && !f.startsWith("templates/"))).toEqual([])
    expect(files.filter((f) => f.includes("__pycache__") || f.startsWith("test/") || f.startsWith("recipes/"))).toEqual([])
    const installed = JSON.parse(fs.readFileSync(path.join(project, "node_modules", "anneal", "package.json"), "utf8"))
    expect(installed.exports["."].types).toBe("./dist/index.d.ts")
    for (const dep of ["tsx", "node"]) expect(installed.dependencies[dep], dep).toBeDefined()
    // execa, ink, chokidar (whose engines exclude the Node npm may run under) are bundled into dist/vendor/
    expect(Object.keys(installed.dependencies).sort()).toEqual(["effect", "hyparquet", "hyparquet-compressors", "hyparquet-writer", "node", "react", "tsx"])
    expect(files).toContain("dist/vendor/execa.js")
    expect(files).toContain("dist/vendor/ink.js")
  })

  it("runs its bin under Node 24", async () => {
    const r = await execa(process.execPath, [bin, "--help"], { cwd: project, reject: false })
    expect(r.stderr).toBe("")
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain("Usage: anneal")
  })

  it.skipIf(oldNode === undefined)("runs its bin under the system's older Node by re-running it under the node@24 it brings", async () => {
    const r = await execa(oldNode!, [bin, "--version"], { cwd: project, reject: false })
    expect(r.stderr).toBe("")
    expect(r.exitCode).toBe(0)
    expect(r.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(projectRoot, "package.json"), "utf8")).version)
  })

  it("loads a TypeScript recipe that imports \"anneal\" from the compiled package", async () => {
    fs.writeFileSync(path.join(project, "words.jsonl"), `{"text":"one"}\n{"text":"two"}\n`)
    fs.writeFileSync(path.join(project, "recipe.ts"), [
      `import * as fs from "node:fs"`,
      `import { dedup, defineStep, Port, recipe, Schema, source, Text } from "anneal"`,
      `import type { Dataset } from "anneal"`,
      `const shout = defineStep({ kind: "package-shout", version: 1, params: Schema.Struct({}), inputs: { data: Port.dataset(Text) }, output: Port.files(),`,
      `  run: (ctx) => fs.writeFileSync(ctx.output + "/out.txt", "x") })`,
      `export default recipe("user", () => {`,
      `  const words: Dataset<Text> = source.dataset("words.jsonl", Text)`,
      `  shout({ data: dedup({ data: words }) })`,
      `})`
    ].join("\n"))
    const r = await execa(process.execPath, [bin, "plan", "recipe.ts"], { cwd: project, reject: false })
    expect(r.stderr).toBe("")
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain("package-shout")
    expect(r.stdout).toContain("dedup")
  })

  it("runs commands from its start-up bundle, sharing one instance of each module with a recipe that imports effect itself", async () => {
    expect(files).toContain("dist/startup.js")
    // the recipe's own import of effect/Schema must be the Schema anneal re-exports, and its params check
    // runs from inside anneal's validation: the stack says which file that code came from
    const stackFile = path.join(project, "stack.txt")
    fs.writeFileSync(path.join(project, "own-effect.ts"), [
      `import * as fs from "node:fs"`,
      `import * as EffectSchema from "effect/Schema"`,
      `import * as Data from "effect/Data"`,
      `import { defineStep, Port, recipe, Schema, source } from "anneal"`,
      `if (EffectSchema.Struct !== Schema.Struct) throw new Error("two instances of effect/Schema")`,
      `class Odd extends Data.TaggedError("Odd")<{}> {}`,
      `const check = defineStep({ kind: "own-effect", version: 1, params: EffectSchema.Struct({ n: EffectSchema.Int }),`,
      `  inputs: { seed: Port.files() }, output: Port.files(),`,
      `  checkParams: (p) => { fs.writeFileSync(${JSON.stringify(stackFile)}, String(new Error().stack)); return new Odd() instanceof Error ? undefined : { param: "n", message: "?" } },`,
      `  run: (ctx) => fs.writeFileSync(ctx.output + "/n.txt", String(ctx.params.n)) })`,
      `export default recipe("own-effect", () => { check({ seed: source.files("words.jsonl") }, { n: 3 }) })`
    ].join("\n"))
    const bundled = await execa(process.execPath, [bin, "run", "own-effect.ts", "--json"], { cwd: project, reject: false })
    expect(bundled.stderr).toBe("")
    expect(bundled.exitCode).toBe(0)
    expect(fs.readFileSync(stackFile, "utf8")).toContain(path.join("node_modules", "anneal", "dist", "startup.js"))
    // without it, every module loads from its own file, with the same result
    const unbundled = await execa(process.execPath, [bin, "run", "own-effect.ts", "--json"], { cwd: project, reject: false, env: { ANNEAL_NO_STARTUP_BUNDLE: "1" } })
    expect(unbundled.stderr).toBe("")
    expect(unbundled.exitCode).toBe(0)
    expect(unbundled.stdout).toContain(`"cached":1`)
    const stack = fs.readFileSync(stackFile, "utf8")
    expect(stack).not.toContain("startup.js")
    expect(stack).toContain(path.join("node_modules", "anneal", "dist", "engine", "graph.js"))
  })

  it("shows the live view in a terminal (the vendored Ink as built), a rerun's 60 cached steps in one line", async () => {
    const dir = path.join(project, "terminal")
    fs.mkdirSync(dir)
    fs.writeFileSync(path.join(dir, "seed.txt"), "seed\n")
    fs.writeFileSync(path.join(dir, "recipe.ts"), [
      `import * as fs from "node:fs"`,
      `import { defineStep, Port, recipe, Schema, source } from "anneal"`,
      `const write = defineStep({ kind: "write", version: 1, params: Schema.Struct({ i: Schema.Int }),`,
      `  inputs: { seed: Port.files() }, output: Port.files(),`,
      `  run: (ctx) => fs.writeFileSync(ctx.output + "/i.txt", String(ctx.params.i)) })`,
      `export default recipe("sixty", () => { const seed = source.files("seed.txt"); for (let i = 0; i < 60; i++) write({ seed }, { i }, { id: "w" + i }) })`
    ].join("\n"))
    const first = await execa(process.execPath, [bin, "run", "recipe.ts", "--json"], { cwd: dir, reject: false })
    expect(first.stdout).toContain(`"ran":60`)
    const t = await openTerminal(dir, [bin, "run", "recipe.ts"])
    try {
      expect(await t.until("the rerun to exit", t.exitCode, 60_000)).toBe("0")
      const screen = await t.history()
      expect(screen).toMatch(/≡ 60 steps cached: w0, w1, w2/)
      expect(screen).toContain("ran 0 · cached 60 · failed 0")
    } finally {
      await t.close()
    }
  })

  it("runs a recipe in a project without \"type\": \"module\" (tsx compiles it to CommonJS)", async () => {
    const dir = path.join(project, "commonjs")
    fs.mkdirSync(dir)
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "user-cjs", private: true }))
    fs.writeFileSync(path.join(dir, "words.jsonl"), `{"text":"one"}\n{"text":"one"}\n`)
    fs.writeFileSync(path.join(dir, "recipe.ts"), [
      `import * as EffectSchema from "effect/Schema"`,
      `import { dedup, recipe, Schema, source, Text } from "anneal"`,
      `if (EffectSchema.Struct !== Schema.Struct) throw new Error("two instances of effect/Schema")`,
      `export default recipe("cjs", () => { dedup({ data: source.dataset("words.jsonl", Text) }) })`
    ].join("\n"))
    const r = await execa(process.execPath, [bin, "run", "recipe.ts", "--json"], { cwd: dir, reject: false })
    expect(r.stderr).toBe("")
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain(`"ran":1`)
  })
})

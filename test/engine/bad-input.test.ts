/**
 * Bad input: each case gives a one-line error naming what is wrong, exit code 2, and leaves the store
 * exactly as it was (same artifacts, same recorded sessions and runs, nothing staged).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { spawn } from "node:child_process"
import { execa } from "execa"
import { beforeAll, describe, expect, it } from "vitest"
import { chainData, chainRecipe } from "../helpers/chain-recipe.ts"
import { annealBin, annealIndex, cli, nodeBin, storeSnapshot, tempProject } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"

const header = `import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Text, Schema } from ${JSON.stringify(annealIndex)}
const copy = defineStep({
  kind: "copy", version: 1,
  params: Schema.Struct({ times: Schema.Int.pipe(Schema.check(Schema.isGreaterThanOrEqualTo(1))) }),
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  run: (ctx) => { fs.copyFileSync(ctx.inputs.data, path.join(ctx.output, "data.jsonl")) }
})
`

const cases: Array<{ name: string; recipe: string; error: RegExp }> = [
  {
    name: "an ill-typed param, naming the step and the param path",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: "two" } as any) })`,
    error: /step "copy" \(.*bad\.ts:\d+\) \(copy\): param times: Expected number/
  },
  {
    name: "an out-of-range param",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 0 }) })`,
    error: /step "copy".*param times: Expected a value greater than or equal to 1/
  },
  {
    name: "an unknown param",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 1, tims: 2 } as any) })`,
    error: /step "copy".*param tims: Expected no excess property/
  },
  {
    name: "a missing source file",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("nope.jsonl") }, { times: 1 }) })`,
    error: /source not found: .*nope\.jsonl/
  },
  {
    name: "duplicate step ids",
    recipe: header + `export default recipe("r", () => { const d = source.dataset("data.txt"); copy({ data: d }, { times: 1 }); copy({ data: d }, { times: 2 }) })`,
    // both calls' lines: call sites are captured only when validation fails (a second build)
    error: /duplicate step id "copy" \(.*bad\.ts:\d+\) \(.*bad\.ts:\d+\): pass \{ id: "\.\.\." \}/
  },
  {
    name: "a cycle",
    recipe: header + `export default recipe("r", () => { const d = source.dataset("data.txt"); copy({ data: d }, { times: 1 }, { id: "a", after: ["b"] }); copy({ data: d }, { times: 1 }, { id: "b", after: ["a"] }) })`,
    error: /the recipe has a cycle: (a -> b -> a|b -> a -> b)/
  },
  {
    name: "a recipe module that throws",
    recipe: header + `throw new Error("boom at import")\nexport default recipe("r", () => {})`,
    error: /recipe .*bad\.ts(:\d+)? failed to load: boom at import/
  },
  {
    name: "a recipe module that does not compile",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 1 }) ))`,
    error: /recipe .*bad\.ts:\d+:\d+ does not compile: Expected ";" but found "\)"/
  },
  {
    name: "a build function that throws",
    recipe: header + `export default recipe("r", () => { throw new Error("no models here") })`,
    error: /recipe .*bad\.ts:\d+ threw while building: no models here/
  },
  {
    name: "a step id with a newline, quoted so the message stays one line",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 1 }, { id: "a\\nb" }) })`,
    error: /step id "a\\nb" \(.*bad\.ts:\d+\) is not allowed: use a letter or digit, then letters, digits, \. _ or -, at most 100 characters/
  },
  {
    name: "a step id with a NUL",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 1 }, { id: "a\\u0000b" }) })`,
    error: /step id "a\\u0000b" .*is not allowed/
  },
  {
    name: "a step id with a path separator",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 1 }, { id: "../x" }) })`,
    error: /step id "\.\.\/x" .*is not allowed/
  },
  {
    name: "a step id longer than 100 characters (log and spec file names must fit the filesystem)",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 1 }, { id: "x".repeat(300) }) })`,
    error: /step id "x{100,}.*is not allowed/
  },
  {
    name: "a recipe whose top-level await never settles",
    recipe: header + `await new Promise(() => {})\nexport default recipe("r", () => {})`,
    error: /recipe .*bad\.ts never finished loading: a top-level await in it \(or in a module it imports\) never settles/
  },
  {
    name: "a FIFO as a source (never read, so never a hang)",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("pipe.jsonl") }, { times: 1 }) })`,
    error: /step "copy" input "data": source .*pipe\.jsonl is a FIFO, not a regular file or a directory/
  },
  {
    name: "a device file as a source",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("/dev/null") }, { times: 1 }) })`,
    error: /step "copy" input "data": source .*dev\/null is a character device, not a regular file or a directory/
  },
  {
    name: "a dataset directory holding a FIFO",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("fifo-dir") }, { times: 1 }) })`,
    error: /source .*fifo-dir holds data\.jsonl, which is a FIFO/
  },
  {
    name: "a dataset directory with no JSONL files",
    recipe: header + `export default recipe("r", () => { copy({ data: source.dataset("no-jsonl") }, { times: 1 }) })`,
    error: /source .*no-jsonl is a directory with no data\.jsonl and no \*\.jsonl \/ \*\.jsonl\.gz \/ \*\.parquet files/
  },
  {
    name: "a file where a model directory is wanted",
    recipe: header + `const load = defineStep({ kind: "load", version: 1, params: Schema.Struct({}), inputs: { model: Port.model() }, output: Port.files(), run: () => {} })
export default recipe("r", () => { load({ model: source.model("data.txt") }, {}) })`,
    error: /step "load" input "model": source .*data\.txt is a file, but a model source must be a directory/
  },
  {
    name: "wrong wiring that slipped past the types",
    recipe: header + `export default recipe("r", () => { copy({ data: source.model("data.txt") as any }, { times: 1 }) })`,
    error: /step "copy".*input "data" wants a dataset, got a model/
  }
]

describe("bad input", () => {
  let p: TempProject
  let before: string

  beforeAll(async () => {
    // a store with real history, so "unchanged" means something
    p = tempProject()
    p.write("data.txt", chainData)
    p.write("good.ts", chainRecipe())
    const r = await cli(["run", p.file("good.ts"), "--json"])
    expect(r.exitCode, r.stderr).toBe(0)
    before = storeSnapshot(p.store)
    // sources that cannot be read as data
    await execa("mkfifo", [p.file("pipe.jsonl")])
    fs.mkdirSync(p.file("fifo-dir"))
    await execa("mkfifo", [p.file("fifo-dir/data.jsonl")])
    p.write("no-jsonl/notes.txt", "not a dataset\n")
  })

  for (const c of cases) {
    it(`${c.name}: exit 2, one line, store unchanged`, async () => {
      p.write("bad.ts", c.recipe)
      const r = await cli(["run", p.file("bad.ts"), "--store", p.store, "--json"])
      expect(r.exitCode).toBe(2)
      const lines = r.stderr.trim().split("\n")
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/^anneal: /)
      expect(lines[0]).toMatch(c.error)
      expect(r.stdout).toBe("")
      expect(storeSnapshot(p.store)).toBe(before)
    })
  }

  it("an unknown step id on the command line", async () => {
    const r = await cli(["run", p.file("good.ts"), "nosuch", "--json"])
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toMatch(/no step "nosuch" in .*good\.ts \(steps: upper, reverse, count, join\)/)
    expect(storeSnapshot(p.store)).toBe(before)
  })

  it("a bad flag value", async () => {
    const r = await cli(["run", p.file("good.ts"), "--jobs", "zero"])
    expect(r.exitCode).toBe(2)
    expect(r.stderr.trim()).toBe('anneal: --jobs must be a positive integer, got "zero"')
  })

  it("negative numbers for --jobs, --gpus and --max-size get the flag's own message", async () => {
    const expectations: Array<[Array<string>, string]> = [
      [["run", p.file("good.ts"), "--jobs", "-1"], 'anneal: --jobs must be a positive integer, got "-1"'],
      [["run", p.file("good.ts"), "-j", "-3"], 'anneal: --jobs must be a positive integer, got "-3"'],
      [["run", p.file("good.ts"), "--gpus", "-1"], 'anneal: --gpus takes GPU ids like 0,1 (or "none"), got "-1"'],
      [["cache", "gc", "--store", p.store, "--max-size", "-5G"], 'anneal: --max-size takes a size like 500M or 20G, got "-5G"']
    ]
    for (const [args, message] of expectations) {
      const r = await cli(args)
      expect([args, r.exitCode, r.stderr.trim()]).toEqual([args, 2, message])
    }
    expect(storeSnapshot(p.store)).toBe(before)
  })

  it('--store "" never turns the current directory into a store', async () => {
    const q = tempProject()
    q.write("data.txt", chainData)
    q.write("good.ts", chainRecipe())
    const listing = fs.readdirSync(q.dir).sort()
    for (const args of [["run", q.file("good.ts")], ["plan", q.file("good.ts")], ["cache", "ls"], ["show", "upper"], ["logs", "upper"]]) {
      const r = await cli([...args, "--store", ""], { cwd: q.dir })
      expect([args, r.exitCode, r.stderr.trim()]).toEqual([args, 2, `anneal: ${args[0]}: --store needs a path, got an empty string`])
    }
    expect(fs.readdirSync(q.dir).sort()).toEqual(listing)
  })

  it("a failing show or logs creates no store", async () => {
    const q = tempProject()
    q.write("data.txt", chainData)
    q.write("good.ts", chainRecipe())
    const expectations: Array<[Array<string>, RegExp]> = [
      [["show", "upper", "--recipe", q.file("good.ts")], /^anneal: no store at .*\.anneal \(run a recipe first, or pass --store\)$/],
      [["logs", "upper", "--recipe", q.file("good.ts")], /^anneal: no store at .*\.anneal/],
      [["show", "nosuch", "--recipe", q.file("good.ts")], /^anneal: no step "nosuch" in .*good\.ts/],
      [["show", "upper"], /^anneal: no store at .*\.anneal \(run a recipe first, or pass --store or --recipe\)$/],
      [["logs", "upper", "--store", q.file("elsewhere")], /^anneal: no store at .*elsewhere/]
    ]
    for (const [args, message] of expectations) {
      const r = await cli(args, { cwd: q.dir })
      expect([args, r.exitCode]).toEqual([args, 2])
      expect(r.stderr.trim()).toMatch(message)
    }
    expect(storeSnapshot(q.store)).toBe("absent")
    expect(fs.existsSync(q.file("elsewhere"))).toBe(false)
  })

  it("show and logs find a step in the store without --recipe", async () => {
    const show = await cli(["show", "upper", "--json"], { cwd: p.dir })
    expect(show.exitCode, show.stderr).toBe(0)
    expect(JSON.parse(show.stdout)).toMatchObject({ step: "upper", recipe: "good.ts", kind: "upper", status: "built", params: { suffix: expect.any(String) } })
    const logs = await cli(["logs", "upper", "--store", p.store])
    expect(logs.exitCode, logs.stderr).toBe(0)
    const unknown = await cli(["show", "nosuch"], { cwd: p.dir })
    expect(unknown.exitCode).toBe(2)
    expect(unknown.stderr.trim()).toMatch(/^anneal: no recipe has run a step "nosuch" in the store at .*\.anneal \(pass --recipe <file>\)$/)
    expect(storeSnapshot(p.store)).toBe(before)
  })

  it("a reader that closes the pipe early gets no EPIPE stack trace", async () => {
    for (const args of [["cache", "ls", "--store", p.store], ["plan", p.file("good.ts"), "--json"]]) {
      const child = spawn(nodeBin, [annealBin, ...args], { stdio: ["ignore", "pipe", "pipe"] })
      child.stdout.destroy() // as `| head -1` does once it has its line; here before the first one
      let stderr = ""
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
      const code = await new Promise<number | null>((ok) => child.on("close", (c) => ok(c)))
      expect([args, code, stderr]).toEqual([args, 0, ""])
    }
    expect(storeSnapshot(p.store)).toBe(before)
  })

  it("a step that needs a GPU on a machine without one fails fast unless --allow-cpu", async () => {
    const gpu = header + `export default recipe("r", () => { copy({ data: source.dataset("data.txt") }, { times: 1 }, { gpus: 1 }) })`
    p.write("gpu.ts", gpu)
    const r = await cli(["run", p.file("gpu.ts"), "--store", p.store, "--gpus", "none", "--json"])
    expect(r.exitCode).toBe(2)
    expect(r.stderr.trim()).toBe('anneal: step "copy" needs 1 GPU but none are available: pass --allow-cpu to run it on CPU, or --gpus to name devices')
    expect(storeSnapshot(p.store)).toBe(before)
    const ok = await cli(["run", p.file("gpu.ts"), "--store", p.store, "--gpus", "none", "--allow-cpu", "--json"])
    expect(ok.exitCode, ok.stderr).toBe(0)
    // once built, the step is cached: a machine without a GPU (a CI runner restoring a GPU recipe's
    // results) runs the recipe without --allow-cpu, since nothing is left to run
    const cached = await cli(["run", p.file("gpu.ts"), "--store", p.store, "--gpus", "none", "--json"])
    expect(cached.exitCode, cached.stderr).toBe(0)
    expect(JSON.parse(cached.stdout.trim().split("\n").at(-1)!)).toMatchObject({ event: "run", ran: 0, cached: 1, failed: 0 })
  })

  it("a corrupt cache database", async () => {
    const q = tempProject()
    q.write("data.txt", chainData)
    q.write("good.ts", chainRecipe())
    fs.mkdirSync(q.store)
    const garbage = Buffer.from("this is not a sqlite database, just bytes ".repeat(200))
    fs.writeFileSync(path.join(q.store, "cache.db"), garbage)
    const r = await cli(["run", q.file("good.ts"), "--json"])
    expect(r.exitCode).toBe(2)
    expect(r.stderr.trim().split("\n")).toHaveLength(1)
    expect(r.stderr).toMatch(/cache database .*cache\.db is corrupt .*move it away/)
    expect(fs.readFileSync(path.join(q.store, "cache.db")).equals(garbage)).toBe(true)
    expect(fs.readdirSync(path.join(q.store, "artifacts"))).toEqual([])
  })

  it("show without --recipe refuses a step id that several recipes ran, listing them", async () => {
    const q = tempProject()
    q.write("data.txt", chainData)
    q.write("one.ts", chainRecipe())
    q.write("two.ts", chainRecipe({ suffix: "?" }))
    for (const r of ["one.ts", "two.ts"]) expect((await cli(["run", q.file(r), "--json"])).exitCode).toBe(0)
    const snapshot = storeSnapshot(q.store)
    const r = await cli(["show", "upper"], { cwd: q.dir })
    expect(r.exitCode).toBe(2)
    expect(r.stderr.trim()).toMatch(/^anneal: step "upper" was run by 2 recipes in the store at .*\.anneal: two\.ts, one\.ts; pass --recipe <file>$/)
    expect(storeSnapshot(q.store)).toBe(snapshot)
  })
})

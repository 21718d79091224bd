/**
 * Command steps: relative paths in `argv` and in `sourceFiles` mean the recipe's directory, as source
 * paths do, whatever directory anneal runs from; a `sourceFiles` entry that does not exist stops the
 * recipe from loading (exit 2, one line, store untouched).
 */
import * as os from "node:os"
import { describe, expect, it } from "vitest"
import { annealIndex, cli, statuses, storeSnapshot, tempProject } from "../helpers/project.ts"

const tool = `
import * as fs from "node:fs"
import * as path from "node:path"
const spec = JSON.parse(fs.readFileSync(process.env.ANNEAL_SPEC, "utf8"))
const text = fs.readFileSync(spec.inputs.data, "utf8").trim()
fs.writeFileSync(path.join(spec.output, "data.jsonl"), JSON.stringify({ text: text + " (tool v1)" }) + "\\n")
`

const recipe = (sourceFile: string) => `
import { defineStep, Port, recipe, source, Text, Schema } from ${JSON.stringify(annealIndex)}

const tooled = defineStep({
  kind: "tooled", version: 1, params: Schema.Struct({}),
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  sourceFiles: [${JSON.stringify(sourceFile)}],
  command: () => ({ argv: [process.execPath, "tools/tool.mjs"] })
})

export default recipe("tooled", () => {
  tooled({ data: source.dataset("data.txt", Text) })
})
`

describe("command steps resolve relative paths against the recipe's directory", () => {
  it("argv and sourceFiles work from any cwd, and a run from elsewhere reports no false change", async () => {
    const p = tempProject()
    p.write("data.txt", "alpha\n")
    p.write("tools/tool.mjs", tool)
    p.write("recipe.ts", recipe("tools/tool.mjs"))
    const first = await cli(["run", p.file("recipe.ts"), "--json"]) // cwd: the repository root
    expect(first.exitCode, first.stderr).toBe(0)
    expect(statuses(first.events)).toEqual({ tooled: "ran" })

    const again = await cli(["run", p.file("recipe.ts"), "--json"], { cwd: os.tmpdir() })
    expect(again.exitCode, again.stderr).toBe(0)
    expect(statuses(again.events)).toEqual({ tooled: "cached" })
    expect(again.events.filter((e) => e.event === "log" && e.level === "warn")).toEqual([])

    // the fingerprint reads the recipe's tools/tool.mjs: editing it is noticed
    p.write("tools/tool.mjs", tool.replace("tool v1", "tool v2"))
    const edited = await cli(["plan", p.file("recipe.ts")], { cwd: os.tmpdir() })
    expect(edited.exitCode, edited.stderr).toBe(0)
    expect(edited.stderr).toMatch(/implementation of kind "tooled" changed/)
  })

  it("a sourceFiles entry that does not exist is an error when the recipe loads", async () => {
    const p = tempProject()
    p.write("data.txt", "alpha\n")
    p.write("tools/tool.mjs", tool)
    p.write("recipe.ts", recipe("tools/missing.py"))
    const before = storeSnapshot(p.store)
    for (const command of ["plan", "run"]) {
      const r = await cli([command, p.file("recipe.ts")], { cwd: os.tmpdir() })
      expect(r.exitCode).toBe(2)
      expect(r.stderr.trim().split("\n")).toHaveLength(1)
      expect(r.stderr).toMatch(/step "tooled" \(tooled\): sourceFiles entry "tools\/missing\.py" does not exist/)
      expect(storeSnapshot(p.store)).toBe(before)
    }
  })
})

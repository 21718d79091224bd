/**
 * The command-step contract (docs/command-steps.md): schema/*.schema.json are what engine/protocol.ts
 * generates; a spec the engine really wrote validates against the published spec schema (with Python's
 * jsonschema, an independent validator); the lines the documented examples print validate against the
 * event schema, and the engine parses each of them into an event.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { execa } from "execa"
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { protocolEvent } from "../../engine/executors/local.ts"
import { CommandStepSpec, publishedSchemas, schemaFileText } from "../../engine/protocol.ts"
import { checkPythonEnv, projectRoot, pythonEnvVars } from "../../engine/python.ts"
import { annealIndex, cli, tempProject } from "../helpers/project.ts"

const schemaDir = path.join(projectRoot, "schema")
const example = (name: string) => path.join(projectRoot, "docs", "examples", name)

/** jsonschema's verdict on each document: null when valid, else the first error's message. */
const validate = async (schemaFile: string, docs: ReadonlyArray<unknown>): Promise<Array<string | null>> => {
  const code = [
    "import json, sys, jsonschema",
    "schema = json.load(open(sys.argv[1]))",
    "jsonschema.Draft202012Validator.check_schema(schema)",
    "v = jsonschema.Draft202012Validator(schema)",
    "docs = json.load(sys.stdin)",
    "print(json.dumps([None if v.is_valid(d) else next(iter(v.iter_errors(d))).message for d in docs]))"
  ].join("\n")
  const r = await execa(checkPythonEnv(), ["-c", code, path.join(schemaDir, schemaFile)], {
    env: pythonEnvVars(), input: JSON.stringify(docs), reject: false
  })
  if (r.exitCode !== 0) throw new Error(String(r.stderr))
  return JSON.parse(String(r.stdout)) as Array<string | null>
}

const recipe = `
import { defineStep, Port, recipe, Schema, seedParam, source, withDefault } from ${JSON.stringify(annealIndex)}
const countLines = defineStep({
  kind: "count-lines", version: 1, params: Schema.Struct({ minLength: withDefault(Schema.Int, 0) }),
  inputs: { data: Port.files() }, output: Port.report(),
  command: (ctx) => ({ argv: ["python3", ${JSON.stringify(example("count-lines.py"))}, ctx.specPath] })
})
const countWords = defineStep({
  kind: "count-words", version: 1, params: Schema.Struct({ label: withDefault(Schema.String, "words") }),
  inputs: { data: Port.files() }, output: Port.report(),
  command: (ctx) => ({ argv: ["sh", ${JSON.stringify(example("count-words.sh"))}, ctx.specPath] })
})
const keepSpec = defineStep({
  kind: "keep-spec", version: 1, params: Schema.Struct({ seed: seedParam() }),
  inputs: { data: Port.files() }, output: Port.files(),
  command: () => ({ argv: ["sh", "-c", 'cp "$ANNEAL_SPEC" "$(jq -r .output "$ANNEAL_SPEC")/spec.json"'] })
})
export default recipe("contract", () => {
  const data = source.files("words.txt")
  countLines({ data }, { minLength: 4 })
  countWords({ data })
  keepSpec({ data }, { seed: 7 })
})
`

describe("the command-step contract", () => {
  it("schema/ holds exactly what engine/protocol.ts generates (npm run docs:schemas)", () => {
    for (const name of Object.keys(publishedSchemas) as Array<keyof typeof publishedSchemas>) {
      expect(fs.readFileSync(path.join(schemaDir, name), "utf8"), `schema/${name} is stale`).toBe(schemaFileText(name))
    }
  })

  it("a real spec and the examples' lines validate; the engine parses every line; bad documents do not validate", async () => {
    const p = tempProject()
    p.write("words.txt", "one two three\nfour five\nsix\n")
    p.write("recipe.ts", recipe)
    const run = await cli(["run", p.file("recipe.ts"), "--json"], { cwd: p.dir })
    expect(run.exitCode, run.stderr + run.stdout).toBe(0)
    expect(run.events).toContainEqual({ event: "metric", step: "count-lines", name: "lines", value: 2 })
    expect(run.events).toContainEqual({ event: "metric", step: "count-words", name: "words", value: 6 })
    expect(run.events.filter((e) => e.event === "progress" && e.step === "count-words")).toHaveLength(2)

    const shown = JSON.parse((await cli(["show", "keep-spec", "--recipe", p.file("recipe.ts"), "--json"], { cwd: p.dir })).stdout)
    const spec = JSON.parse(fs.readFileSync(path.join(shown.output.path, "spec.json"), "utf8"))
    expect(spec).toMatchObject({ specVersion: 1, step: "keep-spec", params: { seed: 7 }, seed: 7, implementation: { type: "command" } })
    expect(await validate("command-step-spec.schema.json", [spec])).toEqual([null])
    expect(() => Schema.decodeUnknownSync(CommandStepSpec)(spec)).not.toThrow()

    // the documented examples, run by hand on a copy of that spec, print lines the schema and the engine accept
    const out = fs.mkdtempSync(path.join(p.dir, "out-"))
    const words = path.join(p.dir, "words.txt")
    const lines: Array<string> = []
    for (const [argv, params] of [[["python3", example("count-lines.py")], { minLength: 4 }], [["sh", example("count-words.sh")], { label: "n" }]] as const) {
      const copy = p.write(`spec-${lines.length}.json`, JSON.stringify({ ...spec, params, inputs: { data: words }, output: out }))
      const r = await execa(argv[0], [...argv.slice(1), copy], { reject: false })
      expect(r.exitCode, String(r.stderr)).toBe(0)
      lines.push(...String(r.stdout).split("\n").filter((l) => l !== ""))
    }
    expect(lines.length).toBeGreaterThanOrEqual(5)
    expect(await validate("worker-event.schema.json", lines.map((l) => JSON.parse(l)))).toEqual(lines.map(() => null))
    for (const l of lines) expect(protocolEvent("s", l, {}), l).toMatchObject({ event: JSON.parse(l).type, step: "s" })

    const bad = [{ type: "progress" }, { type: "metric", name: "x" }, { type: "log", level: "loud", message: "m" }, { type: "nope" }]
    expect((await validate("worker-event.schema.json", bad)).every((e) => e !== null)).toBe(true)
    const { output: _, ...noOutput } = spec
    expect((await validate("command-step-spec.schema.json", [noOutput, { ...spec, devices: { gpus: [], cpus: 0 } }])).every((e) => e !== null)).toBe(true)
  }, 120_000)
})

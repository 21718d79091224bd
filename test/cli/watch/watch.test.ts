/**
 * `anneal watch --json` end to end: a real watcher, real child runs, a recipe edited on disk.
 */
import { EventEmitter } from "node:events"
import * as fs from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { execa } from "execa"
import type { ResultPromise } from "execa"
import type { EngineEvent } from "../../../engine/events.ts"
import { annealBin, annealIndex, makeRecipeDir } from "../recipe-dir.ts"
import type { RecipeDir } from "../recipe-dir.ts"

const lib = `
import { EventEmitter } from "node:events"
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, Schema } from "${annealIndex}"

/** the input text, upper-cased, \`times\` times */
export const shout = defineStep({
  kind: "watch-shout",
  version: 1,
  params: Schema.Struct({ times: Schema.Int }),
  inputs: { text: Port.files() },
  output: Port.files(),
  run: (ctx) => {
    fs.writeFileSync(path.join(ctx.output, "out.txt"), fs.readFileSync(ctx.inputs.text, "utf8").toUpperCase().repeat(ctx.params.times))
  }
})
/** the length of what it is given */
export const measure = defineStep({
  kind: "watch-measure",
  version: 1,
  params: Schema.Struct({}),
  inputs: { text: Port.files() },
  output: Port.files(),
  run: (ctx) => {
    fs.writeFileSync(path.join(ctx.output, "n.txt"), String(fs.readFileSync(path.join(ctx.inputs.text, "out.txt")).length))
  }
})
/** a constant, needing nothing */
export const constant = defineStep({
  kind: "watch-constant",
  version: 1,
  params: Schema.Struct({ value: Schema.String }),
  inputs: {},
  output: Port.files(),
  run: (ctx) => fs.writeFileSync(path.join(ctx.output, "v.txt"), ctx.params.value)
})
`

const recipe = (times: number) => `
import { recipe, source } from "${annealIndex}"
import { constant, measure, shout } from "./lib.ts"

export default recipe("watched", () => {
  const data = source.files("data.txt")
  const a = shout({ text: data }, { times: 1 }, { id: "a" })
  const b = shout({ text: data }, { times: ${times} }, { id: "b" })
  measure({ text: a }, {}, { id: "a-len" })
  measure({ text: b }, {}, { id: "b-len" })
  constant({}, { value: "k" }, { id: "c" })
})
`

let d: RecipeDir
const spawnOptions = { reject: false, stdin: "ignore" } as const
let child: ResultPromise<typeof spawnOptions> | undefined
let exited = false
const events: Array<EngineEvent> = []
let stderr = ""

/** Wakes the waiters below whenever the watcher writes an event or a line to stderr, or exits. */
const changed = new EventEmitter()
/**
 * Resolves once `ready()` holds, checked each time the watcher writes something: no polling and no
 * clock. A watcher that exits first rejects it with its stderr; one that hangs meets the test timeout.
 */
const until = (ready: () => boolean, what: string): Promise<void> =>
  new Promise((resolve, reject) => {
    const check = () => {
      if (ready()) {
        changed.off("output", check)
        resolve()
      } else if (exited) {
        changed.off("output", check)
        reject(new Error(`watch exited while waiting for ${what}; stderr:\n${stderr}`))
      }
    }
    changed.on("output", check)
    check()
  })
/** waits until `n` events of the stream match */
const waitForCount = (pred: (e: EngineEvent) => boolean, n: number) => until(() => events.filter(pred).length >= n, `event #${n}`)
const runs = () => events.filter((e) => e.event === "run").length
/** the steps that ran in the cycle ended by the `k`-th run event (1-based) */
const ranInCycle = (k: number): Array<string> => {
  const ends = events.flatMap((e, i) => (e.event === "run" ? [i] : []))
  const from = k === 1 ? 0 : ends[k - 2]! + 1
  return events.slice(from, ends[k - 1]).flatMap((e) => (e.event === "step" && e.status === "ran" ? [e.step] : [])).sort()
}

beforeAll(async () => {
  d = makeRecipeDir("watch")
  d.write("lib.ts", lib)
  d.write("recipe.ts", recipe(2))
  d.write("data.txt", "hello\n")
  const c = execa(process.execPath, [annealBin, "watch", d.file("recipe.ts"), "--json", "--store", d.store], spawnOptions)
  child = c
  void c.then(() => {
    exited = true
    changed.emit("output")
  })
  let buffered = ""
  c.stdout.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8")
    const lines = buffered.split("\n")
    buffered = lines.pop()!
    for (const l of lines) if (l.trim() !== "") events.push(JSON.parse(l) as EngineEvent)
    changed.emit("output")
  })
  c.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8")
    changed.emit("output")
  })
  await waitForCount((e) => e.event === "run", 1)
})

afterAll(async () => {
  if (child !== undefined && !exited) child.kill("SIGKILL")
  d?.remove()
})

describe("anneal watch --json", () => {
  it("runs everything once at start", () => {
    expect(ranInCycle(1)).toEqual(["a", "a-len", "b", "b-len", "c"])
  })

  it("reruns only the step whose param changed and its dependents", async () => {
    d.write("recipe.ts", recipe(3))
    await waitForCount((e) => e.event === "run", 2)
    expect(ranInCycle(2)).toEqual(["b", "b-len"])
  })

  it("ignores a touch that leaves a source's content as it was", async () => {
    const before = events.length
    const seen = stderr.length
    const now = new Date()
    fs.utimesSync(d.file("data.txt"), now, now)
    // the watcher says it saw the touch and found the content unchanged: the decision is made, so
    // absence after this line is proven, not hoped for after a sleep
    await until(() => /unchanged: .*data\.txt/.test(stderr.slice(seen)), "the touch to be seen")
    expect(events.slice(before)).toEqual([])
    expect(runs(), stderr).toBe(2)
  })

  it("reruns the consumers of a source whose content changed, and not the rest", async () => {
    d.write("data.txt", "hello again\n")
    await waitForCount((e) => e.event === "run", 3)
    // the touch before started no cycle: this is the third, and it ran what the content change touches
    expect(ranInCycle(3), stderr).toEqual(["a", "a-len", "b", "b-len"])
  })

  it("shows a recipe that does not compile, keeps watching, and runs the next valid save", async () => {
    d.write("recipe.ts", recipe(4) + "\nexport const broken = (\n")
    await waitForCount((e) => e.event === "log" && e.level === "error", 1)
    const error = events.find((e) => e.event === "log" && e.level === "error")
    expect(error).toMatchObject({ step: null, message: expect.stringMatching(/recipe\.ts.*(compile|load)/) })
    expect(runs()).toBe(3)
    d.write("recipe.ts", recipe(4))
    await waitForCount((e) => e.event === "run", 4)
    expect(ranInCycle(4)).toEqual(["b", "b-len"])
  })

  it("reruns when a local module the recipe imports changes", async () => {
    d.write("lib.ts", lib.replace(`fs.writeFileSync(path.join(ctx.output, "v.txt"), ctx.params.value)`, `fs.writeFileSync(path.join(ctx.output, "v.txt"), ctx.params.value + "!")`).replace(`kind: "watch-constant",\n  version: 1`, `kind: "watch-constant",\n  version: 2`))
    await waitForCount((e) => e.event === "run", 5)
    expect(ranInCycle(5)).toEqual(["c"])
  })

  it("exits cleanly on Ctrl-C", async () => {
    child!.kill("SIGINT")
    const result = await child!
    expect(result.exitCode).toBe(0)
  })
})

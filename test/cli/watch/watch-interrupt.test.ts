/**
 * `anneal watch` while a step runs: a change that makes the running step stale interrupts it and the
 * next cycle runs it again; a change further down the graph lets it finish.
 */
import { EventEmitter } from "node:events"
import { afterAll, describe, expect, it } from "vitest"
import { execa } from "execa"
import type { EngineEvent } from "../../../engine/events.ts"
import { annealBin, annealIndex, makeRecipeDir } from "../recipe-dir.ts"
import type { RecipeDir } from "../recipe-dir.ts"

const recipe = (tag: string, suffix: string, steps: number) => `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, Schema } from "${annealIndex}"

const slow = defineStep({
  kind: "watch-slow",
  version: 1,
  params: Schema.Struct({ tag: Schema.String, steps: Schema.Int }),
  inputs: {},
  output: Port.files(),
  run: async (ctx) => {
    for (let i = 1; i <= ctx.params.steps; i++) {
      if (ctx.signal.aborted) throw new Error("interrupted")
      await new Promise((r) => setTimeout(r, 100))
      ctx.progress({ current: i, total: ctx.params.steps, unit: "steps" })
    }
    fs.writeFileSync(path.join(ctx.output, "tag.txt"), ctx.params.tag)
  }
})
const append = defineStep({
  kind: "watch-append",
  version: 1,
  params: Schema.Struct({ suffix: Schema.String }),
  inputs: { model: Port.files() },
  output: Port.files(),
  run: (ctx) => fs.writeFileSync(path.join(ctx.output, "out.txt"), fs.readFileSync(path.join(ctx.inputs.model, "tag.txt"), "utf8") + ctx.params.suffix)
})

export default recipe("slow", () => {
  const model = slow({}, { tag: "${tag}", steps: ${steps} }, { id: "slow" })
  append({ model }, { suffix: "${suffix}" }, { id: "after" })
})
`

const dirs: Array<RecipeDir> = []
afterAll(() => dirs.forEach((d) => d.remove()))

/** Starts `anneal watch --json` on a fresh copy of the recipe; collects its events. */
const startWatch = (text: string) => {
  const d = makeRecipeDir("watch-interrupt")
  dirs.push(d)
  d.write("recipe.ts", text)
  const child = execa(process.execPath, [annealBin, "watch", d.file("recipe.ts"), "--json", "--store", d.store], { reject: false, stdin: "ignore" })
  const events: Array<EngineEvent> = []
  const arrived = new EventEmitter()
  let exited = false
  void child.then(() => {
    exited = true
    arrived.emit("event")
  })
  let buffered = ""
  child.stdout.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8")
    const lines = buffered.split("\n")
    buffered = lines.pop()!
    for (const l of lines) if (l.trim() !== "") events.push(JSON.parse(l) as EngineEvent)
    arrived.emit("event")
  })
  /** Resolves when `n` events match, checked as events arrive (no polling, no clock); rejects if watch exits first. */
  const waitFor = (pred: (e: EngineEvent) => boolean, n = 1) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (events.filter(pred).length >= n) resolve()
        else if (exited) reject(new Error(`watch exited; events: ${JSON.stringify(events.map((e) => e.event))}`))
        else return
        arrived.off("event", check)
      }
      arrived.on("event", check)
      check()
    })
  const stop = async () => {
    child.kill("SIGINT")
    return (await child).exitCode
  }
  return { d, events, waitFor, stop }
}

const settledOf = (events: ReadonlyArray<EngineEvent>, step: string) =>
  events.flatMap((e) => (e.event === "step" && e.step === step ? [e] : []))

describe("anneal watch while a step runs", () => {
  it("interrupts a running step that became stale and runs it again with the new params", async () => {
    // long enough that the edit lands while it runs, even on a busy machine
    const w = startWatch(recipe("one", "!", 80))
    try {
      await w.waitFor((e) => e.event === "progress" && e.step === "slow")
      const firstKey = (w.events.find((e) => e.event === "started") as { key: string }).key
      w.d.write("recipe.ts", recipe("two", "!", 10))
      await w.waitFor((e) => e.event === "run", 2)
      expect(settledOf(w.events, "slow").map((e) => [e.status, e.key === firstKey])).toEqual([
        ["interrupted", true],
        ["ran", false]
      ])
      const [first, second] = w.events.filter((e) => e.event === "run")
      expect(first).toMatchObject({ interrupted: 1, ran: 0 })
      expect(second).toMatchObject({ interrupted: 0, ran: 2 })
    } finally {
      expect(await w.stop()).toBe(0)
    }
  })

  it("lets a running step finish when the change is further down the graph", async () => {
    const w = startWatch(recipe("one", "!", 40))
    try {
      await w.waitFor((e) => e.event === "progress" && e.step === "slow")
      const slowKey = (w.events.find((e) => e.event === "started") as { key: string }).key
      w.d.write("recipe.ts", recipe("one", "?", 40))
      // the second cycle ends with `after` built from the new suffix
      await w.waitFor((e) => e.event === "run", 2)
      const slow = settledOf(w.events, "slow")
      expect(slow[0]).toMatchObject({ status: "ran", key: slowKey })
      expect(slow.slice(1).map((e) => e.status)).toEqual(["cached"])
      const after = settledOf(w.events, "after")
      expect(after[after.length - 1]).toMatchObject({ status: "ran" })
    } finally {
      expect(await w.stop()).toBe(0)
    }
  })
})

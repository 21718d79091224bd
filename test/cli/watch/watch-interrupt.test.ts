/**
 * `anneal watch`: a change that makes a running step stale interrupts it, and the next cycle runs it
 * again with the new params.
 */
import { afterAll, expect, it } from "vitest"
import { execa } from "execa"
import type { EngineEvent } from "../../../engine/events.ts"
import { annealBin, annealIndex, makeRecipeDir } from "../recipe-dir.ts"

const recipe = (tag: string) => `
import * as fs from "node:fs"
import * as path from "node:path"
import { Schema } from "effect"
import { defineStep, Port, recipe } from "${annealIndex}"

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

export default recipe("slow", () => {
  slow({}, { tag: "${tag}", steps: 30 }, { id: "slow" })
})
`

const d = makeRecipeDir("watch-interrupt")
afterAll(() => d.remove())

it("interrupts a running step that became stale and runs it again with the new params", async () => {
  d.write("recipe.ts", recipe("one"))
  const child = execa(process.execPath, [annealBin, "watch", d.file("recipe.ts"), "--json", "--store", d.store], { reject: false, stdin: "ignore" })
  const events: Array<EngineEvent> = []
  let buffered = ""
  child.stdout.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8")
    const lines = buffered.split("\n")
    buffered = lines.pop()!
    for (const l of lines) if (l.trim() !== "") events.push(JSON.parse(l) as EngineEvent)
  })
  const waitFor = async (pred: (e: EngineEvent) => boolean, n = 1) => {
    const start = Date.now()
    while (events.filter(pred).length < n) {
      if (Date.now() - start > 60_000) throw new Error(`timed out; events: ${JSON.stringify(events.map((e) => e.event))}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  try {
    await waitFor((e) => e.event === "progress" && e.step === "slow")
    const firstKey = (events.find((e) => e.event === "started") as { key: string }).key
    d.write("recipe.ts", recipe("two"))
    await waitFor((e) => e.event === "run", 2)
    const settled = events.filter((e) => e.event === "step")
    expect(settled.map((e) => (e.event === "step" ? [e.status, e.key === firstKey] : []))).toEqual([
      ["interrupted", true],
      ["ran", false]
    ])
    const [first, second] = events.filter((e) => e.event === "run")
    expect(first).toMatchObject({ interrupted: 1, ran: 0 })
    expect(second).toMatchObject({ interrupted: 0, ran: 1 })
  } finally {
    child.kill("SIGINT")
    expect((await child).exitCode).toBe(0)
  }
})

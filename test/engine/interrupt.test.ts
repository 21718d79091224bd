/**
 * Interrupting an in-process TS step is real: a step that ignores its abort signal and keeps writing
 * into its output is waited for, so nothing is written into staging after the engine discards it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import type { EngineEvent } from "../../engine/events.ts"
import { runRecipe } from "../../engine/run.ts"
import { annealIndex, stepEvents, tempProject } from "../helpers/project.ts"

const stubbornRecipe = (marker: string) => `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Text, Schema } from ${JSON.stringify(annealIndex)}

const stubborn = defineStep({
  kind: "stubborn", version: 1, params: Schema.Struct({}),
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  run: async (ctx) => {
    ctx.progress({ current: 0, total: 1 })
    await new Promise((ok) => ctx.signal.addEventListener("abort", ok, { once: true }))
    // it does not stop when told, and then writes into its output (recreating it if need be)
    await new Promise((ok) => setTimeout(ok, 300))
    fs.mkdirSync(ctx.output, { recursive: true })
    fs.writeFileSync(path.join(ctx.output, "late.jsonl"), '{"text":"late"}\\n')
    fs.writeFileSync(${JSON.stringify(marker)}, ctx.output)
  }
})

export default recipe("stubborn", () => {
  stubborn({ data: source.dataset("data.txt", Text) })
})
`

describe("interrupting an in-process TS step", () => {
  it("waits for a step that ignores its signal, then discards staging: nothing is written after", async () => {
    const p = tempProject()
    p.write("data.txt", "alpha\n")
    const marker = p.file("step-returned")
    p.write("recipe.ts", stubbornRecipe(marker))
    const controller = new AbortController()
    const events: Array<EngineEvent> = []
    const summary = await runRecipe({
      recipe: p.file("recipe.ts"),
      store: p.store,
      fresh: true,
      signal: controller.signal,
      reporter: {
        emit: (e) => {
          events.push(e)
          if (e.event === "progress" && e.step === "stubborn") controller.abort()
        }
      }
    })
    // the run returned only after the step did, and its late write went into staging before the discard
    expect(fs.existsSync(marker)).toBe(true)
    const staging = fs.readFileSync(marker, "utf8")
    expect(fs.existsSync(staging)).toBe(false)
    expect(fs.readdirSync(path.join(p.store, "staging"))).toEqual([])
    expect(stepEvents(events).map((e) => `${e.step}:${e.status}`)).toEqual(["stubborn:interrupted"])
    expect(summary).toMatchObject({ exitCode: 1, interrupted: 1, failed: 0 })
  })
})

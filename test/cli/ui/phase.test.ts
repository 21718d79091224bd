/**
 * Phases of Python steps ("loading torch", "training", ...): the live view's progress line and the
 * plain reporter say what a running step is doing before it reports any count.
 */
import { Writable } from "node:stream"
import { describe, expect, it } from "vitest"
import { makePlainReporter } from "../../../cli/reporters/plain.ts"
import { progressLine } from "../../../cli/ui/lines.ts"
import { reduce, reduceAll } from "../../../cli/ui/state.ts"
import { cleanCached, dedupRan, planned, sftStarted } from "./fixtures.ts"

const phase = (name: string) => ({ event: "progress" as const, step: "sft", current: 0, phase: name })

describe("step phases", () => {
  it("show in the running step's progress line, and stay beside its counts until the next phase", () => {
    let s = reduce(reduceAll([...planned, cleanCached, ...dedupRan]), sftStarted, 0)
    expect(progressLine(s.steps["sft"]!, 100)).toBeUndefined()
    s = reduce(s, phase("loading torch"), 1000)
    expect(s.steps["sft"]!.progress).toBeUndefined()
    expect(progressLine(s.steps["sft"]!, 100)).toContain("loading torch")
    s = reduce(s, phase("training"), 2000)
    s = reduce(s, { event: "progress", step: "sft", current: 5, total: 10, unit: "steps", loss: 1.5 }, 3000)
    const line = progressLine(s.steps["sft"]!, 100)!
    expect(line).toContain("training")
    expect(line).toContain("5/10 steps")
    expect(line).not.toContain("loading torch")
  })

  it("get one plain line each", () => {
    let out = ""
    const stream = new Writable({ write: (chunk, _enc, done) => ((out += String(chunk)), done()) })
    const r = makePlainReporter(stream, { now: () => 0, summary: false })
    for (const e of [...planned, cleanCached, ...dedupRan, sftStarted, phase("loading torch"), phase("training")]) r.emit(e)
    expect(out).toMatch(/phase\s+sft {2}loading torch\n/)
    expect(out).toMatch(/phase\s+sft {2}training\n/)
  })
})

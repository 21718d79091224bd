import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { PassThrough } from "node:stream"
import { describe, expect, it } from "vitest"
import { canRedraw, makeTerminalReporter } from "../../../cli/ui/terminal-reporter.ts"
import { cleanCached, planned, sftProgress, sftStarted } from "./fixtures.ts"

const tty = { isTTY: true } as NodeJS.WriteStream
const pipe = { isTTY: false } as NodeJS.WriteStream

describe("choosing the output", () => {
  it("draws live only on a terminal that can redraw, outside CI", () => {
    expect(canRedraw(tty, { TERM: "xterm-256color" })).toBe(true)
    expect(canRedraw(pipe, { TERM: "xterm-256color" })).toBe(false)
    expect(canRedraw(tty, { TERM: "dumb" })).toBe(false)
    expect(canRedraw(tty, { CI: "true" })).toBe(false)
    expect(canRedraw(tty, { CI: "" })).toBe(true)
  })

  it("prints plain lines into a pipe and writes the summary report into the run directory", async () => {
    const out = new PassThrough()
    let text = ""
    out.on("data", (d: Buffer) => (text += d.toString("utf8")))
    const runDir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-term-"))
    const r = await makeTerminalReporter({ onInterrupt: () => {}, stdout: out as unknown as NodeJS.WriteStream, env: {} })
    expect(r.live).toBe(false)
    for (const e of [...planned, cleanCached, sftStarted, sftProgress(500)]) r.emit(e)
    r.emit({ event: "step", step: "sft", kind: "sft", status: "ran", key: "k", output: "h", seconds: 9 })
    r.emit({ event: "run", ran: 1, cached: 1, failed: 0, interrupted: 0, skipped: 0, seconds: 10, saved: 0, runDir })
    await r.close?.()
    expect(text).toContain("done        sft  9.0s  loss 2.5")
    expect(r.summaryPath()).toBe(path.join(runDir, "summary.md"))
    expect(text.trimEnd().split("\n").pop()).toBe(`report: ${path.join(runDir, "summary.md")}`)
    fs.rmSync(runDir, { recursive: true })
  })
})

import { EventEmitter } from "node:events"
import { stripVTControlCharacters } from "node:util"
import { beforeAll, describe, expect, it } from "vitest"
import type { EngineEvent } from "../../../engine/events.ts"
import { cleanCached, dedupRan, planned, sftProgress, sftStarted } from "./fixtures.ts"

// colour support is decided when chalk loads: force it on, so turning colour off is what removes it
process.env["FORCE_COLOR"] = "1"
let ink: typeof import("../../../cli/ui/ink-reporter.tsx")
beforeAll(async () => {
  ink = await import("../../../cli/ui/ink-reporter.tsx")
})

/** A terminal stand-in: records what is written, has a size, can be resized. */
class FakeTerminal extends EventEmitter {
  isTTY = true
  columns = 80
  rows = 24
  output = ""
  write = (s: string, done?: () => void) => {
    this.output += s
    this.emit("written")
    done?.()
    return true
  }
  /** Resolves once what was written (colours stripped) satisfies `ready`: waits for Ink's frame, not a clock. */
  until(ready: (output: string) => boolean): Promise<string> {
    return new Promise((resolve) => {
      const check = () => {
        const out = stripVTControlCharacters(this.output)
        if (!ready(out)) return false
        this.off("written", check)
        resolve(out)
        return true
      }
      if (!check()) this.on("written", check)
    })
  }
  resize(columns: number) {
    this.columns = columns
    this.emit("resize")
  }
}
class FakeKeyboard extends EventEmitter {
  isTTY = false
  setEncoding() {}
  resume() {}
  pause() {}
  ref() {}
  unref() {}
  read = () => null
}

const feed = (r: { emit: (e: EngineEvent) => void }, events: ReadonlyArray<EngineEvent>) => events.forEach((e) => r.emit(e))
const sgrForeground = /\x1b\[(3[0-7]|9[0-7])m/

describe("the Ink reporter", () => {
  it("draws events as they come, follows a resize, and leaves the summary when closed", async () => {
    const term = new FakeTerminal()
    const r = ink.makeInkReporter({ stdout: term as unknown as NodeJS.WriteStream, stdin: new FakeKeyboard() as unknown as NodeJS.ReadStream, interactive: true, onInterrupt: () => {}, color: false, patchConsole: false })
    feed(r, [...planned, cleanCached, ...dedupRan, sftStarted, sftProgress(500)])
    expect(await term.until((o) => o.includes("50%  500/1000 steps"))).toContain("50%  500/1000 steps")
    term.output = ""
    term.resize(50)
    // the first frame drawn after the resize (it has the running step) is the one to measure
    const narrow = (await term.until((o) => o.includes("▶ sft"))).split("\n")
    expect(narrow.some((l) => l.includes("▶ sft"))).toBe(true)
    for (const l of narrow) expect([...l].length).toBeLessThanOrEqual(50)
    feed(r, [
      { event: "step", step: "sft", kind: "sft", status: "ran", key: "k3", output: "h3", seconds: 300 },
      { event: "skipped", step: "eval", kind: "eval", because: "test" },
      { event: "run", ran: 2, cached: 1, failed: 0, interrupted: 0, skipped: 1, seconds: 320, saved: 75 }
    ])
    await r.close?.()
    const out = stripVTControlCharacters(term.output)
    expect(out).toMatch(/✔ sft +sft +ran +5m 00s +loss 2\.5/)
    expect(out).not.toContain("q quit") // the keys are gone once the run is over
    expect(r.state().run?.ran).toBe(2)
  })

  it("uses colour only when asked (NO_COLOR turns it off)", async () => {
    const draw = async (color: boolean) => {
      const term = new FakeTerminal()
      const r = ink.makeInkReporter({ stdout: term as unknown as NodeJS.WriteStream, stdin: new FakeKeyboard() as unknown as NodeJS.ReadStream, interactive: true, onInterrupt: () => {}, color, patchConsole: false })
      feed(r, [...planned, cleanCached, ...dedupRan])
      await r.close?.()
      return term.output
    }
    expect(await draw(true)).toMatch(sgrForeground)
    expect(await draw(false)).not.toMatch(sgrForeground)
    expect(ink.colorEnabled({ NO_COLOR: "1" })).toBe(false)
    expect(ink.colorEnabled({ NO_COLOR: "" })).toBe(true)
    expect(ink.colorEnabled({})).toBe(true)
  })
})

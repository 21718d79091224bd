import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { makeSummaryReporter, summaryPathForLog } from "../../../cli/reporters/summary.ts"
import type { EngineEvent } from "../../../engine/events.ts"
import { cleanCached, dedupRan, planned, sftProgress, sftStarted } from "../ui/fixtures.ts"

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "anneal-summary-"))

const run = (runDir: string): EngineEvent => ({ event: "run", ran: 2, cached: 1, failed: 0, interrupted: 0, skipped: 0, seconds: 300, saved: 75, storeBytes: 3e9, runDir })

describe("run summary report", () => {
  it("writes a Markdown report with the step table, metrics with units and an SVG loss curve", () => {
    const dir = tmp()
    const r = makeSummaryReporter({ now: () => 0 })
    const events: Array<EngineEvent> = [
      ...planned, cleanCached, ...dedupRan, sftStarted,
      ...[100, 200, 300, 400, 500].map(sftProgress),
      { event: "metric", step: "sft", name: "train_seconds", value: 250 },
      { event: "metric", step: "sft", name: "tokens_per_second", value: 12_000 },
      { event: "step", step: "sft", kind: "sft", status: "ran", key: "k3", output: "h3", seconds: 250 },
      run(dir)
    ]
    for (const e of events) r.emit(e)
    expect(r.path()).toBe(path.join(dir, "summary.md"))
    const md = fs.readFileSync(r.path()!, "utf8")
    expect(md).toContain("took 5m 00s · ran 2, cached 1, failed 0 · the cache saved 1m 15s · store 3.0 GB")
    expect(md).toContain("| sft | sft | ran | 4m 10s | loss 2.5, tokens_per_second 12.0k tok/s, train_seconds 4m 10s |")
    expect(md).toContain("| clean | clean | cached |  |  |")
    expect(md).toContain("![loss of sft](loss-sft.svg)")
    expect(md).toContain("loss 2.9 → 2.5 over 400 steps")
    expect(md).toContain("| tokens_per_second | 12.0k tok/s |")
    const svg = fs.readFileSync(path.join(dir, "loss-sft.svg"), "utf8")
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
    const points = /<polyline points="([^"]+)"/.exec(svg)![1]!.split(" ")
    expect(points).toHaveLength(5)
    // falling loss: the curve's y (downwards on screen) grows left to right
    const ys = points.map((p) => Number(p.split(",")[1]))
    expect([...ys].sort((a, b) => a - b)).toEqual(ys)
    // anneal show finds the report from a step log in the same run directory
    expect(summaryPathForLog(path.join(dir, "sft.log"))).toBe(r.path())
  })

  it("writes nothing when no step trained or evaluated", () => {
    const dir = tmp()
    const r = makeSummaryReporter()
    for (const e of [...planned, cleanCached, ...dedupRan, run(dir)]) r.emit(e)
    expect(r.path()).toBeUndefined()
    expect(fs.readdirSync(dir)).toEqual([])
    expect(summaryPathForLog(path.join(dir, "x.log"))).toBeUndefined()
  })
})

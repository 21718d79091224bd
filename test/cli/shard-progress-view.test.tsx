/**
 * Issue 13: "progress in the live view aggregates the shards (done/total, rows/s, failed shards)". The
 * events come from the code a data step uses (runStage's counts through stageProgress, a task failing once
 * and retried alone), and the live view must show them as a person reads them: shards done of total, the
 * rows' rate as rows (never as shards per second), the failed attempt, and an ETA from the shards' pace.
 */
import { stripVTControlCharacters } from "node:util"
import * as path from "node:path"
import { render, cleanup } from "ink-testing-library"
import { afterEach, describe, expect, it } from "vitest"
import { LiveView } from "../../cli/ui/live-view.tsx"
import { reduce, reduceAll } from "../../cli/ui/state.ts"
import type { EngineEvent, ProgressEvent } from "../../engine/events.ts"
import { registerShardOp, runStage } from "../../steps/data/fanout.ts"
import { stageProgress } from "../../steps/data/map-fanout.ts"
import { tempDir } from "../steps/data/helpers.ts"

afterEach(() => cleanup())

const rowsPerTask = 1000
let attempts = 0
// a task that reports its rows as it goes and whose task 00002 fails on its first attempt (not on bad
// data: the stage retries it alone)
registerShardOp("test-slow-shard", async (spec, progress) => {
  attempts++
  for (let i = 1; i <= 4; i++) {
    await new Promise((ok) => setTimeout(ok, 300))
    progress((rowsPerTask / 4) * i)
    if (spec.id === "00002" && i === 2 && spec.failOnce === true && attempts <= 3) throw new Error("node lost")
  }
  return { rows: rowsPerTask }
})

describe("shard progress in the live view", () => {
  it("shows shards done of total, rows/s, the failed attempt, and an ETA from the shards' pace", async () => {
    const dir = tempDir()
    const tasks = Array.from({ length: 4 }, (_, i) => ({ op: "test-slow-shard", id: String(i).padStart(5, "0"), dir: path.join(dir, String(i)), failOnce: true }))
    const events: Array<{ at: number; event: ProgressEvent }> = []
    const logs: Array<string> = []
    const started = Date.now()
    await runStage(tasks, {
      workers: 1,
      signal: new AbortController().signal,
      onProgress: stageProgress({ progress: (p) => events.push({ at: Date.now(), event: { event: "progress", step: "clean", ...p } }) }, "clean"),
      log: (m) => logs.push(m)
    })
    expect(logs).toEqual([expect.stringMatching(/^shard task 00002 failed \(node lost\); retrying it alone$/)])
    const last = events.at(-1)!.event
    expect(last).toMatchObject({ current: 4, total: 4, unit: "shards" })
    expect(last.phase).toMatch(/^clean: 4000 rows, \d+ rows\/s, 1 failed attempt$/)
    // a rate, if the step reports one, is in the event's unit (shards), not rows
    if (last.rate !== undefined) expect(last.rate).toBeLessThanOrEqual(4 / ((events.at(-1)!.at - started) / 1000) + 1)

    // the live view on a report taken mid-stage (after the failure), and on the last one
    const t0 = 1_000_000
    const base: Array<EngineEvent> = [
      { event: "planned", step: "clean", kind: "clean", status: "stale", reasons: ["new"], needs: [] },
      { event: "started", step: "clean", kind: "clean", key: "k", gpus: [], log: "/runs/1/clean.log" }
    ]
    const mid = events.find((e) => e.event.current >= 2 && e.event.current < 4 && /failed/.test(e.event.phase ?? ""))
    expect(mid, JSON.stringify(events.map((e) => e.event))).toBeDefined()
    const line = (upTo: number) => {
      let s = reduceAll(base, t0)
      for (const e of events.slice(0, upTo + 1)) s = reduce(s, e.event, t0 + (e.at - started))
      const r = render(<LiveView state={s} now={t0 + (events[upTo]!.at - started)} columns={120} color={false} onInterrupt={() => {}} />)
      const text = stripVTControlCharacters(r.lastFrame() ?? "").split("\n").find((l) => l.includes("shards"))
      expect(text, stripVTControlCharacters(r.lastFrame() ?? "")).toBeDefined()
      return text!
    }
    const during = line(events.indexOf(mid!))
    expect(during).toContain(`${mid!.event.current}/4 shards`)
    expect(during).toMatch(/clean: \d+ rows, \d+ rows\/s, 1 failed attempt/)
    expect(during).not.toMatch(/shards\/s/)
    // the ETA is what is left at the shards' pace so far (over a second a shard here), not the shards
    // left divided by the rows' rate
    const eta = /ETA (?:(\d+)m )?([\d.]+)s/.exec(during)
    expect(eta, during).not.toBeNull()
    expect(Number(eta![1] ?? 0) * 60 + Number(eta![2]), during).toBeGreaterThanOrEqual(1)
    const done = line(events.length - 1)
    expect(done).toContain("4/4 shards")
    expect(done).toMatch(/clean: 4000 rows, \d+ rows\/s, 1 failed attempt/)
    expect(done).not.toMatch(/shards\/s/)
  })
})

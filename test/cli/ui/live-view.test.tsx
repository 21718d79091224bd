import { stripVTControlCharacters } from "node:util"
import { afterEach, describe, expect, it } from "vitest"
import { cleanup, render } from "ink-testing-library"
import { LiveView } from "../../../cli/ui/live-view.tsx"
import type { LiveViewProps } from "../../../cli/ui/live-view.tsx"
import { reduce, reduceAll } from "../../../cli/ui/state.ts"
import type { RunState } from "../../../cli/ui/state.ts"
import { cleanCached, dedupRan, evalSkipped, planned, sftFailed, sftInterrupted, sftProgress, sftStarted } from "./fixtures.ts"

const width = 80
const t0 = 1_000_000

/** The whole output so far (static lines included), colours stripped, trailing spaces trimmed. */
const screen = (frames: ReadonlyArray<string>) =>
  stripVTControlCharacters(frames.join("\n")).split("\n").map((l) => l.trimEnd()).join("\n")
const last = (r: { lastFrame: () => string | undefined }) =>
  stripVTControlCharacters(r.lastFrame() ?? "").split("\n").map((l) => l.trimEnd()).join("\n")

const view = (state: RunState, extra: Partial<LiveViewProps> = {}) =>
  <LiveView state={state} now={t0 + 90_000} columns={width} color={false} onInterrupt={() => {}} {...extra} />

const running = () => {
  let s = reduceAll([...planned, cleanCached, ...dedupRan], t0)
  s = reduce(s, sftStarted, t0)
  for (const c of [100, 200, 300, 400]) s = reduce(s, sftProgress(c), t0 + c * 100)
  return s
}

afterEach(() => cleanup())

describe("live view at 80 columns", () => {
  it("prints each settled step once, in the order steps settled, across frames; a failed step with its error", () => {
    const ids = Array.from({ length: 30 }, (_, i) => `s${i}`)
    let s = reduceAll(ids.map((id) => ({ event: "planned", step: id, kind: "noop", status: "stale", reasons: [], needs: [] })), t0)
    const settle = (id: string, i: number) => {
      s = reduce(s, { event: "started", step: id, kind: "noop", key: `k${i}`, gpus: [], log: `/l/${id}` }, t0)
      s = reduce(s, i === 7
        ? { event: "step", step: id, kind: "noop", status: "failed", key: `k${i}`, output: null, seconds: 1, error: "boom: bad row 3" }
        : { event: "step", step: id, kind: "noop", status: "ran", key: `k${i}`, output: `h${i}`, seconds: 1 }, t0)
    }
    // settled out of plan order, in three frames of different sizes
    const order = [...ids].reverse()
    order.slice(0, 4).forEach((id) => settle(id, Number(id.slice(1))))
    const r = render(view(s))
    order.slice(4, 25).forEach((id) => settle(id, Number(id.slice(1))))
    r.rerender(view(s))
    order.slice(25).forEach((id) => settle(id, Number(id.slice(1))))
    r.rerender(view(s, { finished: true }))
    const lines = last(r).split("\n")
    const rows = lines.filter((l) => /^ {2}[✔✖] s\d+ /.test(l)).map((l) => l.trim().split(/\s+/)[1])
    expect(rows).toEqual(order)
    expect(lines[lines.findIndex((l) => l.includes("✖ s7")) + 1]).toContain("boom: bad row 3")
  })

  it("prints a flood of cached steps as one line that counts them; steps that ran, failed, were restored or have metrics keep theirs", () => {
    const ids = Array.from({ length: 120 }, (_, i) => `s${i}`)
    let s = reduceAll(ids.map((id) => ({ event: "planned", step: id, kind: "noop", status: id === "s5" || id === "s9" ? "stale" : "cached", reasons: [], needs: [] })), t0)
    s = reduce(s, { event: "metric", step: "s3", name: "accuracy", value: 0.75 }, t0)
    for (const [i, id] of ids.entries()) {
      if (i === 5 || i === 9) {
        s = reduce(s, { event: "started", step: id, kind: "noop", key: `k${i}`, gpus: [], log: `/l/${id}` }, t0)
        s = reduce(s, i === 5
          ? { event: "step", step: id, kind: "noop", status: "failed", key: "k5", output: null, seconds: 1, error: "boom" }
          : { event: "step", step: id, kind: "noop", status: "ran", key: "k9", output: "h9", seconds: 1 }, t0)
      } else {
        s = reduce(s, { event: "step", step: id, kind: "noop", status: "cached", key: `k${i}`, output: `h${i}`, seconds: 2, ...(i === 8 ? { restored: true } : {}) }, t0)
      }
    }
    s = reduce(s, { event: "run", ran: 1, cached: 118, failed: 1, interrupted: 0, skipped: 0, seconds: 1, saved: 238, storeBytes: 1000 }, t0)
    const r = render(view(s, { finished: true }))
    const lines = last(r).split("\n")
    // the live part, in the order steps settled (planned-cached ones at once): s3 (a metric), s8
    // (restored), s5 (failed) and s9 (ran) on their own lines, the other 116 as one, where the first stood
    const settled = lines.slice(0, lines.findIndex((l) => l.startsWith("step ")))
    expect(settled.filter((l) => l.trim() !== "")).toEqual([
      expect.stringMatching(/^ {2}≡ 116 steps cached: s0, s1, s2, s4, s6, s7, s10, s11, .*…$/),
      expect.stringMatching(/^ {2}≡ s3 +noop +cached +accuracy 0\.75/),
      expect.stringMatching(/^ {2}≡ s8 +noop +cached +restored/),
      expect.stringMatching(/^ {2}✖ s5 +noop +failed/),
      "    boom",
      expect.stringMatching(/^ {2}✔ s9 +noop +done/)
    ])
    // the summary table the same way
    const table = lines.slice(lines.findIndex((l) => l.startsWith("step ")))
    expect(table.filter((l) => /^[≡✖✔] /.test(l)).map((l) => l.split(/\s+/).slice(0, 3).join(" "))).toEqual(["≡ 116 steps", "≡ s3 noop", "✖ s5 noop", "≡ s8 noop", "✔ s9 noop"])
    // up to foldCachedAbove (50) they are listed one by one
    const few = reduceAll(ids.slice(0, 50).flatMap((id, i) => [
      { event: "planned" as const, step: id, kind: "noop", status: "cached" as const, reasons: [], needs: [] },
      { event: "step" as const, step: id, kind: "noop", status: "cached" as const, key: `k${i}`, output: `h${i}`, seconds: 2 }
    ]), t0)
    const r2 = render(view(few))
    expect(last(r2).split("\n").filter((l) => /^ {2}≡ s\d+ /.test(l))).toHaveLength(50)
  })

  it("prints cached steps as settled, with the time the cache saved", () => {
    const r = render(view(reduceAll([...planned, cleanCached], t0)))
    const out = screen(r.frames)
    expect(out).toContain("  ≡ clean  cached")
    expect(out).toContain("○ dedup  queued: params.threshold: 0.8 -> 0.9")
    expect(out).toContain("◷ sft  waiting for dedup")
    expect(out).toContain("ran 0 · cached 1 · failed 0 · pending 3 │ cache saved 1m 15s │ elapsed 1m 30s")
  })

  it("shows a running step with GPUs, elapsed time, a progress bar, percent, ETA, throughput and loss", () => {
    const r = render(view(running()))
    const lines = last(r).split("\n")
    const head = lines.findIndex((l) => l.includes("▶ sft"))
    expect(lines[head]).toBe("      ▶ sft  gpu 0,1  1m 30s")
    expect(lines[head + 1]).toMatch(/^ {8}█{4}░{6} {2}40% {2}400\/1000 steps {2}ETA 6m 00s {2}12\.3k tok\/s {2}loss 2\.6/)
    expect(lines[head + 1]).toContain("█▆▃▁")
    for (const l of lines) expect([...l].length).toBeLessThanOrEqual(width)
  })

  it("advances the bar as progress arrives", () => {
    const s = running()
    const r = render(view(s))
    const before = last(r).split("\n").find((l) => l.includes("%"))!
    r.rerender(view(reduce(s, sftProgress(800), t0 + 80_000)))
    const after = last(r).split("\n").find((l) => l.includes("%"))!
    expect(before).toContain(" 40%")
    expect(after).toContain(" 80%")
    expect(after.split("█").length).toBeGreaterThan(before.split("█").length)
  })

  it("shows a failed step with its error and the steps it took down", () => {
    const s = reduceAll([sftFailed, evalSkipped], t0, running())
    const r = render(view(s))
    const out = screen(r.frames)
    expect(out).toContain("      ✖ sft  failed  42s  loss 2.6")
    expect(out).toContain("        CUDA out of memory: tried to allocate 2.00 GiB")
    expect(out).toContain("        lower micro_batch_size or enable gradient checkpointing")
    expect(out).toContain("        – eval  skipped  (sft failed)")
    expect(last(r)).toContain("ran 1 · cached 1 · failed 1 · skipped 1")
  })

  it("shows an interrupted step and, once the run is over, the summary table", () => {
    let s = reduceAll([sftInterrupted], t0, running())
    s = reduce(s, { event: "run", ran: 1, cached: 1, failed: 0, interrupted: 1, skipped: 1, seconds: 95, saved: 75, storeBytes: 1_234_000 }, t0)
    const r = render(view(s, { finished: true }))
    const out = screen(r.frames)
    expect(out).toContain("      ⊘ sft  interrupted  30s  loss 2.6")
    const frame = last(r)
    expect(frame).toMatch(/step +kind +status +time +metrics/)
    expect(frame).toMatch(/⊘ sft +sft +interrupted +30s +loss 2\.6/)
    expect(frame).toMatch(/≡ clean +clean +cached\n/)
    expect(frame).toContain("ran 1 · cached 1 · failed 0 · interrupted 1 · skipped 1\ncache saved 1m 15s │ store 1.2 MB │ took 1m 35s")
    expect(frame).not.toContain("q quit")
  })

  it("fits a narrow terminal: no line wider than the columns given", () => {
    const r = render(view(running(), { columns: 40 }))
    for (const l of last(r).split("\n")) expect([...l].length).toBeLessThanOrEqual(40)
    expect(last(r)).toMatch(/█+░+/)
  })
})

describe("keys", () => {
  /**
   * Resolves with the first frame (the current one, or one Ink writes later) that `ready` accepts: a
   * key's effect is awaited as the frame it produces, never after a fixed sleep. A key that has no
   * effect leaves the test waiting until its timeout.
   */
  const frameWhere = (r: ReturnType<typeof render>, ready: (frame: string) => boolean): Promise<string> =>
    new Promise((resolve) => {
      if (ready(last(r))) return resolve(last(r))
      const stdout = r.stdout as unknown as { write: (frame: string) => void }
      const write = stdout.write
      stdout.write = (frame: string) => {
        write(frame)
        if (ready(last(r))) {
          stdout.write = write
          resolve(last(r))
        }
      }
    })

  it("q and Ctrl-C interrupt, and the footer says the run is stopping", async () => {
    const calls: Array<() => void> = []
    let count = 0
    const interrupted = (n: number) => new Promise<void>((resolve) => (count >= n ? resolve() : calls.push(() => count >= n && resolve())))
    const r = render(view(running(), { onInterrupt: () => {
      count++
      calls.forEach((c) => c())
    } }))
    r.stdin.write("q")
    await interrupted(1)
    expect(await frameWhere(r, (f) => f.includes("interrupting:"))).toContain("interrupting: waiting for running steps to stop")
    r.stdin.write("\x03")
    await interrupted(2)
    expect(count).toBe(2)
  })

  it("? shows the keys, arrows move the selection, l shows the selected step's log tail", async () => {
    const tails: Array<string> = []
    const readTail = (file: string) => {
      tails.push(file)
      return [`last line of ${file}`]
    }
    const r = render(view(running(), { readTail }))
    r.stdin.write("?")
    expect(await frameWhere(r, (f) => f.includes("show or hide"))).toContain("l          show or hide the selected step's log tail")
    r.stdin.write("?")
    // the help was on screen; a later frame without it proves the second ? was handled
    expect(await frameWhere(r, (f) => !f.includes("show or hide"))).not.toContain("l          show or hide")
    r.stdin.write("l")
    const log = await frameWhere(r, (f) => f.includes("log of "))
    expect(log).toContain("log of sft (running): /runs/7/sft.log")
    expect(log).toContain("last line of /runs/7/sft.log")
    r.stdin.write("\x1b[A") // up: dedup, the step before sft
    const up = await frameWhere(r, (f) => !f.includes("log of sft"))
    expect(up).toContain("log of dedup (done): /runs/7/dedup.log")
    expect(up).toContain("q quit  ↑↓ select (dedup)")
  })
})

describe("many steps on a short terminal", () => {
  it("keeps running steps and as many pending ones as fit, and counts the rest", () => {
    const events = Array.from({ length: 30 }, (_, i) => ({
      event: "planned" as const, step: `shard-${i}`, kind: "tokenize", status: "stale" as const, reasons: [], needs: []
    }))
    let s = reduceAll(events, t0)
    s = reduce(s, { event: "started", step: "shard-7", kind: "tokenize", key: "k", gpus: [], log: "/l" }, t0)
    const r = render(view(s, { rows: 12 }))
    const frame = last(r)
    expect(frame.split("\n").length).toBeLessThanOrEqual(12)
    expect(frame).toContain("▶ shard-7")
    expect(frame).toContain("○ shard-0")
    expect(frame).toMatch(/… 2\d more steps waiting or queued/)
  })
})

describe("waiting steps", () => {
  it("name only the needs that have not finished", () => {
    const r = render(view(running()))
    // eval needs sft and clean; clean is cached, so only sft holds it back
    expect(last(r)).toContain("◷ eval  waiting for sft")
    expect(last(r)).not.toContain("waiting for sft, clean")
  })
})

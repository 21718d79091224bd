import { PassThrough } from "node:stream"
import { describe, expect, it } from "vitest"
import { makePlainReporter } from "../../../cli/reporters/plain.ts"
import type { EngineEvent } from "../../../engine/events.ts"
import { cleanCached, dedupRan, evalSkipped, planned, sftFailed, sftStarted } from "../ui/fixtures.ts"

const collect = () => {
  const stream = new PassThrough()
  let text = ""
  stream.on("data", (d: Buffer) => (text += d.toString("utf8")))
  return { stream, text: () => text, lines: () => text.split("\n").filter((l) => l !== "") }
}

describe("plain reporter", () => {
  it("prints one line per state change, the error, and a summary table, without escape codes", () => {
    const out = collect()
    let t = 0
    const r = makePlainReporter(out.stream, { now: () => t })
    const events: Array<EngineEvent> = [
      ...planned, cleanCached, ...dedupRan, sftStarted,
      { event: "metric", step: "sft", name: "loss", value: 2.25 },
      sftFailed, evalSkipped,
      { event: "run", ran: 1, cached: 1, failed: 1, interrupted: 0, skipped: 1, seconds: 65, saved: 75, storeBytes: 2_500_000, runDir: "/store/runs/7" }
    ]
    for (const e of events) {
      t += 1000
      r.emit(e)
    }
    const text = out.text()
    expect(text).not.toMatch(/\x1b/)
    expect(out.lines().slice(0, 10)).toEqual([
      "00:02 queued      dedup  params.threshold: 0.8 -> 0.9",
      "00:03 waiting     sft  for dedup",
      "00:04 waiting     eval  for sft, clean",
      "00:05 cached      clean  saved 1m 15s",
      "00:06 started     dedup  dedup  cpu  log /runs/7/dedup.log",
      "00:07 done        dedup  12s",
      "00:08 started     sft  sft  gpu 0,1  log /runs/7/sft.log",
      "00:10 failed      sft  42s  loss 2.25",
      "      CUDA out of memory: tried to allocate 2.00 GiB",
      "      lower micro_batch_size or enable gradient checkpointing"
    ])
    expect(text).toContain("00:11 skipped     eval  sft failed")
    expect(text).toMatch(/step +kind +status +time +metrics\n≡ clean +clean +cached\n✔ dedup +dedup +ran +12s\n✖ sft +sft +failed +42s +loss 2\.25\n– eval +eval +skipped/)
    expect(text).toContain("ran 1 · cached 1 · failed 1 · skipped 1 │ cache saved 1m 15s │ store 2.5 MB │ took 1m 05s")
    expect(text).toContain("logs: /store/runs/7")
  })

  it("throttles progress to every 10% or every 30 s", () => {
    const out = collect()
    let t = 0
    const r = makePlainReporter(out.stream, { now: () => t })
    r.emit(sftStarted)
    // 100 reports a second apart, 1% each: ten lines at 10%, 20%, ... 100%
    for (let i = 1; i <= 100; i++) {
      t += 1000
      r.emit({ event: "progress", step: "sft", current: i, total: 100, unit: "steps", loss: 3 - i / 100 })
    }
    const progress = out.lines().filter((l) => l.includes("progress"))
    expect(progress).toHaveLength(10)
    expect(progress[0]).toBe("00:10 progress    sft  10%  10/100 steps  ETA 1m 30s  loss 2.9")
    expect(progress[9]).toContain("100%  100/100 steps")

    // no total: a line every 30 s at most
    r.emit({ event: "started", step: "tok", kind: "tokenize", key: "k", gpus: [], log: "/l" })
    for (let i = 1; i <= 90; i++) {
      t += 1000
      r.emit({ event: "progress", step: "tok", current: i * 1000, unit: "rows", rate: 1000 })
    }
    expect(out.lines().filter((l) => l.includes("progress    tok"))).toEqual([
      "02:10 progress    tok  30.0k rows  1000 rows/s",
      "02:40 progress    tok  60.0k rows  1000 rows/s",
      "03:10 progress    tok  90.0k rows  1000 rows/s"
    ])
  })
})

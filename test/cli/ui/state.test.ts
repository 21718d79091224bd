import { describe, expect, it } from "vitest"
import type { EngineEvent } from "../../../engine/events.ts"
import { initialState, makeFold, maxLossPoints, reduce, reduceAll, totals } from "../../../cli/ui/state.ts"
import type { RunState } from "../../../cli/ui/state.ts"
import { cleanCached, dedupRan, planned, sftFailed, sftProgress, sftStarted } from "./fixtures.ts"

describe("view state", () => {
  it("lists steps in plan order with their dependency depth and plan status", () => {
    const s = reduceAll(planned)
    expect(s.order).toEqual(["clean", "dedup", "sft", "eval"])
    expect(s.order.map((id) => s.steps[id]!.depth)).toEqual([0, 1, 2, 3])
    expect(s.order.map((id) => s.steps[id]!.status)).toEqual(["cached", "queued", "waiting", "waiting"])
    expect(s.steps["dedup"]!.reasons).toEqual(["params.threshold: 0.8 -> 0.9"])
  })

  it("moves steps to settled once, in the order they settle", () => {
    const s = reduceAll([...planned, cleanCached, ...dedupRan])
    expect(s.settled).toEqual(["clean", "dedup"])
    expect(s.steps["dedup"]!.status).toBe("done")
    expect(s.steps["dedup"]!.seconds).toBe(12)
  })

  it("tracks a running step's GPUs, progress, loss history and a time-based ETA", () => {
    let s = reduce(reduceAll([...planned, cleanCached, ...dedupRan]), sftStarted, 10_000)
    s = reduce(s, { event: "progress", step: "sft", current: 250, total: 1000, loss: 2.5 }, 20_000)
    s = reduce(s, { event: "progress", step: "sft", current: 500, total: 1000, loss: 2.0 }, 30_000)
    const sft = s.steps["sft"]!
    expect(sft.status).toBe("running")
    expect(sft.gpus).toEqual([0, 1])
    expect(sft.losses.map((p) => p.loss)).toEqual([2.5, 2.0])
    // 500 units in 20 s, 500 left: 20 s more
    expect(sft.progress?.eta).toBeCloseTo(20)
  })

  it("keeps the loss curve bounded for long runs, first and last points kept", () => {
    let s = reduce(reduceAll(planned), sftStarted, 0)
    for (let i = 0; i < maxLossPoints * 3; i++) s = reduce(s, { event: "progress", step: "sft", current: i, loss: 1 / (i + 1) }, 0)
    const losses = s.steps["sft"]!.losses
    expect(losses.length).toBeLessThanOrEqual(maxLossPoints)
    expect(losses[0]!.x).toBe(0)
    expect(losses[losses.length - 1]!.x).toBe(maxLossPoints * 3 - 1)
  })

  it("records the error of a failed step and counts totals; the run event's numbers win at the end", () => {
    let s = reduceAll([...planned, cleanCached, ...dedupRan, sftStarted, sftProgress(100), sftFailed])
    expect(s.steps["sft"]!.error).toContain("CUDA out of memory")
    const t = totals(s, 0)
    expect([t.ran, t.cached, t.failed, t.saved]).toEqual([1, 1, 1, 75])
    s = reduce(s, { event: "run", ran: 1, cached: 1, failed: 1, interrupted: 0, skipped: 1, seconds: 60, saved: 80, storeBytes: 5e9 }, 0)
    expect(totals(s, 0)).toMatchObject({ skipped: 1, saved: 80, storeBytes: 5e9, seconds: 60 })
  })

  it("shows a lock wait and keeps step-less warnings", () => {
    let s = reduceAll(planned)
    s = reduce(s, { event: "waiting", step: "dedup", reason: "locked by anneal pid 4242" }, 0)
    s = reduce(s, { event: "log", step: null, level: "warn", message: "no GPU: running on CPU" }, 0)
    s = reduce(s, { event: "log", step: null, level: "debug", message: "noise" }, 0)
    expect(s.steps["dedup"]!).toMatchObject({ status: "waiting", note: "locked by anneal pid 4242" })
    expect(s.messages).toEqual([{ level: "warn", message: "no GPU: running on CPU" }])
  })

  it("does not change the state it was given", () => {
    const before = reduceAll(planned)
    const copy = JSON.stringify(before)
    reduce(before, sftStarted, 0)
    expect(JSON.stringify(before)).toBe(copy)
    expect(initialState(5).startedAt).toBe(5)
  })

  it("a reporter's fold gives the states the pure reducer gives, and a state it handed out stays as it was", () => {
    // a generated run: a chain of steps with fan-in, every kind of event, ids that are names on
    // Object.prototype (a step may be called "constructor")
    const ids = ["constructor", "toString", "hasOwnProperty", ...Array.from({ length: 60 }, (_, i) => `s${i}`)]
    const events: Array<EngineEvent> = []
    ids.forEach((id, i) => {
      const needs = i === 0 ? [] : [ids[i - 1]!, ...(i > 3 ? [ids[i - 4]!] : [])]
      events.push({ event: "planned", step: id, kind: "k", status: i % 3 === 0 ? "cached" : i % 3 === 1 ? "stale" : "waiting", reasons: [], needs })
    })
    ids.forEach((id, i) => {
      if (i % 3 === 0) {
        events.push({ event: "step", step: id, kind: "k", status: "cached", key: `k${i}`, output: `h${i}`, seconds: i })
        return
      }
      events.push({ event: "started", step: id, kind: "k", key: `k${i}`, gpus: [], log: `/l/${id}` })
      events.push({ event: "progress", step: id, current: 0, phase: "loading torch" })
      events.push({ event: "progress", step: id, current: 5, total: 10, loss: 1 / (i + 1) })
      events.push({ event: "metric", step: id, name: "accuracy", value: i / 100 })
      events.push({ event: "log", step: id, level: "info", message: `line ${i}\nline ${i + 1}` })
      events.push({ event: "log", step: null, level: "warn", message: `warning ${i}` })
      if (i % 5 === 0) events.push({ event: "waiting", step: id, reason: "locked by anneal pid 1" })
      events.push({ event: "step", step: id, kind: "k", status: i % 7 === 0 ? "failed" : "ran", key: `k${i}`, output: i % 7 === 0 ? null : `h${i}`, seconds: i, ...(i % 7 === 0 ? { error: "boom" } : {}) })
    })
    events.push({ event: "run", ran: 1, cached: 2, failed: 3, interrupted: 0, skipped: 0, seconds: 9, saved: 8 })

    const fold = makeFold(initialState(0))
    let pure = initialState(0)
    const handedOut: Array<[string, RunState]> = []
    events.forEach((e, i) => {
      fold.apply(e, i * 10)
      pure = reduce(pure, e, i * 10)
      if (i % 17 === 0) {
        const st = fold.state()
        expect(st).toEqual(pure)
        expect(fold.state()).toBe(st) // no event since: the same snapshot
        handedOut.push([JSON.stringify(st), st])
      }
    })
    expect(fold.state()).toEqual(pure)
    expect(fold.state()).toEqual(events.reduce((s, e, i) => reduce(s, e, i * 10), initialState(0)))
    expect(fold.step("constructor")).toEqual(pure.steps["constructor"])
    expect(fold.step("valueOf")).toBeUndefined()
    expect(pure.order).toEqual(ids)
    expect(pure.steps["s0"]!.depth).toBe(3)
    for (const [text, st] of handedOut) expect(JSON.stringify(st)).toBe(text)
  })
})

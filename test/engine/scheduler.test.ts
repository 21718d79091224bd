/**
 * Gang scheduling: a step's processes are granted all at once or not at all, two gangs that together
 * exceed the machine run one after the other (never each holding half), and a large request at the head
 * of the queue is not starved by a stream of small ones that would each fit in the gaps.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { describe, expect, it } from "vitest"
import { ResourcePool } from "../../engine/resources.ts"
import type { Request } from "../../engine/resources.ts"
import { annealIndex, cli, tempProject } from "../helpers/project.ts"

const cpus = (n: number): Request => ({ cpus: n, gpus: 0, memoryGb: 0 })

/** A holder that takes `request`, records when it got it, and keeps it until `release` is opened. */
const holder = (pool: ResourcePool, name: string, request: Request, log: Array<string>) =>
  Effect.gen(function* () {
    const release = yield* Deferred.make<void>()
    const fiber = yield* Effect.forkChild(
      pool.withResources(request, () =>
        Effect.sync(() => log.push(`${name} start`)).pipe(
          Effect.andThen(Deferred.await(release)),
          Effect.andThen(Effect.sync(() => log.push(`${name} end`)))
        ))
    )
    return { release: Deferred.succeed(release, undefined), fiber }
  })

/** Lets every fiber that can make progress do so. */
const settle = Effect.yieldNow.pipe(Effect.repeat({ times: 20 }))

describe("resource pool", () => {
  it("two 2-slot gangs on a 3-slot machine run one after the other, and both finish", async () => {
    const log: Array<string> = []
    await Effect.runPromise(Effect.gen(function* () {
      const pool = new ResourcePool({ cpus: 3, gpus: [], memoryGb: 16 })
      const a = yield* holder(pool, "a", cpus(2), log)
      const b = yield* holder(pool, "b", cpus(2), log)
      yield* settle
      // b holds nothing while it waits (no partial gang): a single free slot stays free
      expect(log).toEqual(["a start"])
      expect(pool.waiting).toBe(1)
      yield* a.release
      yield* settle
      expect(log).toEqual(["a start", "a end", "b start"])
      yield* b.release
      yield* Fiber.join(a.fiber)
      yield* Fiber.join(b.fiber)
    }))
    expect(log).toEqual(["a start", "a end", "b start", "b end"])
  })

  it("slots given back early (a step whose process ended, committing) serve the next request once, and only once", async () => {
    const log: Array<string> = []
    await Effect.runPromise(Effect.gen(function* () {
      const pool = new ResourcePool({ cpus: 2, gpus: [], memoryGb: 16 })
      const committed = yield* Deferred.make<void>()
      const a = yield* Effect.forkChild(pool.withResources(cpus(2), (_grant, release) =>
        Effect.sync(() => {
          log.push("a ran")
          release()
          release() // a second call gives nothing back
        }).pipe(Effect.andThen(Deferred.await(committed)), Effect.andThen(Effect.sync(() => log.push("a committed"))))))
      const b = yield* holder(pool, "b", cpus(2), log)
      yield* settle
      // b runs on a's slots while a still commits
      expect(log).toEqual(["a ran", "b start"])
      yield* Deferred.succeed(committed, undefined)
      yield* Fiber.join(a)
      // a's end gave nothing back a second time: b still holds both slots, a third 1-slot request waits
      const c = yield* holder(pool, "c", cpus(1), log)
      yield* settle
      expect(log).toEqual(["a ran", "b start", "a committed"])
      expect(pool.waiting).toBe(1)
      yield* b.release
      yield* settle
      expect(log).toEqual(["a ran", "b start", "a committed", "b end", "c start"])
      yield* c.release
      yield* Fiber.join(b.fiber)
      yield* Fiber.join(c.fiber)
    }))
  })

  it("a 3-slot request is not starved by a stream of 1-slot requests", async () => {
    const log: Array<string> = []
    await Effect.runPromise(Effect.gen(function* () {
      const pool = new ResourcePool({ cpus: 3, gpus: [], memoryGb: 16 })
      const first = yield* holder(pool, "small0", cpus(1), log)
      const big = yield* holder(pool, "big", cpus(3), log)
      // a stream of small requests while big waits: two slots are free, yet none may start, since
      // each would delay big
      const smalls = []
      for (let i = 1; i <= 5; i++) smalls.push(yield* holder(pool, `small${i}`, cpus(1), log))
      yield* settle
      expect(log).toEqual(["small0 start"])
      yield* first.release
      yield* settle
      expect(log).toEqual(["small0 start", "small0 end", "big start"])
      yield* big.release
      yield* settle
      // then the small ones, three at a time, in arrival order
      expect(log.slice(3)).toEqual(["big end", "small1 start", "small2 start", "small3 start"])
      for (const s of smalls) yield* s.release
      for (const s of [first, big, ...smalls]) yield* Fiber.join(s.fiber)
    }))
    expect(log.filter((l) => l.endsWith("end"))).toHaveLength(7)
  })

  it("backfills what cannot delay the head: CPU-only work runs while a GPU gang waits for its GPUs", async () => {
    const log: Array<string> = []
    await Effect.runPromise(Effect.gen(function* () {
      const pool = new ResourcePool({ cpus: 4, gpus: [0, 1], memoryGb: 16 })
      const gpuJob = yield* holder(pool, "gpu1", { cpus: 1, gpus: 1, memoryGb: 0 }, log)
      const gang = yield* holder(pool, "gang", { cpus: 2, gpus: 2, memoryGb: 0 }, log)
      // 3 CPUs free, the gang needs 2 of them: one CPU may be lent, two may not
      const small = yield* holder(pool, "cpu1", cpus(1), log)
      const tooBig = yield* holder(pool, "cpu2", cpus(2), log)
      yield* settle
      expect(log).toEqual(["gpu1 start", "cpu1 start"])
      yield* gpuJob.release
      yield* settle
      expect(log.slice(2)).toEqual(["gpu1 end", "gang start"])
      for (const h of [gang, small, tooBig]) yield* h.release
      for (const h of [gpuJob, gang, small, tooBig]) yield* Fiber.join(h.fiber)
    }))
    expect(log).toContain("cpu2 start")
  })

  it("an interrupted head gives up its reservation", async () => {
    const log: Array<string> = []
    await Effect.runPromise(Effect.gen(function* () {
      const pool = new ResourcePool({ cpus: 3, gpus: [], memoryGb: 16 })
      const first = yield* holder(pool, "small0", cpus(1), log)
      const big = yield* holder(pool, "big", cpus(3), log)
      const small = yield* holder(pool, "small1", cpus(1), log)
      yield* settle
      expect(log).toEqual(["small0 start"])
      yield* Fiber.interrupt(big.fiber)
      yield* settle
      expect(log).toEqual(["small0 start", "small1 start"])
      expect(pool.waiting).toBe(0)
      yield* first.release
      yield* small.release
      yield* Fiber.join(first.fiber)
      yield* Fiber.join(small.fiber)
    }))
  })
})

const gangRecipe = `
import * as fs from "node:fs"
import * as path from "node:path"
import { defineStep, Port, recipe, source, Schema } from ${JSON.stringify(annealIndex)}

// a gang of two processes: it asks for both CPU slots at once
const gang = defineStep({
  kind: "gang", version: 1, params: Schema.Struct({ name: Schema.String }),
  inputs: { data: Port.files() }, output: Port.files(), resources: { cpus: 2 },
  run: async (ctx) => {
    const started = Date.now()
    // long enough for the other gang to start too, if the scheduler let it
    await new Promise((ok) => setTimeout(ok, 300))
    fs.writeFileSync(path.join(ctx.output, "times.json"), JSON.stringify({ started, ended: Date.now(), cpus: ctx.cpus }))
  }
})
export default recipe("gangs", () => {
  const data = source.files("data.txt")
  gang({ data }, { name: "a" }, { id: "a" })
  gang({ data }, { name: "b" }, { id: "b" })
})
`

describe("gang scheduling in a run", () => {
  it("two 2-slot steps with --jobs 3 run one after the other, each with its 2 slots", async () => {
    const p = tempProject()
    p.write("data.txt", "x\n")
    p.write("recipe.ts", gangRecipe)
    const r = await cli(["run", p.file("recipe.ts"), "--jobs", "3", "--json"])
    expect(r.exitCode, r.stderr).toBe(0)
    const times = ["a", "b"].map((id) => {
      const step = r.events.find((e) => e.event === "step" && e.step === id) as { output: string }
      const dir = path.join(p.store, "artifacts", step.output)
      return JSON.parse(fs.readFileSync(path.join(dir, "times.json"), "utf8")) as { started: number; ended: number; cpus: number }
    })
    expect(times.map((t) => t.cpus)).toEqual([2, 2])
    const [first, second] = times.sort((x, y) => x.started - y.started)
    expect(second!.started).toBeGreaterThanOrEqual(first!.ended)
  })
})

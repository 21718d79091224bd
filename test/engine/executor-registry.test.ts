/**
 * A new executor backend is one module that registers itself: `--executor NAME`, its anneal.config.json
 * section (checked against its schema), `anneal plan`'s placement text and the scheduling capacity all
 * come from the registration, with no engine file naming it. A backend that `load`s its executor has it
 * imported at the run's first step, never for plan; its settings are still checked up front.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import { chooseExecutor, describePlacement, executorNames, makeExecutor, readConfigFile, schedulingCapacity } from "../../engine/executor-config.ts"
import { registerExecutor } from "../../engine/executors/registry.ts"
import type { MakeExecutor } from "../../engine/executors/registry.ts"
import { makeStoreDir, runSpec, workerSpec } from "../executors/specs.ts"

const QueueConfig = Schema.Struct({ queue: Schema.String, slots: Schema.optional(Schema.Int) })
type QueueConfig = typeof QueueConfig.Type

registerExecutor<QueueConfig>({
  name: "queue",
  config: QueueConfig,
  make: (config) => {
    if (config === undefined) throw new Error(`needs a "queue" section`)
    return { name: "queue", run: () => Effect.succeed({ metrics: {} }) }
  },
  describe: (config, step, _kind, r) => `queue ${config?.queue ?? "?"}: ${step} with ${r.cpus} CPU`,
  capacity: (config) => ({ cpus: config?.slots ?? 4, gpus: [], memoryGb: 64 })
})

/** A backend whose executor "module" is loaded on demand: counts the loads, and fails them while `broken` is set. */
const Deferred = Schema.Struct({ lane: Schema.String })
declare module "../../engine/executors/registry.ts" {
  interface ExecutorConfigs {
    deferred: typeof Deferred.Type
  }
}
const loads = { count: 0, broken: false }
registerExecutor<typeof Deferred.Type>({
  name: "deferred",
  config: Deferred,
  check: (config) => {
    if (config?.lane === "") throw new Error("lane must not be empty")
  },
  load: async (): Promise<MakeExecutor<typeof Deferred.Type>> => {
    loads.count += 1
    if (loads.broken) throw new Error("Cannot find module './deferred-impl.ts'")
    return (config) => ({ name: "deferred", run: () => Effect.succeed({ metrics: { lane: config?.lane ?? "?" } }), close: async () => {} })
  },
  describe: (config, step) => `deferred ${config?.lane ?? "?"}: ${step}`
})

const configFile = (content: unknown): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-registry-"))
  const file = path.join(dir, "anneal.config.json")
  fs.writeFileSync(file, JSON.stringify(content))
  return file
}

describe("executor registry", () => {
  it("a registered backend is chosen, configured, described and sized through the registry alone", () => {
    expect(executorNames()).toEqual(["local", "slurm", "ray", "queue", "deferred"])
    const config = readConfigFile(configFile({ executor: "queue", queue: { queue: "batch", slots: 2 } }))
    expect(chooseExecutor(undefined, config)).toBe("queue")
    expect(makeExecutor("queue", config).name).toBe("queue")
    expect(describePlacement("queue", config, "clean", "clean", { gpus: 0, cpus: 3 })).toBe("queue batch: clean with 3 CPU")
    expect(schedulingCapacity("queue", config)).toEqual({ cpus: 2, gpus: [], memoryGb: 64 })
    expect(schedulingCapacity("local", config)).toBeUndefined()
  })

  it("its section is checked against its schema, and its constructor's refusal names it", () => {
    const bad = configFile({ queue: { queue: 7 } })
    expect(() => readConfigFile(bad)).toThrow(bad)
    expect(() => readConfigFile(bad)).toThrow(/queue/)
    expect(() => makeExecutor("queue", {})).toThrow('queue executor: needs a "queue" section')
    expect(() => readConfigFile(configFile({ executor: "kubernetes" }))).toThrow('unknown executor "kubernetes": use local, slurm, ray, queue, deferred')
  })

  it("a name registered twice is refused", () => {
    expect(() => registerExecutor({ name: "local", make: () => ({ name: "local", run: () => Effect.succeed({ metrics: {} }) }), describe: () => "" }))
      .toThrow('executor "local" is registered twice')
  })

  it("a backend's executor loads at the run's first step, once; plan and a refused setting never load it", async () => {
    const config = { deferred: { lane: "fast" } }
    const before = loads.count
    expect(describePlacement("deferred", config, "clean", "clean", { gpus: 0, cpus: 1 })).toBe("deferred fast: clean")
    expect(() => makeExecutor("deferred", { deferred: { lane: "" } })).toThrow("deferred executor: lane must not be empty")
    const executor = makeExecutor("deferred", config)
    expect(executor.name).toBe("deferred")
    expect(loads.count).toBe(before)
    const store = makeStoreDir()
    const first = await runSpec(executor, workerSpec(store))
    const second = await runSpec(executor, workerSpec(store))
    expect([first.result?.metrics, second.result?.metrics]).toEqual([{ lane: "fast" }, { lane: "fast" }])
    expect(loads.count).toBe(before + 1)
    await executor.close?.()
  })

  it("an executor that cannot load fails each step it was to run in one line naming it, not the process", async () => {
    loads.broken = true
    try {
      const executor = makeExecutor("deferred", { deferred: { lane: "fast" } })
      const { error } = await runSpec(executor, workerSpec(makeStoreDir(), { step: "sft" }))
      expect(error?.step).toBe("sft")
      expect(error?.message).toBe("deferred executor: cannot load it: Cannot find module './deferred-impl.ts'")
      // never loaded: nothing to close
      await expect(executor.close!()).resolves.toBeUndefined()
    } finally {
      loads.broken = false
    }
  })
})

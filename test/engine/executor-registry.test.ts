/**
 * A new executor backend is one module that registers itself: `--executor NAME`, its anneal.config.json
 * section (checked against its schema), `anneal plan`'s placement text and the scheduling capacity all
 * come from the registration, with no engine file naming it.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { describe, expect, it } from "vitest"
import { chooseExecutor, describePlacement, executorNames, makeExecutor, readConfigFile, schedulingCapacity } from "../../engine/executor-config.ts"
import { registerExecutor } from "../../engine/executors/registry.ts"

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

const configFile = (content: unknown): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-registry-"))
  const file = path.join(dir, "anneal.config.json")
  fs.writeFileSync(file, JSON.stringify(content))
  return file
}

describe("executor registry", () => {
  it("a registered backend is chosen, configured, described and sized through the registry alone", () => {
    expect(executorNames()).toEqual(["local", "slurm", "ray", "queue"])
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
    expect(() => readConfigFile(configFile({ executor: "kubernetes" }))).toThrow('unknown executor "kubernetes": use local, slurm, ray, queue')
  })

  it("a name registered twice is refused", () => {
    expect(() => registerExecutor({ name: "local", make: () => ({ name: "local", run: () => Effect.succeed({ metrics: {} }) }), describe: () => "" }))
      .toThrow('executor "local" is registered twice')
  })
})

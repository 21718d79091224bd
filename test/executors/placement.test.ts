/**
 * Per-step placement under a cluster executor (engine/executors/placement.ts): which steps run on the
 * driver and which become jobs, by the config's rules and the auto rule; the routing executor sends
 * each step to the right one, bounds the driver's share, and refuses a GPU step on the driver.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { describePlacement, readConfigFile } from "../../engine/executor-config.ts"
import { projectRoot } from "../../engine/python.ts"
import { runRecipe } from "../../engine/run.ts"
import { placeStep, withPlacement } from "../../engine/executors/placement.ts"
import type { PlacedStep } from "../../engine/executors/placement.ts"
import type { Executor, StepSpec } from "../../engine/spec.ts"
import { logsOf, makeStoreDir, runSpec, workerSpec } from "./specs.ts"

const step = (id: string, kind: string, o: Partial<PlacedStep> = {}): PlacedStep => ({ step: id, kind, ts: true, gpus: 0, cpus: 1, ...o })

describe("where a step runs", () => {
  it("auto: a TS step asking for nothing runs on the driver; command steps and steps that declare resources are jobs", () => {
    expect(placeStep(undefined, step("clean", "clean")).where).toBe("local")
    expect(placeStep(undefined, step("sft", "sft", { ts: false })).where).toBe("cluster")
    expect(placeStep(undefined, step("dedup", "dedup", { cpus: 8 })).where).toBe("cluster")
    expect(placeStep(undefined, step("big", "clean", { memoryGb: 64 })).where).toBe("cluster")
    expect(placeStep({ default: "cluster" }, step("clean", "clean")).where).toBe("cluster")
    expect(placeStep({ default: "local" }, step("sft", "sft", { ts: false })).where).toBe("local")
  })

  it("the step call's executor option wins over every rule", () => {
    const rules = { local: ["sft"], cluster: ["clean"], default: "cluster" as const }
    expect(placeStep(rules, step("clean", "clean", { option: "local" })).where).toBe("local")
    expect(placeStep(rules, step("sft", "sft", { ts: false, option: "cluster" }))).toEqual({ where: "cluster", why: `the step's executor option is "cluster"` })
  })

  it("rules name ids or kinds, with *; the most specific wins: exact id, id pattern, exact kind, kind pattern", () => {
    const rules = { local: ["tokenize", "eval-*"], cluster: ["eval-mmlu", "clean"] }
    expect(placeStep(rules, step("tok", "tokenize", { ts: false })).where).toBe("local") // kind
    expect(placeStep(rules, step("eval-gsm8k", "eval", { ts: false })).where).toBe("local") // id pattern
    expect(placeStep(rules, step("eval-mmlu", "eval", { ts: false })).where).toBe("cluster") // exact id over id pattern
    expect(placeStep(rules, step("clean-web", "clean")).where).toBe("cluster") // kind over auto
    expect(placeStep({ local: ["clean"], cluster: ["clean-*"] }, step("clean-web", "clean")).where).toBe("cluster") // id pattern over kind
    expect(placeStep({ local: ["x*"], cluster: ["x*"] }, step("xy", "k")).where).toBe("cluster") // a tie goes to the cluster
  })

  it("anneal plan says which steps stay on the driver, and why", () => {
    const config = { slurm: { placement: { local: ["prep"] } } }
    expect(describePlacement("slurm", config, "prep", "some-kind", { gpus: 0, cpus: 1 })).toBe("local (on the driver: placement.local names it): 1 CPU")
    expect(describePlacement("slurm", config, "train", "test-train", { gpus: 1, cpus: 2 })).toMatch(/^slurm: sbatch /)
  })

  it("the config file takes placement rules and a retry policy, and names a bad one", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-placement-"))
    const file = path.join(dir, "anneal.config.json")
    fs.writeFileSync(file, JSON.stringify({
      executor: "slurm",
      slurm: { placement: { local: ["clean"], default: "cluster" }, retry: { maxRetries: 3, on: ["timeout"] }, setup: ["module load cuda"] }
    }))
    expect(readConfigFile(file).slurm?.placement?.default).toBe("cluster")
    fs.writeFileSync(file, JSON.stringify({ slurm: { placement: { default: "sometimes" } } }))
    expect(() => readConfigFile(file)).toThrow(/anneal\.config\.json: .*default/)
    fs.writeFileSync(file, JSON.stringify({ slurm: { retry: { on: ["bad-luck"] } } }))
    expect(() => readConfigFile(file)).toThrow(/anneal\.config\.json: .*on/)
    // a factor under 1 would shrink a retry's memory (and --mem=0 is a whole node's): refused
    fs.writeFileSync(file, JSON.stringify({ slurm: { retry: { memoryFactor: 0 } } }))
    expect(() => readConfigFile(file)).toThrow(/anneal\.config\.json: .*memoryFactor/)
    fs.writeFileSync(file, JSON.stringify({ slurm: { memoryPerCpuGb: -1 } }))
    expect(() => readConfigFile(file)).toThrow(/anneal\.config\.json: .*memoryPerCpuGb/)
  })
})

/** An executor that records which specs it got, and holds each for `ms`. */
const recording = (name: string, ms = 0) => {
  const ran: Array<string> = []
  let running = 0
  let most = 0
  const executor: Executor = {
    name,
    run: (spec) =>
      Effect.gen(function* () {
        ran.push(spec.step)
        running += 1
        most = Math.max(most, running)
        yield* Effect.sleep(ms)
        running -= 1
        return { metrics: {} }
      })
  }
  return { executor, ran, most: () => most }
}

const tsSpec = (store: string, id: string, o: { gpus?: number; cpus?: number } = {}): StepSpec => ({
  ...workerSpec(store, { step: id, ...o }),
  implementation: { type: "ts" }
})

describe("the routing executor", () => {
  it("sends each step where its placement says, and tells the step's log why", async () => {
    const store = makeStoreDir()
    const cluster = recording("slurm")
    const local = recording("local")
    const routed = withPlacement(cluster.executor, local.executor, { local: ["prep"] })
    const prep = await runSpec(routed, workerSpec(store, { step: "prep" }))
    await runSpec(routed, workerSpec(store, { step: "train" }))
    await runSpec(routed, tsSpec(store, "stats"))
    expect(local.ran).toEqual(["prep", "stats"])
    expect(cluster.ran).toEqual(["train"])
    expect(logsOf(prep.events)).toContain("runs on the driver, not as a slurm job (placement.local names it)")
  })

  it("bounds the steps it runs on the driver by localCpus, though the run schedules against the cluster's capacity", async () => {
    const store = makeStoreDir()
    const local = recording("local", 150)
    const routed = withPlacement(recording("slurm").executor, local.executor, { default: "local", localCpus: 2 })
    await Promise.all(Array.from({ length: 6 }, (_, i) => runSpec(routed, tsSpec(store, `s${i}`))))
    expect(local.ran).toHaveLength(6)
    expect(local.most()).toBe(2)
  })

  it("a recipe's { executor: \"local\" } reaches the spec, and the routing executor runs that step on the driver", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-placement-recipe-"))
    const recipe = path.join(dir, "recipe.ts")
    fs.writeFileSync(recipe, [
      `import { defineStep, Port, recipe, Schema } from ${JSON.stringify(path.join(projectRoot, "index.ts"))}`,
      `import * as fs from "node:fs"`,
      `import * as path from "node:path"`,
      `const write = defineStep({ kind: "placement-write", version: 1, params: Schema.Struct({ text: Schema.String }), inputs: {}, output: Port.files(),`,
      `  run: (ctx) => fs.writeFileSync(path.join(ctx.output, "t.txt"), ctx.params.text) })`,
      `export default recipe("placement-option", () => {`,
      `  write({}, { text: "a" }, { id: "here", executor: "local" })`,
      `  write({}, { text: "b" }, { id: "there" })`,
      `})`
    ].join("\n"))
    const cluster = recording("slurm")
    const local = recording("local")
    const seen = new Map<string, StepSpec["placement"]>()
    const spy = (e: Executor): Executor => ({ ...e, run: (spec, emit) => (seen.set(spec.step, spec.placement), e.run(spec, emit)) })
    const summary = await runRecipe({ recipe, store: path.join(dir, ".anneal"), executor: withPlacement(spy(cluster.executor), spy(local.executor), { default: "cluster" }), reporter: { emit: () => {} } })
    expect(seen.get("here")).toBe("local")
    expect(seen.get("there")).toBeUndefined()
    expect(local.ran).toEqual(["here"])
    expect(cluster.ran).toEqual(["there"])
    expect(summary.exitCode).toBe(0) // the recording executors write nothing: two empty artifacts
  })

  it("refuses a GPU step placed on the driver, naming the step and the rule", async () => {
    const store = makeStoreDir()
    const routed = withPlacement(recording("slurm").executor, recording("local").executor, { local: ["sft"] })
    const { error } = await runSpec(routed, workerSpec(store, { step: "sft", gpus: 1 }))
    expect(error?.message).toBe("sft asks for 1 GPU(s) but is placed on the driver (placement.local names it), which schedules no GPUs under the slurm executor: remove it from placement.local")
  })
})

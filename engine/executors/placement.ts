/**
 * The routing executor in front of a cluster executor: each step runs on the driver (the local
 * executor) or as a job, by the placement rules of placement-rules.ts. It loads with the cluster
 * executor, for a run on a cluster; the rules load with every command (config validation, `anneal plan`).
 */
import * as os from "node:os"
import * as Effect from "effect/Effect"
import { messageOf } from "../errors.ts"
import type { EngineEvent } from "../events.ts"
import type { ExecResult, Executor, StepSpec } from "../spec.ts"
import { StepExecutionError } from "../spec.ts"
import { makeLocalExecutor } from "./local.ts"
import { placedStepOf, placeStep } from "./placement-rules.ts"
import type { PlacementRules } from "./placement-rules.ts"
import type { ShardCommand, ShardRunner } from "./shard-jobs.ts"

export { describePlaced, placeByKind, placedStepOf, PlacementConfig, placeStep } from "./placement-rules.ts"
export type { PlacedStep, Placement, PlacementRules } from "./placement-rules.ts"

/** A count of the driver's CPU slots, for steps placed on it: first come, first served. */
const makeSlots = (total: number) => {
  let free = total
  const waiting: Array<() => void> = []
  const take = (n: number) =>
    Effect.callback<void>((resume) => {
      const want = Math.min(n, total)
      const tryTake = () => {
        if (free < want) return false
        free -= want
        resume(Effect.void)
        return true
      }
      if (waiting.length === 0 && tryTake()) return
      const waiter = () => {
        if (tryTake()) waiting.splice(waiting.indexOf(waiter), 1)
      }
      waiting.push(waiter)
      return Effect.sync(() => {
        const i = waiting.indexOf(waiter)
        if (i >= 0) waiting.splice(i, 1)
      })
    })
  const give = (n: number) =>
    Effect.sync(() => {
      free += Math.min(n, total)
      for (const w of [...waiting]) w()
    })
  return { take, give }
}

/**
 * The routing executor: each step goes to `local` or `cluster` by the rules. `close` closes both.
 */
export const withPlacement = (
  cluster: Executor,
  local: Executor,
  rules: PlacementRules | undefined,
  /** run once before the first step placed on the driver (placedClusterExecutor: the shard runner) */
  beforeLocal?: () => Promise<void>
): Executor => {
  let prepared: Promise<void> | undefined
  const slots = makeSlots(Math.max(1, rules?.localCpus ?? os.availableParallelism()))
  const run = (spec: StepSpec, emit: (event: EngineEvent) => void): Effect.Effect<ExecResult, StepExecutionError> =>
    Effect.suspend(() => {
      if (spec.placement !== undefined && spec.placement !== "local" && spec.placement !== "cluster") {
        return Effect.fail(new StepExecutionError(spec.step, `${spec.step}: the executor option must be "local" or "cluster", not ${JSON.stringify(spec.placement)}`))
      }
      const placed = placeStep(rules, placedStepOf(spec))
      if (placed.where === "cluster") return cluster.run(spec, emit)
      if (spec.devices.gpus.length > 0) {
        return Effect.fail(new StepExecutionError(
          spec.step,
          `${spec.step} asks for ${spec.devices.gpus.length} GPU(s) but is placed on the driver (${placed.why}), which schedules no GPUs under the ${cluster.name} executor: remove it from placement.local`
        ))
      }
      emit({ event: "log", step: spec.step, level: "info", message: `runs on the driver, not as a ${cluster.name} job (${placed.why})` })
      const cpus = Math.max(1, spec.devices.cpus)
      const ready = beforeLocal === undefined ? Effect.void : Effect.tryPromise({
        try: () => (prepared ??= beforeLocal()),
        catch: (e) => new StepExecutionError(spec.step, `${cluster.name}: preparing the driver for ${spec.step}: ${messageOf(e)}`, undefined, e)
      })
      return Effect.andThen(ready, Effect.acquireUseRelease(slots.take(cpus), () => local.run(spec, emit), () => slots.give(cpus)))
    })
  return {
    name: cluster.name,
    run,
    close: async () => {
      await Promise.all([cluster.close?.(), local.close?.()])
    }
  }
}

/** A cluster executor behind placement: steps the rules place on the driver run with the local executor. */
export const placedClusterExecutor = (
  cluster: Executor,
  rules: PlacementRules | undefined,
  project: { readonly warmWorkers?: boolean | undefined },
  shards?: (command: ShardCommand) => ShardRunner
): Executor =>
  withPlacement(
    cluster,
    makeLocalExecutor(project.warmWorkers === false ? { warm: false } : {}),
    rules,
    // a data step on the driver hands its shard tasks to the cluster (shard-jobs.ts); loaded only then
    shards === undefined ? undefined : async () => {
      const fanout = await import("../../steps/data/fanout.ts")
      fanout.setShardExecutor(shards(fanout.shardCommand))
    }
  )

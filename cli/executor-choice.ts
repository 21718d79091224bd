/**
 * Where a run's steps execute: `--executor NAME`, else the nearest anneal.config.json's "executor",
 * else local. Executors register themselves in engine/executors/registry.ts (docs/cluster.md).
 */
import * as path from "node:path"
import { chooseExecutor, loadProjectConfig, makeExecutor, schedulingCapacity } from "../engine/executor-config.ts"
import type { ExecutorName, ProjectConfig, SchedulingCapacity } from "../engine/executor-config.ts"
import type { Executor } from "../engine/spec.ts"

export interface ExecutorChoice {
  readonly name: ExecutorName
  readonly config: ProjectConfig
  readonly executor: Executor
  /** the pool to schedule against instead of this machine's (cluster executors only) */
  readonly capacity: SchedulingCapacity | undefined
}

export const executorChoice = (flag: string | undefined, recipe: string, store: string | undefined): ExecutorChoice => {
  const config = loadProjectConfig(path.dirname(path.resolve(recipe)))
  const name = chooseExecutor(flag, config)
  const overrides = store !== undefined ? { stateDir: path.join(path.resolve(store), "jobs") } : {}
  return {
    name,
    config,
    executor: makeExecutor(name, config, overrides),
    capacity: schedulingCapacity(name, config)
  }
}

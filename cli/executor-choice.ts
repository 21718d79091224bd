/** Maps `--executor NAME` to an Executor. Cluster executors live in engine/executors/ (docs/cluster.md). */
import * as path from "node:path"
import { chooseExecutor, loadProjectConfig, makeExecutor } from "../engine/executor-config.ts"
import type { Executor } from "../engine/spec.ts"

/** `--executor` with the settings of the nearest anneal.config.json above the recipe. */
export const executorFor = async (name: string, recipe: string, store: string | undefined): Promise<Executor> => {
  const config = loadProjectConfig(path.dirname(path.resolve(recipe)))
  return makeExecutor(chooseExecutor(name, config), config, store !== undefined ? { stateDir: path.join(path.resolve(store), "jobs") } : {})
}

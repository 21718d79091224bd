/** Maps `--executor NAME` to an Executor. Cluster executors live in engine/executors/ (docs/cluster.md). */
import { UsageError } from "../engine/errors.ts"
import type { Executor } from "../engine/spec.ts"

export const executorFor = async (name: string, _recipe: string, _store: string | undefined): Promise<Executor> => {
  throw new UsageError({ message: `unknown executor "${name}" (available: local)` })
}

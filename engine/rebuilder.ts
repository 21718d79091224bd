/**
 * The rebuilder decides, for one step whose inputs are known, whether its output can be taken from the
 * store or the step must run. It knows nothing of concurrency or resources (that is the scheduler's
 * business), which is the split "Build systems a la carte" makes: a build system is a scheduler applied
 * to a rebuilder (engine/scheduler.ts is the scheduler), and a policy is one small function. `anneal run`
 * uses constructive traces; the oracle test (test/engine/oracle.test.ts) checks it against others.
 */
import type { StepRecord } from "../cache/db.ts"
import type { PlannedStep } from "./graph.ts"
import { diffTraces } from "./keys.ts"
import type { Trace } from "./keys.ts"

export interface RebuildQuery {
  readonly step: PlannedStep
  readonly trace: Trace
  readonly key: string
  /** the step id's last successful state in this recipe, if any */
  readonly record: StepRecord | undefined
  readonly forced: boolean
  /** the output ever built for this key (constructive trace), if any */
  readonly result: { readonly output: string; readonly seconds: number } | undefined
  readonly present: (hash: string) => boolean
  /** why `present` said no (e.g. "output artifact damaged (file x missing)"), when the store knows */
  readonly damage?: ((hash: string) => string | undefined) | undefined
}

export type Decision =
  | { readonly action: "cached"; readonly output: string; readonly seconds: number; readonly restored: boolean; readonly reasons: ReadonlyArray<string> }
  | { readonly action: "run"; readonly reasons: ReadonlyArray<string> }

export type Rebuilder = (q: RebuildQuery) => Decision

/** Why a step must run, as human lines (the `plan` output and the trace diff). */
export const staleReasons = (q: RebuildQuery): Array<string> => {
  if (q.forced) return ["forced with --force"]
  if (q.record === undefined) return ["never run"]
  if (q.record.key === q.key) {
    return q.present(q.record.output) ? [] : [q.damage?.(q.record.output) ?? "output missing from the store (deleted or garbage-collected)"]
  }
  const reasons = diffTraces(JSON.parse(q.record.trace) as Trace, q.trace)
  return reasons.length > 0 ? reasons : ["key changed"]
}

/**
 * The default policy, constructive traces: any key that was ever built is restored from the store,
 * so reverting a param brings back the old artifact instantly instead of recomputing it.
 */
export const constructiveTraces: Rebuilder = (q) => {
  if (!q.forced && q.result !== undefined && q.present(q.result.output)) {
    const restored = q.record === undefined || q.record.key !== q.key
    return {
      action: "cached",
      output: q.result.output,
      seconds: q.result.seconds,
      restored,
      reasons: restored ? [`restored: built before with this exact key`] : []
    }
  }
  return { action: "run", reasons: staleReasons(q) }
}

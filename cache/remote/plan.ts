/**
 * `anneal plan --remote`: a step the local cache cannot serve but the remote can is shown as cached,
 * with the reason "in the remote ... (a run downloads it)"; steps waiting on it get their keys from the
 * remote's outputs, so a plan on a fresh machine shows what a run there would actually do.
 */
import type { PlannedStep } from "../../engine/graph.ts"
import type { PlanEntry, Project } from "../../engine/plan.ts"
import { planFromRemote } from "./sync.ts"
import type { RemoteConfig } from "./url.ts"
import { parseRemote } from "./url.ts"

export const withRemote = async (
  entries: ReadonlyArray<PlanEntry>,
  config: RemoteConfig,
  project: Project,
  steps: ReadonlyArray<PlannedStep>,
  force: ReadonlyArray<string>
): Promise<ReadonlyArray<PlanEntry>> => {
  const url = parseRemote(config).url
  const found = await planFromRemote(config, project, steps, force)
  const cachedOrRemote = new Set([...entries.filter((e) => e.status === "cached").map((e) => e.step), ...found.keys()])
  return entries.map((e): PlanEntry => {
    const r = found.get(e.step)
    if (e.status === "cached") return e
    if (r !== undefined) return { ...e, status: "cached", key: r.key, output: r.output, reasons: [`in the remote ${url} (a run downloads it)`] }
    // a step that waited only on steps the remote serves is stale now, with its own reasons
    if (e.status === "waiting" && e.needs.every((n) => cachedOrRemote.has(n))) {
      return { ...e, status: "stale", reasons: e.reasons.filter((x) => !x.startsWith("waits for ")) }
    }
    return e
  })
}

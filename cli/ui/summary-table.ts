/**
 * The end-of-run table every reporter prints: one row per step (status, time, key metrics), then the
 * totals. Plain text, so the Ink view, the plain reporter and the Markdown report show the same thing.
 */
import type { RunState, StepView } from "./state.ts"
import { keyMetrics } from "./state.ts"
import { formatDuration, formatMetric, textTable } from "./format.ts"
import { glyphs } from "./lines.ts"

export const summaryRow = (s: StepView): Array<string> => [
  `${glyphs[s.status]} ${s.id}`,
  s.kind,
  s.status === "done" ? "ran" : s.status,
  // a cached step's own time is the restore, not the work: leave it out rather than show "0.0s"
  s.seconds !== undefined && s.status !== "skipped" && s.status !== "cached" ? formatDuration(s.seconds) : "",
  keyMetrics(s).map(([k, v]) => `${k} ${formatMetric(k, v)}`).join("  ")
]

export const summaryTable = (state: RunState, width?: number): Array<string> =>
  textTable(
    ["step", "kind", "status", "time", "metrics"],
    state.order.map((id) => summaryRow(state.steps[id]!)),
    { rightAlign: [3], ...(width !== undefined ? { maxWidth: width } : {}) }
  )

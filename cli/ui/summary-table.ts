/**
 * The end-of-run table every reporter prints: one row per step (status, time, key metrics; a crowd of
 * plain cached steps as one row), then the totals. Plain text, so the Ink view, the plain reporter and
 * the Markdown report show the same thing.
 */
import type { RunState, StepView } from "./state.ts"
import { keyMetrics } from "./state.ts"
import { formatDuration, formatMetric, textTable } from "./format.ts"
import { foldCached, glyphs } from "./lines.ts"

export const summaryRow = (s: StepView): Array<string> => [
  `${glyphs[s.status]} ${s.id}`,
  s.kind,
  s.status === "done" ? "ran" : s.status,
  // a cached step's own time is the restore, not the work: leave it out rather than show "0.0s"
  s.seconds !== undefined && s.status !== "skipped" && s.status !== "cached" ? formatDuration(s.seconds) : "",
  keyMetrics(s).map(([k, v]) => `${k} ${formatMetric(k, v)}`).join("  ")
]

/** One row per step; more than `foldCachedAbove` plain cached steps are one row that counts them. */
export const summaryTable = (state: RunState, width?: number): Array<string> =>
  textTable(
    ["step", "kind", "status", "time", "metrics"],
    foldCached(state.order.map((id) => state.steps[id]!)).map((s) =>
      "folded" in s ? [`${glyphs.cached} ${s.folded.length.toLocaleString("en-US")} steps`, "", "cached", "", ""] : summaryRow(s)
    ),
    { rightAlign: [3], ...(width !== undefined ? { maxWidth: width } : {}) }
  )

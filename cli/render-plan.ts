/** A person's view of `anneal plan`. */
import type { PlanEntry } from "../engine/plan.ts"

const glyph = { cached: "✓", stale: "●", waiting: "…" } as const

export const renderPlan = (entries: ReadonlyArray<PlanEntry>): string => {
  const width = Math.max(...entries.map((e) => e.step.length), 4)
  const lines: Array<string> = []
  for (const e of entries) {
    lines.push(`${glyph[e.status]} ${e.step.padEnd(width)}  ${e.status.padEnd(7)}  ${e.kind}`)
    for (const r of e.reasons) lines.push(`${" ".repeat(width + 4)}${r}`)
  }
  const n = (s: string) => entries.filter((e) => e.status === s).length
  lines.push("", `${n("cached")} cached, ${n("stale")} stale, ${n("waiting")} waiting`)
  return lines.join("\n") + "\n"
}

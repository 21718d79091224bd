import { describe, expect, it } from "vitest"
import { renderPlan } from "../../../cli/render/plan.ts"
import type { PlanRecord } from "../../../cli/render/plan.ts"
import type { PlanEntry } from "../../../engine/plan.ts"

const records: ReadonlyArray<PlanRecord> = [
  { step: "clean", kind: "clean", status: "cached", reasons: [], needs: [] },
  {
    step: "dedup",
    kind: "dedup",
    status: "stale",
    reasons: ["params.threshold: 0.8 -> 0.9", "params.ngram: (unset) -> 5", "input data changed (3f2a0011aa.. -> 9c1d2233bb..)"],
    needs: ["clean"]
  },
  { step: "sft", kind: "sft", status: "waiting", reasons: ["waits for dedup", "implementation version 1 -> 2"], needs: ["dedup"] },
  { step: "eval", kind: "eval", status: "waiting", reasons: ["waits for sft", "never run"], needs: ["sft", "clean"] }
]

describe("plan rendering", () => {
  it("shows the tree, statuses and reasons as a diff against the last build", () => {
    expect(renderPlan(records)).toBe([
      "≡ clean       clean  cached",
      "  ○ dedup     dedup  stale",
      "      - params.threshold: 0.8",
      "      + params.threshold: 0.9",
      "      + params.ngram: 5",
      "      - input data: 3f2a0011aa..",
      "      + input data: 9c1d2233bb..",
      "    ◷ sft     sft    waiting for dedup",
      "        - implementation version 1",
      "        + implementation version 2",
      "      ◷ eval  eval   waiting for sft",
      "          never run",
      "",
      "1 cached · 1 stale · 2 waiting",
      ""
    ].join("\n"))
  })

  it("colours removed lines red and added lines green only when asked", () => {
    expect(renderPlan(records)).not.toMatch(/\x1b/)
    const coloured = renderPlan(records, { color: true })
    expect(coloured).toContain("\x1b[31m- params.threshold: 0.8\x1b[0m")
    expect(coloured).toContain("\x1b[32m+ params.threshold: 0.9\x1b[0m")
  })

  it("says when there is nothing to run, and cuts lines to a width", () => {
    const all = renderPlan([records[0]!], { width: 8 })
    expect(all).toBe("≡ clean \n\n1 cached\n") // cut to 8 columns
    expect(renderPlan([records[0]!])).toContain("1 cached · 0 stale · 0 waiting — nothing to run")
  })

  it("takes the engine's plan entries as they are", () => {
    const entry: PlanEntry = { ...records[1]!, key: "k", output: undefined, decision: undefined, trace: undefined }
    expect(renderPlan([entry])).toContain("○ dedup  dedup  stale")
  })
})

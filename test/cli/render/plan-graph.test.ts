/**
 * `anneal plan --format dot|mermaid`: the DAG drawn with one node per step, coloured by status, and an
 * edge from each step to the steps that read its output.
 */
import { describe, expect, it } from "vitest"
import { renderPlanGraph } from "../../../cli/render/plan.ts"
import type { PlanRecord } from "../../../cli/render/plan.ts"
import { chainData, chainRecipe } from "../../helpers/chain-recipe.ts"
import { cli, tempProject } from "../../helpers/project.ts"

const records: ReadonlyArray<PlanRecord> = [
  { step: "clean", kind: "clean", status: "cached", reasons: [], needs: [] },
  { step: "dedup", kind: "dedup", status: "stale", reasons: ["params.threshold: 0.8 -> 0.9", "never run"], needs: ["clean"] },
  { step: 'say "hi"', kind: "sft", status: "waiting", reasons: ["waits for dedup"], needs: ["dedup", "clean"] }
]

describe("plan as a graph", () => {
  it("DOT: a node per step with its kind and status, status colours, edges from inputs", () => {
    expect(renderPlanGraph(records, "dot")).toBe([
      "digraph plan {",
      "  rankdir=LR;",
      '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
      '  "clean" [label="clean\\nclean · cached", fillcolor="#dbeafe", color="#1d4ed8"];',
      '  "dedup" [label="dedup\\ndedup · stale (2 reasons)", fillcolor="#fef3c7", color="#b45309"];',
      '  "say \\"hi\\"" [label="say \\"hi\\"\\nsft · waiting for dedup", fillcolor="#e5e7eb", color="#6b7280"];',
      '  "clean" -> "dedup";',
      '  "dedup" -> "say \\"hi\\"";',
      '  "clean" -> "say \\"hi\\"";',
      "}",
      ""
    ].join("\n"))
  })

  it("Mermaid: a flowchart with one class per status; step ids become safe node ids", () => {
    expect(renderPlanGraph(records, "mermaid")).toBe([
      "flowchart LR",
      '  s0["clean<br/>clean · cached"]:::cached',
      '  s1["dedup<br/>dedup · stale (2 reasons)"]:::stale',
      '  s2["say #34;hi#34;<br/>sft · waiting for dedup"]:::waiting',
      "  s0 --> s1",
      "  s1 --> s2",
      "  s0 --> s2",
      "  classDef cached fill:#dbeafe,stroke:#1d4ed8",
      "  classDef stale fill:#fef3c7,stroke:#b45309",
      "  classDef waiting fill:#e5e7eb,stroke:#6b7280",
      ""
    ].join("\n"))
  })

  it("anneal plan --format draws a real recipe before and after a run; a bad format is exit 2", async () => {
    const p = tempProject()
    p.write("data.txt", chainData)
    p.write("recipe.ts", chainRecipe())
    const before = await cli(["plan", p.file("recipe.ts"), "--format", "mermaid"], { cwd: p.dir })
    expect(before.exitCode, before.stderr).toBe(0)
    expect(before.stdout).toBe([
      "flowchart LR",
      '  s0["upper<br/>upper · stale (1 reason)"]:::stale',
      '  s1["reverse<br/>reverse · stale (1 reason)"]:::stale',
      '  s2["count<br/>count · waiting for upper"]:::waiting',
      '  s3["join<br/>join · waiting for count, reverse, upper"]:::waiting',
      "  s0 --> s2",
      "  s2 --> s3",
      "  s1 --> s3",
      "  s0 --> s3",
      "  classDef cached fill:#dbeafe,stroke:#1d4ed8",
      "  classDef stale fill:#fef3c7,stroke:#b45309",
      "  classDef waiting fill:#e5e7eb,stroke:#6b7280"
    ].join("\n")) // (the helper strips the last newline)

    expect((await cli(["run", p.file("recipe.ts")], { cwd: p.dir })).exitCode).toBe(0)
    const after = await cli(["plan", p.file("recipe.ts"), "--format", "dot"], { cwd: p.dir })
    expect(after.exitCode, after.stderr).toBe(0)
    expect(after.stdout).toContain('"join" [label="join\\njoin · cached", fillcolor="#dbeafe"')
    expect(after.stdout).toContain('"count" -> "join";')

    const bad = await cli(["plan", p.file("recipe.ts"), "--format", "svg"], { cwd: p.dir })
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr.trim()).toBe('anneal: plan: --format must be text, dot or mermaid, got "svg"')
  }, 120_000)
})

/**
 * `anneal plan` for people: every step in dependency order, indented by how deep it sits in the graph,
 * with its status, and under each stale or waiting step the reasons as a diff against the last build.
 */
import { padEnd } from "../ui/format.ts"
import type { Paint, Style } from "./paint.ts"
import { makePaint } from "./paint.ts"
import { reasonLines, splitWaits } from "./reasons.ts"

/** What the plan command passes per step (engine/plan.ts `PlanEntry` has these and more). */
export interface PlanRecord {
  readonly step: string
  readonly kind: string
  readonly status: "cached" | "stale" | "waiting"
  readonly reasons: ReadonlyArray<string>
  readonly needs: ReadonlyArray<string>
}

export interface RenderPlanOptions {
  readonly color?: boolean | undefined
  /** lines are cut to this width; by default they are left whole */
  readonly width?: number | undefined
}

const glyph = { cached: "≡", stale: "○", waiting: "◷" } as const
const statusStyle: Record<PlanRecord["status"], Style> = { cached: "blue", stale: "yellow", waiting: "gray" }

const depths = (records: ReadonlyArray<PlanRecord>): Map<string, number> => {
  const d = new Map<string, number>()
  for (const r of records) d.set(r.step, Math.max(-1, ...r.needs.map((n) => d.get(n) ?? 0)) + 1)
  return d
}

export const renderPlan = (records: ReadonlyArray<PlanRecord>, options: RenderPlanOptions = {}): string => {
  const paint: Paint = makePaint(options.color === true)
  const depth = depths(records)
  const indent = (r: PlanRecord) => "  ".repeat(Math.min(depth.get(r.step) ?? 0, 8))
  const idWidth = Math.max(4, ...records.map((r) => [...indent(r)].length + [...r.step].length))
  const kindWidth = Math.max(4, ...records.map((r) => r.kind.length))
  const lines: Array<string> = []
  for (const r of records) {
    const { waitsFor, rest } = splitWaits(r.reasons)
    const status = r.status === "waiting" && waitsFor !== undefined ? `waiting for ${waitsFor}` : r.status
    const head = `${indent(r)}${paint(statusStyle[r.status], glyph[r.status])} ${padEnd(r.step, idWidth - [...indent(r)].length)}  `
      + `${paint("dim", padEnd(r.kind, kindWidth))}  ${paint(statusStyle[r.status], status)}`
    lines.push(head.trimEnd())
    const pad = indent(r) + "    "
    for (const reason of rest) {
      for (const l of reasonLines(reason)) {
        if (l.kind === "removed") lines.push(pad + paint("red", `- ${l.text}`))
        else if (l.kind === "added") lines.push(pad + paint("green", `+ ${l.text}`))
        else lines.push(pad + paint("dim", l.text))
      }
    }
  }
  const n = (s: PlanRecord["status"]) => records.filter((r) => r.status === s).length
  lines.push("", `${n("cached")} cached · ${n("stale")} stale · ${n("waiting")} waiting${n("stale") + n("waiting") === 0 ? " — nothing to run" : ""}`)
  const cut = options.width
  return (cut === undefined ? lines : lines.map((l) => cutVisible(l, cut))).join("\n") + "\n"
}

/** Cut a line with escape codes to `width` visible characters (codes do not count, and are kept). */
export const cutVisible = (line: string, width: number): string => {
  let visible = 0
  let out = ""
  for (const part of line.split(/(\x1b\[[0-9;]*m)/)) {
    if (part.startsWith("\x1b[")) {
      out += part
      continue
    }
    for (const ch of part) {
      if (visible >= width) return out + (line.includes("\x1b[") ? "\x1b[0m" : "")
      out += ch
      visible++
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// `plan --format dot|mermaid`: the DAG as a drawing, one node per step coloured by its status

export type GraphFormat = "dot" | "mermaid"
export const graphFormats: ReadonlyArray<GraphFormat> = ["dot", "mermaid"]

const fill: Record<PlanRecord["status"], { readonly fill: string; readonly stroke: string }> = {
  cached: { fill: "#dbeafe", stroke: "#1d4ed8" },
  stale: { fill: "#fef3c7", stroke: "#b45309" },
  waiting: { fill: "#e5e7eb", stroke: "#6b7280" }
}

/** The status as a node shows it: `stale (2 reasons)`, `waiting for dedup`. */
const statusLabel = (r: PlanRecord): string => {
  const { waitsFor, rest } = splitWaits(r.reasons)
  if (r.status === "waiting" && waitsFor !== undefined) return `waiting for ${waitsFor}`
  if (r.status === "stale" && rest.length > 0) return `stale (${rest.length} reason${rest.length > 1 ? "s" : ""})`
  return r.status
}

/** A DOT quoted string; DOT's own `\\n` escape breaks a label's lines. */
const dotString = (...lines: ReadonlyArray<string>) =>
  `"${lines.map((l) => l.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, " ")).join("\\n")}"`

const renderDot = (records: ReadonlyArray<PlanRecord>): string => {
  const lines = ["digraph plan {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
  for (const r of records) {
    const c = fill[r.status]
    const label = dotString(r.step, `${r.kind} · ${statusLabel(r)}`)
    lines.push(`  ${dotString(r.step)} [label=${label}, fillcolor="${c.fill}", color="${c.stroke}"];`)
  }
  for (const r of records) for (const n of r.needs) lines.push(`  ${dotString(n)} -> ${dotString(r.step)};`)
  lines.push("}")
  return lines.join("\n") + "\n"
}

/** Mermaid node text: quotes and markup characters as entity codes, so any step id is safe. */
const mermaidText = (s: string) => s.replace(/[#"<>&]/g, (ch) => `#${ch.charCodeAt(0)};`)

const renderMermaid = (records: ReadonlyArray<PlanRecord>): string => {
  const id = new Map(records.map((r, i) => [r.step, `s${i}`]))
  const lines = ["flowchart LR"]
  for (const r of records) {
    lines.push(`  ${id.get(r.step)}["${mermaidText(r.step)}<br/>${mermaidText(`${r.kind} · ${statusLabel(r)}`)}"]:::${r.status}`)
  }
  for (const r of records) for (const n of r.needs) if (id.has(n)) lines.push(`  ${id.get(n)} --> ${id.get(r.step)}`)
  for (const s of ["cached", "stale", "waiting"] as const) lines.push(`  classDef ${s} fill:${fill[s].fill},stroke:${fill[s].stroke}`)
  return lines.join("\n") + "\n"
}

/** The plan's DAG as Graphviz DOT or a Mermaid flowchart: edges from each step's inputs, status colours. */
export const renderPlanGraph = (records: ReadonlyArray<PlanRecord>, format: GraphFormat): string =>
  format === "dot" ? renderDot(records) : renderMermaid(records)

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

/** A person's view of `anneal show`. */
import type { ShowData } from "./show.ts"

export const renderShow = (d: ShowData): string => {
  const rows: Array<[string, string]> = [
    ["step", d.step],
    ["kind", d.kind],
    ["status", d.status],
    ["key", d.key ?? "-"],
    ["output", d.output ? `${d.output.hash}\n${" ".repeat(10)}${d.output.path}` : "-"],
    ["seconds", d.seconds === null ? "-" : d.seconds.toFixed(2)],
    ["log", d.log ?? "-"]
  ]
  if (d.error) rows.push(["error", d.error])
  if (d.summary) rows.push(["summary", d.summary])
  const lines = rows.map(([k, v]) => `${k.padEnd(9)} ${v}`)
  const table = (title: string, obj: Record<string, unknown>) => {
    const entries = Object.entries(obj)
    if (entries.length === 0) return
    const w = Math.max(...entries.map(([k]) => k.length))
    lines.push("", title)
    for (const [k, v] of entries) lines.push(`  ${k.padEnd(w)}  ${typeof v === "string" ? v : JSON.stringify(v)}`)
  }
  table("params", d.params)
  table("inputs", d.inputs)
  table("metrics", d.metrics)
  return lines.join("\n") + "\n"
}

/**
 * `anneal show` for people: a header with the step's status, key, output, time, log and report, then
 * its params as an aligned table (nested params as dotted paths; params left out of the key marked),
 * its inputs, and its metrics with units.
 */
import { formatDuration, formatMetric, padEnd } from "../ui/format.ts"
import { makePaint } from "./paint.ts"

/** What the show command passes (cli/show.ts `ShowData` has this shape). */
export interface ShowRecord {
  readonly step: string
  /** the recipe the cache knows the step by (its path from the project root) */
  readonly recipe?: string | undefined
  readonly kind: string
  readonly status: string
  readonly key: string | null
  readonly params: Record<string, unknown>
  readonly trace: { readonly version: number; readonly params: Record<string, unknown> } | null
  readonly inputs: Record<string, unknown>
  readonly output: { readonly hash: string; readonly path: string } | null
  readonly metrics: Record<string, unknown>
  readonly log: string | null
  readonly seconds: number | null
  readonly error?: string | null | undefined
  /** the run's Markdown report (cli/reporters/summary.ts), when that run wrote one */
  readonly summary?: string | null | undefined
}

/** Nested objects become dotted paths, so `lora.r` and `lora.alpha` line up as rows. */
export const flattenParams = (value: Record<string, unknown>, prefix = ""): Array<[string, unknown]> =>
  Object.entries(value).flatMap(([k, v]): Array<[string, unknown]> => {
    const name = prefix === "" ? k : `${prefix}.${k}`
    return v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0
      ? flattenParams(v as Record<string, unknown>, name)
      : [[name, v]]
  })

const valueText = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : v === undefined ? "(unset)" : JSON.stringify(v))

const table = (rows: ReadonlyArray<readonly [string, string, string?]>, indent = "  "): Array<string> => {
  const w = Math.max(...rows.map(([k]) => [...k].length))
  return rows.map(([k, v, note]) => `${indent}${padEnd(k, w)}  ${v}${note !== undefined ? `  ${note}` : ""}`.trimEnd())
}

export const renderShow = (d: ShowRecord, options: { readonly color?: boolean | undefined } = {}): string => {
  const paint = makePaint(options.color === true)
  const out: Array<string> = []
  const statusStyle = d.status === "built" ? "green" : d.status === "failed" ? "red" : d.status === "never run" ? "gray" : "yellow"
  out.push(`${paint("bold", d.step)}  ${paint("dim", d.kind)}  ${paint(statusStyle, d.status)}`)
  const head: Array<readonly [string, string]> = [["key", d.key ?? "—"]]
  if (d.recipe !== undefined) head.unshift(["recipe", d.recipe])
  if (d.output !== null) head.push(["output", d.output.hash], ["path", d.output.path])
  if (d.trace !== null) head.push(["version", String(d.trace.version)])
  if (d.seconds !== null) head.push(["time", formatDuration(d.seconds)])
  if (d.log !== null) head.push(["log", d.log])
  if (d.summary !== undefined && d.summary !== null) head.push(["report", d.summary])
  out.push(...table(head))

  const params = flattenParams(d.params)
  if (params.length > 0) {
    // params absent from the trace are execution-only: they do not change the key
    const inKey = d.trace !== null ? new Set(flattenParams(d.trace.params).map(([k]) => k)) : undefined
    out.push("", paint("bold", "params"))
    out.push(...table(params.map(([k, v]) => [k, valueText(v), inKey !== undefined && !inKey.has(k) ? paint("dim", "(not in key)") : undefined] as const)))
  }
  const inputs = Object.entries(d.inputs)
  if (inputs.length > 0) {
    out.push("", paint("bold", "inputs"))
    out.push(...table(inputs.map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : String(v)] as const)))
  }
  const metrics = Object.entries(d.metrics).filter(([, v]) => typeof v === "number" || typeof v === "string") as Array<[string, number | string]>
  if (metrics.length > 0) {
    out.push("", paint("bold", "metrics"))
    out.push(...table(metrics.sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, formatMetric(k, v)] as const)))
  }
  if (d.error !== undefined && d.error !== null) {
    out.push("", paint("bold", paint("red", "error")), ...d.error.split("\n").map((l) => "  " + paint("red", l)))
  }
  return out.join("\n") + "\n"
}

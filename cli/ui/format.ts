/**
 * Text helpers shared by the live view, the plain reporter, the summary and the plan/show renderings.
 * They return plain strings (no escape codes), so every output can be tested by comparing text; colour
 * is added by the Ink components only.
 */

/** "0.4s", "12s", "3m 05s", "2h 04m" — compact, and the same everywhere a duration is shown. */
export const formatDuration = (seconds: number): string => {
  if (!Number.isFinite(seconds) || seconds < 0) return "—"
  if (seconds < 10) return `${seconds.toFixed(1)}s`
  if (seconds < 60) return `${Math.round(seconds)}s`
  const s = Math.round(seconds)
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`
  const m = Math.round(s / 60)
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`
}

const byteUnits = ["B", "KB", "MB", "GB", "TB", "PB"]

/** Decimal units (as `du --si` and disk vendors count), one decimal above bytes. */
export const formatBytes = (bytes: number): string => {
  if (!Number.isFinite(bytes) || bytes < 0) return "—"
  let v = bytes
  let i = 0
  while (v >= 1000 && i < byteUnits.length - 1) {
    v /= 1000
    i++
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${byteUnits[i]}`
}

/** 1234 -> "1.2k", 3_400_000 -> "3.4M"; small numbers keep up to 3 significant digits. */
export const formatCount = (n: number): string => {
  const a = Math.abs(n)
  if (a >= 1e9) return `${(n / 1e9).toFixed(1)}G`
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`
  if (Number.isInteger(n)) return String(n)
  return String(Number(n.toPrecision(3)))
}

/** A metric value as people read it: losses with 4 significant digits, rates in scientific notation. */
export const formatNumber = (n: number): string => {
  if (!Number.isFinite(n)) return String(n)
  if (Number.isInteger(n)) return Math.abs(n) >= 1e4 ? formatCount(n) : String(n)
  const a = Math.abs(n)
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return n.toExponential(2)
  return String(Number(n.toPrecision(4)))
}

/** Throughput: tokens/s when the step reports it, else units/s ("rows/s", "steps/s"). */
export const formatThroughput = (p: {
  readonly rate?: number | undefined
  readonly tokensPerSecond?: number | undefined
  readonly unit?: string | undefined
}): string | undefined => {
  if (p.tokensPerSecond !== undefined) return `${formatCount(p.tokensPerSecond)} tok/s`
  if (p.rate === undefined) return undefined
  const unit = p.unit === "tokens" ? "tok" : (p.unit ?? "it")
  return `${formatCount(p.rate)} ${unit}/s`
}

/** `width` cells of a bar; partial cells use eighth blocks so slow progress still visibly moves. */
export const progressBar = (fraction: number, width: number): string => {
  if (width <= 0) return ""
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0))
  const eighths = Math.round(f * width * 8)
  const full = Math.floor(eighths / 8)
  const rest = eighths % 8
  const partial = rest > 0 ? "▏▎▍▌▋▊▉"[rest - 1]! : ""
  return ("█".repeat(full) + partial).padEnd(width, "░")
}

const sparkChars = "▁▂▃▄▅▆▇█"

/** The last `width` values as a sparkline; a flat series draws at the bottom. */
export const sparkline = (values: ReadonlyArray<number>, width: number): string => {
  const vs = values.filter(Number.isFinite).slice(-width)
  if (vs.length === 0) return ""
  const lo = Math.min(...vs)
  const hi = Math.max(...vs)
  const span = hi - lo
  return vs.map((v) => sparkChars[span === 0 ? 0 : Math.min(7, Math.floor(((v - lo) / span) * 8))]).join("")
}

/** Cut to `width` characters, marking the cut with an ellipsis. */
export const truncate = (s: string, width: number): string => {
  if (width <= 0) return ""
  const chars = [...s]
  if (chars.length <= width) return s
  if (width === 1) return "…"
  return chars.slice(0, width - 1).join("") + "…"
}

export const padEnd = (s: string, width: number): string => {
  const n = [...s].length
  return n >= width ? s : s + " ".repeat(width - n)
}

export const padStart = (s: string, width: number): string => {
  const n = [...s].length
  return n >= width ? s : " ".repeat(width - n) + s
}

/** Units people expect for well-known metric names; unknown names get none. */
export const metricUnit = (name: string): string => {
  const n = name.toLowerCase()
  if (/(^|_)(seconds|secs|time_s|duration)$/.test(n) || n.endsWith("_s")) return "s"
  if (n.includes("tokens_per_second") || n.includes("tokens_per_sec") || n === "tok_s") return "tok/s"
  if (n.includes("samples_per_second")) return "samples/s"
  if (n.includes("steps_per_second")) return "steps/s"
  if (n.endsWith("_bytes") || n === "bytes" || n === "size") return "bytes"
  if (n.endsWith("_gb") || n.endsWith("memory_gb")) return "GB"
  if (n.endsWith("_pct") || n.endsWith("_percent")) return "%"
  return ""
}

/** A metric's value with its unit: `2.31`, `1.2k tok/s`, `45s`, `1.3 GB`. */
export const formatMetric = (name: string, value: number | string): string => {
  if (typeof value === "string") return value
  const unit = metricUnit(name)
  switch (unit) {
    case "s":
      return formatDuration(value)
    case "bytes":
      return formatBytes(value)
    case "tok/s":
    case "samples/s":
    case "steps/s":
      return `${formatCount(value)} ${unit}`
    case "GB":
      return `${formatNumber(value)} GB`
    case "%":
      return `${formatNumber(value)}%`
    default:
      return formatNumber(value)
  }
}

/** A fixed-width text table: columns padded to their widest cell, numbers right-aligned. */
export const textTable = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  options: { readonly rightAlign?: ReadonlyArray<number>; readonly maxWidth?: number } = {}
): Array<string> => {
  const widths = header.map((h, i) => Math.max([...h].length, ...rows.map((r) => [...(r[i] ?? "")].length)))
  const right = new Set(options.rightAlign ?? [])
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => (right.has(i) ? padStart(c, widths[i]!) : padEnd(c, widths[i]!)))
      .join("  ")
      .trimEnd()
  const out = [line(header), ...rows.map(line)]
  return options.maxWidth === undefined ? out : out.map((l) => truncate(l, options.maxWidth!))
}

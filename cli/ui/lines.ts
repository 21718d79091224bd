/**
 * One step as text: the pieces of a row the live view colours and the plain reporter prints as is.
 * Every function here is pure and width-aware, so the layout is tested without a terminal.
 */
import type { RunState, StepView, UiStatus } from "./state.ts"
import { fractionDone, keyMetrics, latestLoss, totals } from "./state.ts"
import {
  formatBytes,
  formatCount,
  formatDuration,
  formatMetric,
  formatNumber,
  formatThroughput,
  progressBar,
  sparkline,
  truncate
} from "./format.ts"

export const glyphs: Readonly<Record<UiStatus, string>> = {
  cached: "≡",
  waiting: "◷",
  queued: "○",
  running: "▶",
  done: "✔",
  failed: "✖",
  interrupted: "⊘",
  skipped: "–"
}

/** Colour names Ink understands; the view drops them when colour is off (NO_COLOR). */
export const statusColors: Readonly<Record<UiStatus, string | undefined>> = {
  cached: "blue",
  waiting: "yellow",
  queued: undefined,
  running: "cyan",
  done: "green",
  failed: "red",
  interrupted: "yellow",
  skipped: "gray"
}

export const indentOf = (s: StepView): string => "  ".repeat(Math.min(s.depth, 8))

const metricsText = (s: StepView): string =>
  keyMetrics(s).map(([k, v]) => `${k} ${formatMetric(k, v)}`).join("  ")

/**
 * More cached steps than this at once (one frame of the live view, the end-of-run table) show as one
 * line that counts them: a rerun of a big recipe settles thousands together, and a line each scrolled
 * the terminal for seconds to say what the count says (`anneal plan` lists them one by one).
 */
export const foldCachedAbove = 50

/** A step that would be one of many identical "cached" lines: no restore, no metrics, no error. */
export const plainCached = (s: StepView): boolean => {
  if (s.status !== "cached" || s.restored === true || s.error !== undefined || s.losses.length > 0) return false
  for (const _ in s.metrics) return false // what keyMetrics would show, without sorting them
  return true
}

/**
 * `steps` in order, with the plain cached ones folded into one `{ folded }` entry where the first of
 * them stood, when there are more than `foldCachedAbove` of them.
 */
export const foldCached = (steps: ReadonlyArray<StepView>): Array<StepView | { readonly folded: ReadonlyArray<StepView> }> => {
  const folded: Array<StepView> = []
  const out: Array<StepView | { readonly folded: ReadonlyArray<StepView> }> = []
  for (const s of steps) {
    if (!plainCached(s)) out.push(s)
    else if (folded.push(s) === 1) out.push({ folded })
  }
  return folded.length > foldCachedAbove ? out : [...steps]
}

/** The line for folded cached steps: their count, then as many of their ids as fit. */
export const foldedLine = (steps: ReadonlyArray<StepView>, width: number): string => {
  let line = `${glyphs.cached} ${steps.length.toLocaleString("en-US")} steps cached: ${steps[0]?.id ?? ""}`
  for (let i = 1; i < steps.length && line.length <= width; i++) line += `, ${steps[i]!.id}`
  return truncate(line, width)
}

/** A settled step in one line: glyph, id, kind, status, time and key metrics. */
export const settledLine = (s: StepView, width: number): string => {
  const parts = [`${indentOf(s)}${glyphs[s.status]} ${s.id}`, s.kind !== s.id ? s.kind : "", s.status]
  if (s.status === "done" || s.status === "failed" || s.status === "interrupted") {
    if (s.seconds !== undefined) parts.push(formatDuration(s.seconds))
  }
  if (s.status === "cached" && s.restored) parts.push("restored")
  if (s.status === "skipped" && s.note !== undefined) parts.push(`(${s.note})`)
  const m = metricsText(s)
  if (m !== "" && s.status !== "skipped") parts.push(m)
  return truncate(parts.filter((p) => p !== "").join("  "), width)
}

/** The error under a failed step, at most `max` lines, each cut to the width. */
export const errorLines = (s: StepView, width: number, max = 4): Array<string> => {
  if (s.error === undefined) return []
  const pad = indentOf(s) + "  "
  const lines = s.error.split("\n").filter((l) => l.trim() !== "")
  const shown = lines.slice(0, max).map((l) => truncate(pad + l, width))
  if (lines.length > max) shown.push(truncate(`${pad}… ${lines.length - max} more lines (l shows the log)`, width))
  return shown
}

/**
 * A step that has not started: why it will run, or what it waits for (`waitingFor`: the needs that have
 * not finished yet; all of them when not given).
 */
export const pendingLine = (s: StepView, width: number, waitingFor: ReadonlyArray<string> = s.needs): string => {
  const why = s.status === "waiting"
    ? s.note !== undefined ? `waiting: ${s.note}` : waitingFor.length > 0 ? `waiting for ${waitingFor.join(", ")}` : "waiting"
    : s.reasons[0] !== undefined ? `queued: ${s.reasons[0]}` : "queued"
  const head = `${indentOf(s)}${glyphs[s.status]} ${s.id}${s.kind !== s.id ? `  ${s.kind}` : ""}`
  return truncate(`${head}  ${why}`, width)
}

/** The first line of a running step: id, kind, GPUs, elapsed time. */
export const runningHead = (s: StepView, now: number, width: number): string => {
  const elapsed = s.startedAt === undefined ? undefined : (now - s.startedAt) / 1000
  const parts = [
    `${indentOf(s)}${glyphs.running} ${s.id}`,
    s.kind !== s.id ? s.kind : "",
    s.gpus.length > 0 ? `gpu ${s.gpus.join(",")}` : "cpu",
    elapsed !== undefined ? formatDuration(elapsed) : ""
  ]
  return truncate(parts.filter((p) => p !== "").join("  "), width)
}

/**
 * The second line: bar, percent, count, ETA, throughput, loss and its sparkline. When the terminal is
 * narrow, pieces drop in order of least use (count, throughput, sparkline, loss, ETA) until a bar of at
 * least 8 cells fits; the bar takes what is left, up to 20 cells.
 */
export const progressLine = (s: StepView, width: number): string | undefined => {
  const p = s.progress
  const loss = latestLoss(s)
  if (p === undefined && loss === undefined && s.phase === undefined) return undefined
  const pad = indentOf(s) + "  "
  const f = fractionDone(p)
  const spark = sparkline(s.losses.map((l) => l.loss), 16)
  // [text, drop priority: lower goes first]
  const pieces: Array<[string, number]> = [
    [s.phase ?? "", 5],
    [f !== undefined ? `${String(Math.floor(f * 100)).padStart(3)}%` : "", 9],
    [p === undefined
      ? ""
      : `${formatCount(p.current)}${p.total !== undefined ? `/${formatCount(p.total)}` : ""}${p.unit !== undefined ? ` ${p.unit}` : ""}`, 0],
    [p?.eta !== undefined && f !== undefined && f < 1 ? `ETA ${formatDuration(p.eta)}` : "", 4],
    [p !== undefined ? formatThroughput(p) ?? "" : "", 1],
    [loss !== undefined ? `loss ${formatNumber(loss)}` : "", 3],
    [spark.length > 1 ? spark : "", 2]
  ]
  let kept = pieces.filter(([t]) => t !== "")
  const text = () => kept.map(([t]) => t).join("  ")
  const room = () => width - pad.length - [...text()].length - 1
  while (f !== undefined && kept.length > 1 && room() < 8) {
    const lowest = Math.min(...kept.map(([, pr]) => pr))
    kept = kept.filter(([, pr]) => pr !== lowest)
  }
  if (f === undefined) return truncate(pad + text(), width)
  // one width for every row, so the bars of concurrent steps line up
  const w = Math.min(20, room())
  return truncate(`${pad}${w >= 4 ? progressBar(f, w) + " " : ""}${text()}`, width)
}

/** The footer's totals: counts, then cache savings, store size and time; two lines when narrow. */
export const totalsLines = (state: RunState, now: number, width: number): Array<string> => {
  const t = totals(state, now)
  const counts = [
    `ran ${t.ran}`,
    `cached ${t.cached}`,
    `failed ${t.failed}`,
    t.interrupted > 0 ? `interrupted ${t.interrupted}` : "",
    t.skipped > 0 ? `skipped ${t.skipped}` : "",
    t.running > 0 ? `running ${t.running}` : "",
    state.run === undefined && t.pending > 0 ? `pending ${t.pending}` : ""
  ].filter((x) => x !== "").join(" · ")
  const extra = [
    // the engine totals the savings at the end; before that only cached steps that report it count
    state.run !== undefined || t.saved > 0 ? `cache saved ${formatDuration(t.saved)}` : "",
    t.storeBytes !== undefined ? `store ${formatBytes(t.storeBytes)}` : "",
    `${state.run === undefined ? "elapsed" : "took"} ${formatDuration(t.seconds)}`
  ].filter((x) => x !== "").join(" │ ")
  const one = `${counts} │ ${extra}`
  return [...one].length <= width ? [one] : [truncate(counts, width), truncate(extra, width)]
}

/**
 * The end-of-run report: a Markdown file with the table of steps (status, time, key metrics), each
 * trained step's loss curve as an SVG beside it, its metrics with units, and the errors of failed steps.
 * It is written into the run's directory (next to the step logs, `RunEvent.runDir`) when the run trained
 * or evaluated something, i.e. when a step that ran reported a loss or metrics; `anneal show` names it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { EngineEvent, Reporter } from "../../engine/events.ts"
import type { LossPoint, RunState, StepView } from "../ui/state.ts"
import { initialState, keyMetrics, makeFold, totals } from "../ui/state.ts"
import { formatBytes, formatDuration, formatMetric, formatNumber } from "../ui/format.ts"

export const summaryFileName = "summary.md"

/** Where the report of the run that wrote `logPath` would be (logs and report share the run dir). */
export const summaryPathForLog = (logPath: string): string | undefined => {
  const p = path.join(path.dirname(logPath), summaryFileName)
  return fs.existsSync(p) ? p : undefined
}

const escapeXml = (s: string) => s.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!)

/** A self-contained SVG line chart of loss against the step's progress axis, with min/max labels. */
export const lossCurveSvg = (points: ReadonlyArray<LossPoint>, title: string, width = 560, height = 220): string => {
  const m = { left: 56, right: 16, top: 28, bottom: 32 }
  const w = width - m.left - m.right
  const h = height - m.top - m.bottom
  const xs = points.map((p) => p.x)
  const ys = points.map((p) => p.loss).filter(Number.isFinite)
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)]
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)]
  const sx = (x: number) => m.left + (x1 === x0 ? w / 2 : ((x - x0) / (x1 - x0)) * w)
  const sy = (y: number) => m.top + (y1 === y0 ? h / 2 : (1 - (y - y0) / (y1 - y0)) * h)
  const line = points
    .filter((p) => Number.isFinite(p.loss))
    .map((p) => `${sx(p.x).toFixed(1)},${sy(p.loss).toFixed(1)}`)
    .join(" ")
  const text = (x: number, y: number, s: string, anchor = "start") =>
    `<text x="${x}" y="${y}" text-anchor="${anchor}">${escapeXml(s)}</text>`
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<g fill="#333">${text(m.left, 18, title)}`,
    text(m.left - 6, m.top + 4, formatNumber(y1), "end"),
    text(m.left - 6, m.top + h, formatNumber(y0), "end"),
    text(m.left, height - 10, formatNumber(x0)),
    text(m.left + w, height - 10, formatNumber(x1), "end"),
    `</g>`,
    `<path d="M${m.left},${m.top} V${m.top + h} H${m.left + w}" fill="none" stroke="#999"/>`,
    `<polyline points="${line}" fill="none" stroke="#1f6feb" stroke-width="1.5"/>`,
    `</svg>`,
    ""
  ].join("\n")
}

/** Report files are named after step ids, which may hold `/` and `:`. */
const fileSafe = (id: string) => id.replace(/[^A-Za-z0-9._-]+/g, "_")

const trainedOrEvaluated = (s: StepView) =>
  s.status === "done" && (s.losses.length > 0 || Object.keys(s.metrics).length > 0)

export const shouldWriteSummary = (state: RunState): boolean =>
  state.order.some((id) => trainedOrEvaluated(state.steps[id]!))

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ")

/** The report's Markdown; `curves` maps step ids to the SVG file names it links. */
export const summaryMarkdown = (state: RunState, curves: ReadonlyMap<string, string>, now: number): string => {
  const t = totals(state, now)
  const steps = state.order.map((id) => state.steps[id]!)
  const out: Array<string> = []
  out.push("# anneal run summary", "")
  out.push(
    [
      `took ${formatDuration(t.seconds)}`,
      `ran ${t.ran}, cached ${t.cached}, failed ${t.failed}${t.interrupted > 0 ? `, interrupted ${t.interrupted}` : ""}${t.skipped > 0 ? `, skipped ${t.skipped}` : ""}`,
      `the cache saved ${formatDuration(t.saved)}`,
      t.storeBytes !== undefined ? `store ${formatBytes(t.storeBytes)}` : ""
    ].filter((x) => x !== "").join(" · "),
    ""
  )
  out.push("| step | kind | status | time | metrics |", "|---|---|---|--:|---|")
  for (const s of steps) {
    const metrics = keyMetrics(s).map(([k, v]) => `${k} ${formatMetric(k, v)}`).join(", ")
    const time = s.seconds !== undefined && s.status !== "skipped" && s.status !== "cached" ? formatDuration(s.seconds) : ""
    out.push(`| ${cell(s.id)} | ${cell(s.kind)} | ${s.status === "done" ? "ran" : s.status} | ${time} | ${cell(metrics)} |`)
  }
  for (const s of steps.filter(trainedOrEvaluated)) {
    out.push("", `## ${s.id} (${s.kind})`, "")
    const curve = curves.get(s.id)
    if (curve !== undefined) {
      const first = s.losses[0]!
      const last = s.losses[s.losses.length - 1]!
      out.push(`![loss of ${s.id}](${curve})`, "")
      out.push(`loss ${formatNumber(first.loss)} → ${formatNumber(last.loss)} over ${formatNumber(last.x - first.x)} ${s.progress?.unit ?? "steps"}`, "")
    }
    const metrics = Object.entries(s.metrics).sort(([a], [b]) => a.localeCompare(b))
    if (metrics.length > 0) {
      out.push("| metric | value |", "|---|--:|")
      for (const [k, v] of metrics) out.push(`| ${cell(k)} | ${cell(formatMetric(k, v))} |`)
    }
  }
  const failed = steps.filter((s) => s.status === "failed" && s.error !== undefined)
  if (failed.length > 0) {
    out.push("", "## Errors")
    for (const s of failed) out.push("", `### ${s.id}`, "", "```", s.error!, "```")
  }
  return out.join("\n") + "\n"
}

/**
 * Writes `summary.md` (and one `loss-<step>.svg` per trained step) into `runDir` when the run trained
 * or evaluated; returns the report's path, or undefined when there was nothing to report.
 */
export const writeRunSummary = (state: RunState, runDir: string, now = Date.now()): string | undefined => {
  if (!shouldWriteSummary(state)) return undefined
  fs.mkdirSync(runDir, { recursive: true })
  const curves = new Map<string, string>()
  for (const id of state.order) {
    const s = state.steps[id]!
    if (!trainedOrEvaluated(s) || s.losses.length < 2) continue
    const name = `loss-${fileSafe(id)}.svg`
    fs.writeFileSync(path.join(runDir, name), lossCurveSvg(s.losses, `${id}: loss`))
    curves.set(id, name)
  }
  const file = path.join(runDir, summaryFileName)
  // write-then-rename: a reader never sees half a report
  fs.writeFileSync(file + ".tmp", summaryMarkdown(state, curves, now))
  fs.renameSync(file + ".tmp", file)
  return file
}

export interface SummaryReporter extends Reporter {
  /** the report written at the end of the run, if any */
  readonly path: () => string | undefined
}

/**
 * A reporter that keeps the view state and writes the report when the `run` event names a run
 * directory. Use it beside the live or plain reporter (`fanOut`); it never prints.
 */
export const makeSummaryReporter = (options: { readonly now?: () => number; readonly onError?: (e: unknown) => void } = {}): SummaryReporter => {
  const now = options.now ?? Date.now
  const fold = makeFold(initialState(now()))
  let written: string | undefined
  return {
    path: () => written,
    emit: (event: EngineEvent) => {
      try {
        fold.apply(event, now())
        if (event.event === "run" && event.runDir !== undefined) written = writeRunSummary(fold.state(), event.runDir, now())
      } catch (e) {
        options.onError?.(e)
      }
    }
  }
}

/**
 * The reporter for CI, pipes and log files: one plain line per state change (planned, started, cached,
 * done, failed, interrupted, skipped, waiting on a lock), progress at most every 10% or 30 s per step,
 * and a summary table at the end. No escape codes, ever: the lines are meant to be grepped.
 */
import type { EngineEvent, Reporter } from "../../engine/events.ts"
import { initialState, makeFold } from "../ui/state.ts"
import type { RunState, StepView } from "../ui/state.ts"
import { fractionDone, isPhaseOnly, keyMetrics, latestLoss } from "../ui/state.ts"
import { formatCount, formatDuration, formatMetric, formatNumber, formatThroughput, padEnd } from "../ui/format.ts"
import { summaryTable } from "../ui/summary-table.ts"
import { lineBatches } from "./batches.ts"
import { totalsLines } from "../ui/lines.ts"

export interface PlainReporterOptions {
  readonly now?: (() => number) | undefined
  /** print progress when a step crosses another multiple of this percentage (default 10) */
  readonly progressPercent?: number | undefined
  /** ... or when this many seconds passed since its last progress line (default 30) */
  readonly progressSeconds?: number | undefined
  /** print the final summary table on the `run` event (default true) */
  readonly summary?: boolean | undefined
}

export interface PlainReporter extends Reporter {
  readonly state: () => RunState
}

/** `mm:ss` (or `h:mm:ss`) since the reporter started: log lines sort and compare at a glance. */
const clock = (ms: number): string => {
  const s = Math.max(0, Math.floor(ms / 1000))
  const hms = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60]
  const [h, m, sec] = hms.map((n) => String(n).padStart(2, "0"))
  return hms[0]! > 0 ? `${h}:${m}:${sec}` : `${m}:${sec}`
}

const metricsOf = (s: StepView) => keyMetrics(s).map(([k, v]) => `${k} ${formatMetric(k, v)}`).join("  ")

export const progressText = (s: StepView): string => {
  const p = s.progress
  const f = fractionDone(p)
  const loss = latestLoss(s)
  return [
    f !== undefined ? `${Math.floor(f * 100)}%` : "",
    p !== undefined
      ? `${formatCount(p.current)}${p.total !== undefined ? `/${formatCount(p.total)}` : ""}${p.unit !== undefined ? ` ${p.unit}` : ""}`
      : "",
    p?.eta !== undefined && f !== undefined && f < 1 ? `ETA ${formatDuration(p.eta)}` : "",
    p !== undefined ? formatThroughput(p) ?? "" : "",
    loss !== undefined ? `loss ${formatNumber(loss)}` : ""
  ].filter((x) => x !== "").join("  ")
}

export const makePlainReporter = (stream: NodeJS.WritableStream, options: PlainReporterOptions = {}): PlainReporter => {
  const now = options.now ?? Date.now
  const everyPercent = options.progressPercent ?? 10
  const everyMs = (options.progressSeconds ?? 30) * 1000
  const initial = initialState(now())
  const fold = makeFold(initial)
  const startedAt = initial.startedAt
  // per step: the last progress bucket printed and when
  const lastProgress = new Map<string, { bucket: number; at: number }>()

  // The bulk of a big run's lines (its plan, its cached steps: 20,000 for 10,000 steps) is written in
  // batches; any other line flushes them and goes out at once, so what a step is doing now is never
  // held back behind a synchronous stretch.
  const batches = lineBatches((text) => stream.write(text))
  const flush = batches.flush
  const write = (line: string) => {
    flush()
    stream.write(line + "\n")
  }
  const line = (what: string, rest: string) => `${clock(now() - startedAt)} ${padEnd(what, 11)} ${rest}`.trimEnd()
  const say = (what: string, rest: string) => write(line(what, rest))
  const sayLater = (what: string, rest: string) => batches.add(line(what, rest) + "\n")

  const onEvent = (event: EngineEvent) => {
    const s = "step" in event && typeof event.step === "string" ? fold.step(event.step) : undefined
    switch (event.event) {
      case "planned":
        // cached steps are reported when the engine confirms them; the rest say why they will run
        if (event.status === "stale") sayLater("queued", `${event.step}${event.reasons.length > 0 ? `  ${event.reasons.join("; ")}` : ""}`)
        else if (event.status === "waiting") sayLater("waiting", `${event.step}${event.needs.length > 0 ? `  for ${event.needs.join(", ")}` : ""}`)
        return
      case "started":
        lastProgress.set(event.step, { bucket: 0, at: now() })
        say("started", `${event.step}  ${event.kind}  ${event.gpus.length > 0 ? `gpu ${event.gpus.join(",")}` : "cpu"}  log ${event.log}`)
        return
      case "progress": {
        if (s === undefined) return
        if (isPhaseOnly(event)) {
          say("phase", `${event.step}  ${event.phase}`)
          return
        }
        const f = fractionDone(s.progress)
        const last = lastProgress.get(event.step) ?? { bucket: 0, at: s.startedAt ?? now() }
        const bucket = f === undefined ? last.bucket : Math.floor((f * 100) / everyPercent)
        if (bucket > last.bucket || now() - last.at >= everyMs) {
          lastProgress.set(event.step, { bucket, at: now() })
          say("progress", `${event.step}  ${progressText(s)}`)
        }
        return
      }
      case "waiting":
        say("waiting", `${event.step}  ${event.reason}`)
        return
      case "log":
        if (event.level === "warn" || event.level === "error" || (event.step === null && event.level === "info")) {
          say(event.level, `${event.step !== null ? event.step + ": " : ""}${event.message}`)
        }
        return
      case "step": {
        if (s === undefined) return
        // a planned-cached step is already "cached"; print it once, when the engine confirms it
        const word = event.status === "ran" ? "done" : event.status
        const time = event.status !== "cached" ? formatDuration(event.seconds) : event.seconds > 0 ? `saved ${formatDuration(event.seconds)}` : ""
        const text = [event.step, time, event.restored === true ? "restored" : "", metricsOf(s)].filter((x) => x !== "").join("  ")
        if (event.status === "cached") sayLater(word, text)
        else say(word, text)
        if (event.error !== undefined) for (const l of event.error.split("\n").filter((x) => x.trim() !== "")) write(`      ${l}`)
        return
      }
      case "skipped":
        say("skipped", `${event.step}  ${event.because}`)
        return
      case "run":
        flush()
        if (options.summary === false) return
        write("")
        const state = fold.state()
        for (const l of summaryTable(state)) write(l)
        write("")
        for (const l of totalsLines(state, now(), 1000)) write(l)
        if (event.runDir !== undefined) write(`logs: ${event.runDir}`)
        return
      case "metric":
        return
    }
  }

  return {
    state: fold.state,
    close: flush,
    emit: (event) => {
      try {
        fold.apply(event, now())
        onEvent(event)
      } catch {
        // never throw into the engine
      }
    }
  }
}

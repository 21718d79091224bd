/**
 * The reporter a person gets from `anneal run` and `anneal watch` without `--json`: the live Ink view
 * when stdout is a terminal that can redraw, plain lines otherwise (CI, pipes, log files, TERM=dumb),
 * and in both cases the Markdown summary written into the run directory at the end. Ink and React
 * (~500 modules with their dependencies) load only for the live view: a run into a pipe, a log file or
 * CI never loads them.
 */
import type { Reporter } from "../../engine/events.ts"
import { fanOut } from "../../engine/events.ts"
import { makePlainReporter } from "../reporters/plain.ts"
import { makeSummaryReporter } from "../reporters/summary.ts"

export interface TerminalReporterOptions {
  /** `q` / Ctrl-C in the live view; wire it to the run's AbortController */
  readonly onInterrupt: () => void
  readonly stdout?: NodeJS.WriteStream | undefined
  readonly stdin?: NodeJS.ReadStream | undefined
  readonly env?: NodeJS.ProcessEnv | undefined
  /** force plain lines even on a terminal */
  readonly plain?: boolean | undefined
}

const liveView = async (onInterrupt: () => void, stdout: NodeJS.WriteStream, stdin: NodeJS.ReadStream, env: NodeJS.ProcessEnv): Promise<Reporter> => {
  const { colorEnabled, makeInkReporter } = await import("./ink-reporter.tsx")
  return makeInkReporter({ stdout, stdin, interactive: true, onInterrupt, color: colorEnabled(env) })
}

/** A terminal the live view can redraw in place; CI logs and dumb terminals get plain lines. */
export const canRedraw = (stdout: NodeJS.WriteStream, env: NodeJS.ProcessEnv): boolean =>
  stdout.isTTY === true && env["TERM"] !== "dumb" && (env["CI"] === undefined || env["CI"] === "" || env["CI"] === "false")

export interface TerminalReporter extends Reporter {
  readonly live: boolean
  /** the Markdown report written at the end of the run, if the run trained or evaluated */
  readonly summaryPath: () => string | undefined
}

export const makeTerminalReporter = async (options: TerminalReporterOptions): Promise<TerminalReporter> => {
  const stdout = options.stdout ?? process.stdout
  const stdin = options.stdin ?? process.stdin
  const env = options.env ?? process.env
  const live = options.plain !== true && canRedraw(stdout, env)
  const summary = makeSummaryReporter()
  const view = live ? await liveView(options.onInterrupt, stdout, stdin, env) : makePlainReporter(stdout)
  const both = fanOut([summary, view])
  return {
    live,
    summaryPath: summary.path,
    emit: both.emit,
    close: async () => {
      await both.close?.()
      const p = summary.path()
      if (p !== undefined) stdout.write(`report: ${p}\n`)
    }
  }
}

/**
 * The reporter a person sees: the live Ink view on a TTY, plain lines otherwise (CI, pipes, log files).
 */
import type { EngineEvent, Reporter } from "../../engine/events.ts"

export interface PickOptions {
  readonly onInterrupt: () => void
}

export const pickReporter = async (_options: PickOptions): Promise<Reporter> => ({
  emit: (e: EngineEvent) => {
    if (e.event === "step") {
      process.stderr.write(`${e.status.padEnd(11)} ${e.step}${e.output ? "  " + e.output.slice(0, 12) : ""}${e.error ? "  " + e.error : ""}\n`)
    } else if (e.event === "run") {
      process.stderr.write(`ran ${e.ran}, cached ${e.cached}, failed ${e.failed} in ${e.seconds.toFixed(2)} s\n`)
    } else if (e.event === "log" && (e.level === "warn" || e.level === "error")) {
      process.stderr.write(`${e.level}: ${e.step ?? ""} ${e.message}\n`)
    }
  }
})

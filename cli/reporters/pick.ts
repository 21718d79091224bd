/**
 * The reporter a person sees: the live Ink view on a TTY, plain lines otherwise (CI, pipes, log files),
 * plus the Markdown run summary (cli/ui/terminal-reporter.ts). Loaded lazily so `--json` runs never
 * load Ink and React.
 */
import type { Reporter } from "../../engine/events.ts"

export interface PickOptions {
  readonly onInterrupt: () => void
}

export const pickReporter = async (options: PickOptions): Promise<Reporter> => {
  const { makeTerminalReporter } = await import("../ui/terminal-reporter.ts")
  return makeTerminalReporter({ onInterrupt: options.onInterrupt })
}

/**
 * `--json`: one event per line on stdout, the stable machine interface (README, "JSON events").
 * Progress is throttled per step (at most one line every 200 ms) so a fast worker cannot flood a pipe;
 * every other event is printed as it happens.
 */
import type { EngineEvent, Reporter } from "../../engine/events.ts"
import { lineBatches } from "./batches.ts"

export const makeJsonReporter = (write: (text: string) => void = (t) => process.stdout.write(t)): Reporter => {
  const lastProgress = new Map<string, number>()
  const lines = lineBatches(write)
  return {
    close: lines.flush,
    emit: (event: EngineEvent) => {
      if (event.event === "progress") {
        const now = Date.now()
        const last = lastProgress.get(event.step) ?? 0
        const final = event.total !== undefined && event.current >= event.total
        if (now - last < 200 && !final) return
        lastProgress.set(event.step, now)
      }
      lines.add(JSON.stringify(event) + "\n")
      if (event.event === "run") lines.flush()
    }
  }
}

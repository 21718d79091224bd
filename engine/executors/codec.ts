/**
 * The worker protocol's one decoder: a JSON line a step prints on stdout (progress, metric, log; the
 * schema is engine/protocol.ts's WorkerEvent) becomes an engine event. The local executor reads it from
 * a child's stdout, the cluster executor from a job's output file; both go through here.
 */
import type { EngineEvent } from "../events.ts"

/** Turns one protocol line from a worker into an event (and remembers metrics). */
export const protocolEvent = (
  step: string,
  line: string,
  metrics: Record<string, number | string>
): EngineEvent | undefined => {
  if (!line.startsWith("{")) return undefined
  let msg: Record<string, unknown>
  try {
    msg = JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
  const num = (k: string) => (typeof msg[k] === "number" ? (msg[k] as number) : undefined)
  switch (msg.type) {
    case "progress":
      return {
        event: "progress",
        step,
        current: num("current") ?? 0,
        total: num("total"),
        unit: typeof msg.unit === "string" ? msg.unit : undefined,
        loss: num("loss"),
        lr: num("lr"),
        rate: num("rate"),
        tokensPerSecond: num("tokens_per_second") ?? num("tokensPerSecond"),
        eta: num("eta"),
        phase: typeof msg.phase === "string" ? msg.phase : undefined
      }
    case "metric": {
      const value = msg.value
      if (typeof msg.name !== "string" || (typeof value !== "number" && typeof value !== "string")) return undefined
      metrics[msg.name] = value
      return { event: "metric", step, name: msg.name, value }
    }
    case "log": {
      const level = ["debug", "info", "warn", "error"].includes(String(msg.level)) ? (msg.level as "info") : "info"
      return { event: "log", step, level, message: String(msg.message ?? "") }
    }
    default:
      return undefined
  }
}

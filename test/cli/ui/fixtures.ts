/** Event streams shared by the UI and reporter tests: a small recipe at interesting moments. */
import type { EngineEvent } from "../../../engine/events.ts"

export const planned: ReadonlyArray<EngineEvent> = [
  { event: "planned", step: "clean", kind: "clean", status: "cached", reasons: [], needs: [] },
  { event: "planned", step: "dedup", kind: "dedup", status: "stale", reasons: ["params.threshold: 0.8 -> 0.9"], needs: ["clean"] },
  { event: "planned", step: "sft", kind: "sft", status: "waiting", reasons: [], needs: ["dedup"] },
  { event: "planned", step: "eval", kind: "eval", status: "waiting", reasons: [], needs: ["sft", "clean"] }
]

export const cleanCached: EngineEvent = { event: "step", step: "clean", kind: "clean", status: "cached", key: "k1", output: "h1", seconds: 75 }

export const sftStarted: EngineEvent = { event: "started", step: "sft", kind: "sft", key: "k3", gpus: [0, 1], log: "/runs/7/sft.log" }

export const dedupRan: ReadonlyArray<EngineEvent> = [
  { event: "started", step: "dedup", kind: "dedup", key: "k2", gpus: [], log: "/runs/7/dedup.log" },
  { event: "step", step: "dedup", kind: "dedup", status: "ran", key: "k2", output: "h2", seconds: 12 }
]

/** sft progress at step `current` of 1000 with a falling loss */
export const sftProgress = (current: number): EngineEvent => ({
  event: "progress",
  step: "sft",
  current,
  total: 1000,
  unit: "steps",
  loss: 3 - current / 1000,
  tokensPerSecond: 12_345,
  eta: 600 * (1 - current / 1000)
})

export const sftFailed: EngineEvent = {
  event: "step",
  step: "sft",
  kind: "sft",
  status: "failed",
  key: "k3",
  output: null,
  seconds: 42,
  error: "CUDA out of memory: tried to allocate 2.00 GiB\nlower micro_batch_size or enable gradient checkpointing"
}

export const evalSkipped: EngineEvent = { event: "skipped", step: "eval", kind: "eval", because: "sft failed" }

export const sftInterrupted: EngineEvent = { event: "step", step: "sft", kind: "sft", status: "interrupted", key: "k3", output: null, seconds: 30 }

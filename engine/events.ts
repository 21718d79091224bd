/**
 * What a run reports. One stream of these feeds the Ink UI, the plain reporter and `--json`
 * (one object per line, the stable machine interface documented in the README).
 */

export type StepStatus = "ran" | "cached" | "failed" | "interrupted"
export type PlanStatus = "cached" | "stale" | "waiting"

export interface PlannedEvent {
  readonly event: "planned"
  readonly step: string
  readonly kind: string
  readonly status: PlanStatus
  readonly reasons: ReadonlyArray<string>
  readonly needs: ReadonlyArray<string>
}

export interface StartedEvent {
  readonly event: "started"
  readonly step: string
  readonly kind: string
  readonly key: string
  readonly gpus: ReadonlyArray<number>
  readonly log: string
}

/** Progress of a running step. `current`/`total` count `unit`s (optimizer steps, rows, tensors). */
export interface ProgressEvent {
  readonly event: "progress"
  readonly step: string
  readonly current: number
  readonly total?: number | undefined
  readonly unit?: string | undefined
  readonly loss?: number | undefined
  readonly lr?: number | undefined
  /** units per second, or tokens per second when `unit` is "tokens" or tokensPerSecond is set */
  readonly rate?: number | undefined
  readonly tokensPerSecond?: number | undefined
  readonly eta?: number | undefined
  /**
   * what the step is doing ("loading torch", "loading model", "tokenizing", "training", "saving",
   * "evaluating" for Python steps) until the next phase; an event that only announces a phase has
   * current 0 and no total or unit
   */
  readonly phase?: string | undefined
}

export interface MetricEvent {
  readonly event: "metric"
  readonly step: string
  readonly name: string
  readonly value: number | string
}

export interface LogEvent {
  readonly event: "log"
  readonly step: string | null
  readonly level: "debug" | "info" | "warn" | "error"
  readonly message: string
}

/**
 * A step settled. `output` is the artifact hash, null when it failed or was interrupted. Every failure,
 * whatever threw (the step, the store, the database, preparing the step), is `failed` with its message
 * in `error` (the full cause goes to the step's log); `interrupted` means the run was interrupted, never
 * that something threw. `key` is empty when the step failed before its key was known.
 */
export interface StepEvent {
  readonly event: "step"
  readonly step: string
  readonly kind: string
  readonly status: StepStatus
  readonly key: string
  readonly output: string | null
  readonly seconds: number
  readonly error?: string | undefined
  /** true when the step was restored from another process's or an earlier key's result */
  readonly restored?: boolean | undefined
}

/** A step is blocked on a lock held by another anneal process. */
export interface WaitingEvent {
  readonly event: "waiting"
  readonly step: string
  readonly reason: string
}

/** Steps that will not run because something they need failed. */
export interface SkippedEvent {
  readonly event: "skipped"
  readonly step: string
  readonly kind: string
  readonly because: string
}

export interface RunEvent {
  readonly event: "run"
  readonly ran: number
  readonly cached: number
  readonly failed: number
  readonly interrupted: number
  readonly skipped: number
  readonly seconds: number
  /** seconds the cached steps took when they last ran */
  readonly saved: number
  /** bytes held by the store's artifacts after the run */
  readonly storeBytes?: number | undefined
  /** directory with this run's logs and summary report */
  readonly runDir?: string | undefined
}

export type EngineEvent =
  | PlannedEvent
  | StartedEvent
  | ProgressEvent
  | MetricEvent
  | LogEvent
  | StepEvent
  | WaitingEvent
  | SkippedEvent
  | RunEvent

/** A reporter consumes events; it must not throw and must not block for long. */
export interface Reporter {
  readonly emit: (event: EngineEvent) => void
  /** called once at the end (flush, final frame); may be async */
  readonly close?: () => void | Promise<void>
}

export const fanOut = (reporters: ReadonlyArray<Reporter>): Reporter => ({
  emit: (e) => {
    for (const r of reporters) r.emit(e)
  },
  close: async () => {
    for (const r of reporters) await r.close?.()
  }
})

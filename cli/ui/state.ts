/**
 * The view model every human-facing reporter shares: one fold from `EngineEvent`s to what a person
 * wants to see (each step's status, progress, loss history, GPUs, times, errors, log tail, and the run's
 * totals). The Ink view, the plain reporter and the Markdown summary all read this one state, so they
 * can never disagree about what happened. Time comes in as an argument (`now`, milliseconds) to keep
 * the fold deterministic and its tests exact. `reduce` is pure (it leaves the state it is given as it
 * was); a reporter folds with `makeFold`, whose cost per event does not grow with the run.
 */
import type { EngineEvent, PlanStatus, RunEvent, StepStatus } from "../../engine/events.ts"

/** What a person sees per step; a closed union, in the order a step moves through it. */
export type UiStatus = "cached" | "waiting" | "queued" | "running" | "done" | "failed" | "interrupted" | "skipped"

export const isSettled = (s: UiStatus): boolean =>
  s === "cached" || s === "done" || s === "failed" || s === "interrupted" || s === "skipped"

export interface Progress {
  readonly current: number
  readonly total?: number | undefined
  readonly unit?: string | undefined
  readonly rate?: number | undefined
  readonly tokensPerSecond?: number | undefined
  /** seconds left as the step reported it, or estimated from the pace so far */
  readonly eta?: number | undefined
  /** when this report arrived (ms) */
  readonly at: number
}

export interface LossPoint {
  readonly x: number
  readonly loss: number
}

export interface StepView {
  readonly id: string
  readonly kind: string
  readonly needs: ReadonlyArray<string>
  /** longest chain of steps feeding this one: the indentation that shows what feeds what */
  readonly depth: number
  readonly status: UiStatus
  readonly reasons: ReadonlyArray<string>
  readonly key?: string | undefined
  readonly gpus: ReadonlyArray<number>
  readonly logPath?: string | undefined
  readonly startedAt?: number | undefined
  readonly seconds?: number | undefined
  readonly progress?: Progress | undefined
  /** what the step says it is doing ("loading torch", "training", ...), from its latest phase */
  readonly phase?: string | undefined
  /** loss over the step's own x axis (progress.current), thinned to at most `maxLossPoints` */
  readonly losses: ReadonlyArray<LossPoint>
  readonly lossFromProgress?: boolean | undefined
  readonly lr?: number | undefined
  readonly metrics: Readonly<Record<string, number | string>>
  readonly error?: string | undefined
  /** why the step is blocked (a lock held by another anneal process) or skipped */
  readonly note?: string | undefined
  readonly restored?: boolean | undefined
  readonly output?: string | null | undefined
  /** the latest log messages the step emitted as events */
  readonly logTail: ReadonlyArray<string>
}

export interface RunState {
  /** step ids in dependency order (the engine plans in topological order) */
  readonly order: ReadonlyArray<string>
  readonly steps: Readonly<Record<string, StepView>>
  /**
   * step ids in the order they settled: what the live view moves into `<Static>`. A step appears
   * twice if it settled, then ran again (a planned-cached step whose artifact had to be rebuilt).
   */
  readonly settled: ReadonlyArray<string>
  readonly startedAt: number
  /** engine messages not tied to a step, warnings first-class */
  readonly messages: ReadonlyArray<{ readonly level: string; readonly message: string }>
  /** seconds the cached steps took when they last ran, summed as they settle */
  readonly savedSoFar: number
  readonly run?: RunEvent | undefined
}

export const maxLossPoints = 2000
const logTailLines = 200
const messageLines = 50

export const initialState = (now: number): RunState => ({
  order: [],
  steps: {},
  settled: [],
  startedAt: now,
  messages: [],
  savedSoFar: 0
})

const fromPlan = (s: PlanStatus): UiStatus => (s === "cached" ? "cached" : s === "stale" ? "queued" : "waiting")
const fromStep = (s: StepStatus): UiStatus => (s === "ran" ? "done" : s)

const emptyStep = (id: string, kind: string): StepView => ({
  id,
  kind,
  needs: [],
  depth: 0,
  status: "queued",
  reasons: [],
  gpus: [],
  losses: [],
  metrics: {},
  logTail: []
})

/** Keep every point until the cap, then drop every other one: the curve's shape survives. */
const appendLoss = (losses: ReadonlyArray<LossPoint>, p: LossPoint): ReadonlyArray<LossPoint> => {
  const next = [...losses, p]
  return next.length <= maxLossPoints ? next : next.filter((_, i) => i % 2 === 0 || i === next.length - 1)
}

/** The reported ETA, or the remaining units at the reported rate, or at the average pace so far. */
const estimateEta = (
  current: number,
  total: number | undefined,
  rate: number | undefined,
  reported: number | undefined,
  elapsedSeconds: number | undefined
): number | undefined => {
  if (reported !== undefined) return reported
  if (total === undefined || total <= 0) return undefined
  const left = Math.max(0, total - current)
  if (rate !== undefined && rate > 0) return left / rate
  if (elapsedSeconds !== undefined && current > 0) return (elapsedSeconds * left) / current
  return undefined
}

const lossMetricNames = ["loss", "train_loss", "train/loss", "eval_loss", "eval/loss"]

/** A progress event that only says which phase the step entered (current 0, no total, unit or loss). */
export const isPhaseOnly = (event: Extract<EngineEvent, { event: "progress" }>): boolean =>
  event.phase !== undefined && event.total === undefined && event.unit === undefined && event.loss === undefined

/**
 * A state being folded, owned by one fold: `order`, `steps` and `settled` grow in place, so an event
 * costs the same with ten steps or ten thousand. Copying them per event (the pure reducer's way) made a
 * run of 10,000 steps spend two minutes in its reporters, whatever it ran. A `StepView` is still
 * replaced, never changed, so a snapshot shares the views and only copies the containers.
 */
interface Draft {
  order: Array<string>
  steps: Record<string, StepView>
  settled: Array<string>
  startedAt: number
  messages: ReadonlyArray<{ readonly level: string; readonly message: string }>
  savedSoFar: number
  run?: RunEvent | undefined
}

/** A copy whose containers are its own: a fold's draft, and the snapshots a fold hands out. */
const draftOf = (state: RunState): Draft => ({
  ...state,
  order: state.order.slice(),
  steps: { ...state.steps },
  settled: state.settled.slice()
})

/** Step `id`'s view, if it has one (an id may be a name on Object.prototype: "constructor"). */
const stepIn = (steps: Record<string, StepView>, id: string): StepView | undefined => (Object.hasOwn(steps, id) ? steps[id] : undefined)

/** Replaces step `id`'s view with `f` of it (a new step is appended to the order). */
const update = (d: Draft, id: string, f: (s: StepView) => StepView, kind = "?"): void => {
  const known = stepIn(d.steps, id)
  const before = known ?? emptyStep(id, kind)
  const after = f(before)
  if (known === undefined) d.order.push(id)
  d.steps[id] = after
  if (isSettled(after.status) && !isSettled(before.status)) d.settled.push(id)
}

/** Folds one event into the draft it owns. */
const apply = (d: Draft, event: EngineEvent, now: number): void => {
  switch (event.event) {
    case "planned": {
      let depth = 0
      for (let i = 0; i < event.needs.length; i++) {
        const n = event.needs[i]!
        depth = Math.max(depth, (stepIn(d.steps, n)?.depth ?? 0) + 1)
      }
      // a planned-cached step counts as settled at once (its `step` event only confirms it), so the
      // live view prints it above the running ones straight away
      return update(d, event.step, (s) => ({
        ...s,
        kind: event.kind,
        needs: event.needs,
        depth,
        status: fromPlan(event.status),
        reasons: event.reasons
      }), event.kind)
    }
    case "started":
      return update(d, event.step, (s) => ({
        ...s,
        kind: event.kind,
        status: "running",
        key: event.key,
        gpus: event.gpus,
        logPath: event.log,
        startedAt: now,
        note: undefined
      }), event.kind)
    case "progress":
      if (isPhaseOnly(event)) {
        return update(d, event.step, (s) => ({
          ...s,
          status: s.status === "queued" || s.status === "waiting" ? "running" : s.status,
          phase: event.phase
        }))
      }
      return update(d, event.step, (s) => {
        const elapsed = s.startedAt === undefined ? undefined : (now - s.startedAt) / 1000
        const progress: Progress = {
          current: event.current,
          total: event.total,
          unit: event.unit,
          rate: event.rate,
          tokensPerSecond: event.tokensPerSecond,
          eta: estimateEta(event.current, event.total, event.rate, event.eta, elapsed),
          at: now
        }
        return {
          ...s,
          status: s.status === "queued" || s.status === "waiting" ? "running" : s.status,
          progress,
          losses: event.loss !== undefined ? appendLoss(s.losses, { x: event.current, loss: event.loss }) : s.losses,
          lossFromProgress: s.lossFromProgress || event.loss !== undefined,
          lr: event.lr ?? s.lr,
          phase: event.phase ?? s.phase
        }
      })
    case "metric":
      return update(d, event.step, (s) => {
        const metrics = { ...s.metrics, [event.name]: event.value }
        // a training loss reported as a metric still feeds the sparkline and the curve, unless the
        // step already reports it with its progress (then the metric is just the last value again)
        const trainLoss = (event.name === "loss" || event.name === "train_loss") && typeof event.value === "number"
        const losses = trainLoss && !s.lossFromProgress
          ? appendLoss(s.losses, { x: s.progress?.current ?? s.losses.length, loss: event.value as number })
          : s.losses
        return { ...s, metrics, losses }
      })
    case "log": {
      if (event.step === null) {
        if (event.level === "debug") return
        d.messages = [...d.messages, { level: event.level, message: event.message }].slice(-messageLines)
        return
      }
      return update(d, event.step, (s) => ({
        ...s,
        logTail: [...s.logTail, ...event.message.split("\n")].slice(-logTailLines)
      }))
    }
    case "waiting":
      return update(d, event.step, (s) => ({ ...s, status: "waiting", note: event.reason }))
    case "step": {
      update(d, event.step, (s) => ({
        ...s,
        kind: event.kind,
        status: fromStep(event.status),
        key: event.key,
        output: event.output,
        seconds: event.seconds,
        error: event.error,
        restored: event.restored,
        note: undefined
      }), event.kind)
      if (event.status === "cached") d.savedSoFar += event.seconds
      return
    }
    case "skipped":
      return update(d, event.step, (s) => ({ ...s, kind: event.kind, status: "skipped", note: event.because }), event.kind)
    case "run":
      d.run = event
      return
  }
}

/**
 * The state after one more event, leaving the one given as it was (it copies the step table: for
 * tests and one-off folds; a reporter folds with `makeFold`).
 */
export const reduce = (state: RunState, event: EngineEvent, now: number): RunState => {
  const d = draftOf(state)
  apply(d, event, now)
  return d
}

/** Fold a whole stream; handy for tests and for replaying a `--json` log. */
export const reduceAll = (events: ReadonlyArray<EngineEvent>, now = 0, state = initialState(now)): RunState => {
  const d = draftOf(state)
  for (const e of events) apply(d, e, now)
  return d
}

/** A reporter's running fold: each event costs the same however many steps the run has. */
export interface Fold {
  readonly apply: (event: EngineEvent, now: number) => void
  /** one step's view as it is now */
  readonly step: (id: string) => StepView | undefined
  /** the state as it is now, unchanged by later events (the step table is copied once per change) */
  readonly state: () => RunState
}

export const makeFold = (state: RunState): Fold => {
  const d = draftOf(state)
  let snapshot: RunState | undefined
  return {
    apply: (event, now) => {
      apply(d, event, now)
      snapshot = undefined
    },
    step: (id) => stepIn(d.steps, id),
    state: () => (snapshot ??= draftOf(d))
  }
}

export interface Totals {
  readonly ran: number
  readonly cached: number
  readonly failed: number
  readonly interrupted: number
  readonly skipped: number
  readonly running: number
  readonly pending: number
  /** seconds of work the cache saved */
  readonly saved: number
  readonly storeBytes?: number | undefined
  readonly seconds: number
}

/** Footer numbers: counted from the steps while running, the engine's own totals once it is done. */
export const totals = (state: RunState, now: number): Totals => {
  const steps = state.order.map((id) => state.steps[id]!)
  const count = (s: UiStatus) => steps.filter((x) => x.status === s).length
  const r = state.run
  return {
    ran: r?.ran ?? count("done"),
    cached: r?.cached ?? count("cached"),
    failed: r?.failed ?? count("failed"),
    interrupted: r?.interrupted ?? count("interrupted"),
    skipped: r?.skipped ?? count("skipped"),
    running: count("running"),
    pending: count("queued") + count("waiting"),
    saved: r?.saved ?? state.savedSoFar,
    storeBytes: r?.storeBytes,
    seconds: r?.seconds ?? (now - state.startedAt) / 1000
  }
}

/** The loss a person cares about right now: the latest training loss, else a reported loss metric. */
export const latestLoss = (s: StepView): number | undefined => {
  const last = s.losses[s.losses.length - 1]
  if (last !== undefined) return last.loss
  for (const name of lossMetricNames) {
    const v = s.metrics[name]
    if (typeof v === "number") return v
  }
  return undefined
}

/** Fraction done, when the step says how much there is. */
export const fractionDone = (p: Progress | undefined): number | undefined =>
  p?.total !== undefined && p.total > 0 ? Math.min(1, p.current / p.total) : undefined

/** The few metrics worth a column in a summary: loss first, then the rest by name, at most `n`. */
export const keyMetrics = (s: StepView, n = 3): Array<[string, number | string]> => {
  const entries = Object.entries(s.metrics)
  const loss = latestLoss(s)
  const out: Array<[string, number | string]> = []
  if (loss !== undefined && !entries.some(([k]) => k === "loss")) out.push(["loss", loss])
  const ranked = entries.sort(([a], [b]) => {
    const ia = lossMetricNames.indexOf(a)
    const ib = lossMetricNames.indexOf(b)
    if (ia !== ib) return (ia === -1 ? 99 : ia) - (ib === -1 ? 99 : ib)
    return a.localeCompare(b)
  })
  return [...out, ...ranked].slice(0, n)
}

/**
 * `anneal run`, programmatically. The parts, in the order a run meets them:
 *
 * - `runRecipeEffect` (`runRecipe` is its Promise) opens the project (and the remote, when there is one)
 *   and closes what it opened; what stops a run before its steps (a bad recipe or source, the store's
 *   or database's CacheError, a usage error) is a tagged error in its error channel;
 * - `runProject` sizes the machine's pool, resolves GPU shortfalls, settles the steps the plan found
 *   cached (`settlePlannedCached`), and hands the rest to the scheduler (scheduler.ts), which calls
 *   `build` for each step once its needs succeeded;
 * - `beginRun` takes the store for the run (heartbeat, crash recovery, staging sweep), plans every step
 *   (plan.ts) and announces the plan;
 * - `build` is one step's data walk: decide (decide.ts: inputs -> trace -> query -> rebuild), and either
 *   settle it as cached (`settleCached`) or take its key's build lock and its resources and `execute` it;
 * - `execute` prepares the step (`prepareSpec`: staging, resume dir, log, run row, the spec), runs it on
 *   the executor, and `commitStep` moves the output into the store and records it;
 * - `endRun` records how the run ended and emits the final run event.
 */
import * as fs from "node:fs"
import { thisHost } from "../cache/liveness.ts"
import * as path from "node:path"
import { execFileSync } from "node:child_process"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { StepRecord } from "../cache/db.ts"
import type { RemoteConfig } from "../cache/remote/url.ts"
import { presenceScanWanted } from "../cache/presence-scan.ts"
import { decide, presence } from "./decide.ts"
import type { DecideContext } from "./decide.ts"
import type { CacheError, StoreFailure } from "../cache/errors.ts"
import { badInputOf, messageOf } from "./errors.ts"
import type { BadInput } from "./errors.ts"
import type { EngineEvent, Reporter, RunEvent } from "./events.ts"
import { makeLocalExecutor } from "./executors/local.ts"
import type { GraphNode, PlannedStep } from "./graph.ts"
import { stepSeed, traceText } from "./keys.ts"
import type { Trace } from "./keys.ts"
import { fingerprint, hashSourcesEffect, openProjectEffect, planSteps, selectSteps, unknownStep } from "./plan.ts"
import type { PlanEntry, Project } from "./plan.ts"
import { constructiveTraces } from "./rebuilder.ts"
import type { Decision, Rebuilder } from "./rebuilder.ts"
import type { Grant, Request, ResourcePool } from "./resources.ts"
import { machinePool, requestOf, schedule, stepRequests } from "./scheduler.ts"
import type { Hold, Outcome } from "./scheduler.ts"
import type { Executor, StepSpec } from "./spec.ts"
import { StepExecutionError } from "./spec.ts"
import { projectRoot } from "./python.ts"

export interface RunOptions {
  readonly recipe: string
  readonly store?: string | undefined
  /** step ids to build (with what they need); all steps when empty */
  readonly targets?: ReadonlyArray<string> | undefined
  /** step ids to rerun even when cached */
  readonly force?: ReadonlyArray<string> | undefined
  /** rehash every artifact before it is restored or read (instead of trusting its manifest's stats) */
  readonly verify?: boolean | undefined
  /** CPU slots (default: the number of cores) */
  readonly jobs?: number | undefined
  /** GPU ids to use (default: CUDA_VISIBLE_DEVICES, else nvidia-smi) */
  readonly gpus?: ReadonlyArray<number> | undefined
  readonly memoryGb?: number | undefined
  /** let steps that want GPUs run on CPU when there are not enough */
  readonly allowCpu?: boolean | undefined
  /** after a failure, keep running branches that do not depend on it */
  readonly keepGoing?: boolean | undefined
  readonly reporter: Reporter
  /** aborting it interrupts the run: children get SIGTERM then SIGKILL, runs are recorded as interrupted */
  readonly signal?: AbortSignal | undefined
  readonly executor?: Executor | undefined
  readonly rebuilder?: Rebuilder | undefined
  /** the command line, recorded with the session */
  readonly argv?: ReadonlyArray<string> | undefined
  /** import the recipe module afresh (watch mode, tests that edit recipes in one process) */
  readonly fresh?: boolean | undefined
  /** a remote store (s3://bucket/prefix): restore what it holds, upload what runs (cache/remote/sync.ts) */
  readonly remote?: RemoteConfig | undefined
}

/** The final run event's counts (unrounded), plus what a caller needs to act on the result. */
export interface RunSummary extends Pick<RunEvent, "ran" | "cached" | "failed" | "interrupted" | "skipped" | "seconds" | "saved"> {
  /** 0 success, 1 a step failed or the run was interrupted */
  readonly exitCode: 0 | 1
  readonly session: number
  /** step id -> output artifact hash, for every step that succeeded or was cached */
  readonly outputs: ReadonlyMap<string, string>
  readonly storeRoot: string
}

const annealVersion = (() => {
  try {
    return (JSON.parse(fs.readFileSync(path.join(projectRoot, "package.json"), "utf8")) as { version: string }).version
  } catch {
    return "unknown"
  }
})()

const gitRevision = (dir: string): string | null => {
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: dir, stdio: ["ignore", "pipe", "ignore"], timeout: 5000 }).toString().trim()
  } catch {
    return null
  }
}

/** What a step asks of the pool (scheduler.ts; `anneal plan` shows it too). */
export { requestOf }

/**
 * A run as an Effect. What stops it before any step is built (a bad recipe or source, a store or
 * database that cannot be used, a usage error) is a tagged error in its error channel (BadInput); what
 * goes wrong in a step settles that step. The project, executor and remote are closed however it ends.
 */
export const runRecipeEffect = (options: RunOptions): Effect.Effect<RunSummary, BadInput> => Effect.suspend(() => {
  const started = performance.now()
  // the machine's pool is sized only when a step is left to build: nvidia-smi (when no GPU list is
  // given) takes tens of ms, on a machine with GPUs up to seconds, and a fully cached run needs no GPU
  let pool: Promise<ResourcePool> | undefined
  const machine = () => (pool ??= machinePool(options))
  return Effect.acquireUseRelease(
    Effect.gen(function* () {
      // loaded only when used: the S3 client is no cost to a run without a remote
      const remote = options.remote === undefined
        ? undefined
        : yield* badInputOf(async () => (await import("../cache/remote/sync.ts")).openRemoteRun(options.remote!, options.reporter))
      const project = yield* openProjectEffect(options.recipe, { store: options.store, fresh: options.fresh ?? false, scan: options.verify !== true && presenceScanWanted() }).pipe(
        Effect.onError(() => Effect.promise(async () => remote?.close()))
      )
      return { remote, project, executor: options.executor ?? makeLocalExecutor() }
    }),
    ({ remote, project, executor }) =>
      remote === undefined
        ? runProject(project, { ...options, executor }, machine, started)
        : Effect.gen(function* () {
          const reporter = yield* badInputOf(() => remote.restore(project, options))
          const summary = yield* runProject(project, { ...options, executor, reporter }, machine, started)
          return yield* badInputOf(() => remote.finish(summary))
        }),
    ({ remote, project, executor }) =>
      // the local executor's warm Python process lives as long as the run
      Effect.promise(async () => {
        try {
          await executor.close?.()
          await remote?.close()
        } finally {
          project.scan?.close()
          project.store.close()
        }
      })
  )
})

/** `runRecipeEffect` for callers outside Effect: it rejects with the same tagged error. */
export const runRecipe = (options: RunOptions): Promise<RunSummary> => Effect.runPromise(runRecipeEffect(options))

const runProject = (project: Project, options: RunOptions, machine: () => Promise<ResourcePool>, started: number): Effect.Effect<RunSummary, BadInput> =>
  Effect.gen(function* () {
    const { graph } = project
    const steps = selectSteps(graph, options.targets ?? [])
    for (const f of options.force ?? []) if (!graph.byId.has(f)) return yield* Effect.fail(unknownStep(graph, f))
    // sources are hashed off the event loop (a multi-GB source does not freeze the live view)
    const sources = yield* hashSourcesEffect(project.store, steps)
    const plan = yield* planRun(project, options, steps, sources)
    // resources, and GPU shortfalls, decided before anything runs, for the steps left to build: a step
    // the plan found cached needs no GPU (a CPU machine restoring a GPU recipe's results from a remote)
    const toBuild = options.signal?.aborted === true ? steps : steps.filter((s) => !plannedCached(plan.byStep.get(s.id)))
    const pool = toBuild.length === 0 ? undefined : yield* badInputOf(machine)
    const { requests, onCpu } = pool === undefined
      ? { requests: new Map<string, Request>(), onCpu: [] }
      : yield* badInputOf(() => stepRequests(toBuild, pool.capacity.gpus, options.allowCpu === true))
    const run = yield* beginRun(project, options, plan, { gpus: pool?.capacity.gpus ?? [], onCpu })
    // steps the plan found cached (whose needs are all cached too) settle here, in order: a fiber each
    // through the scheduler was a third of a 10,000-step null rerun
    const settled = settlePlannedCached(run, steps)
    const left = settled.size === 0 ? steps : steps.filter((s) => !settled.has(s.id))
    if (left.length === 0) return endRun(run, Exit.void, started)
    // (interrupted while planning: the steps planned as cached were not settled, and go to the scheduler,
    // which settles each as interrupted)
    const granting = pool ?? (yield* badInputOf(machine))
    const exit = yield* Effect.promise(() =>
      Effect.runPromiseExit(
        schedule({
          steps: left,
          settled,
          pool: granting,
          request: (step) => requests.get(step.id) ?? requestOf(step),
          build: (step, hold) => build(run, step, hold),
          blocked: (step, need) => skip(run, step, `${need} did not succeed`),
          // a step still waiting for its inputs or resources when the run is interrupted says so: it was skipped
          interrupted: (step) => {
            if (!run.settled.has(step.id)) skip(run, step, "the run was interrupted")
          }
        }),
        { signal: options.signal }
      )
    )
    return endRun(run, exit, started)
  })

/** One run's state, read and updated by the parts below. */
interface Run {
  readonly project: Project
  readonly options: RunOptions
  readonly executor: Executor
  readonly session: number
  readonly emit: (e: EngineEvent) => void
  /** steps that reported how they ended (ran, cached, failed, interrupted, skipped) */
  readonly settled: Set<string>
  /** what `decide` reads; its records are updated as steps are recorded */
  readonly decide: DecideContext & { readonly records: Map<string, StepRecord> }
  /** the plan's entries by step id: a step planned as cached settles without deciding again */
  readonly planned: ReadonlyMap<string, PlanEntry>
  /** step id -> output artifact hash, for every step that succeeded or was cached */
  readonly outputs: Map<string, string>
  readonly counts: { ran: number; cached: number; failed: number; interrupted: number; skipped: number; saved: number }
  /** set by a failure without --keep-going: steps not started yet are skipped */
  stopNew: boolean
  /** the recipe's git revision, asked once per run (undefined: not asked yet) */
  revision: string | null | undefined
}

type RunPlan = ReturnType<typeof planSteps> & { readonly byStep: ReadonlyMap<string, PlanEntry> }

/** Takes the store for the run (heartbeat, crash recovery, staging sweep) and plans the steps. */
const planRun = (
  project: Project,
  options: RunOptions,
  steps: ReadonlyArray<PlannedStep>,
  sources: ReadonlyMap<string, string>
): Effect.Effect<RunPlan, StoreFailure> => project.store.attempt((store) => {
  // from here the run heartbeats and leases what it asks about; Store.close() releases it all
  store.beginRun({ verify: options.verify === true })
  store.db.recoverCrashed()
  store.sweepStaging()
  const plan = planSteps(project, steps, { force: options.force ?? [], rebuilder: options.rebuilder, sources })
  return { ...plan, byStep: new Map(plan.entries.map((e) => [e.step, e])) }
})

/** A step the plan found cached, from cached inputs: it settles without the scheduler (settlePlannedCached). */
type CachedEntry = PlanEntry & { readonly key: string; readonly trace: Trace; readonly decision: Extract<Decision, { action: "cached" }> }
const plannedCached = (e: PlanEntry | undefined): e is CachedEntry =>
  e?.decision?.action === "cached" && e.key !== undefined && e.trace !== undefined

/** Starts the run's session and announces the plan. */
const beginRun = (
  project: Project,
  options: RunOptions,
  plan: RunPlan,
  machine: { readonly gpus: ReadonlyArray<number>; readonly onCpu: ReadonlyArray<string> }
): Effect.Effect<Run, StoreFailure> => project.store.attempt((store) => {
  const { recipeId } = project
  const settled = new Set<string>()
  const emit = (e: EngineEvent) => {
    if (e.event === "step" || e.event === "skipped") settled.add(e.step)
    options.reporter.emit(e)
  }
  const force = new Set(options.force ?? [])
  const session = store.db.startSession(recipeId, options.argv ?? [])
  for (const w of plan.warnings) emit({ event: "log", step: null, level: "warn", message: w })
  // said once, not per step: a recipe that allows CPU (the demo) runs without --allow-cpu
  const { gpus } = machine
  const toRunOnCpu = machine.onCpu.filter((id) => plan.byStep.get(id)?.status !== "cached")
  if (toRunOnCpu.length > 0) {
    emit({
      event: "log", step: null, level: "info",
      message: `${gpus.length === 0 ? "no GPU" : `${gpus.length} GPU${gpus.length > 1 ? "s" : ""}`}: running ${toRunOnCpu.join(", ")} on CPU`
    })
  }
  for (let i = 0; i < plan.entries.length; i++) {
    const e = plan.entries[i]!
    emit({ event: "planned", step: e.step, kind: e.kind, status: e.status, reasons: e.reasons, needs: e.needs })
  }
  return {
    project,
    options,
    executor: options.executor ?? makeLocalExecutor(),
    session,
    emit,
    settled,
    decide: {
      store,
      records: plan.records,
      force,
      rebuild: options.rebuilder ?? constructiveTraces,
      present: presence(store),
      sources: plan.sources
    },
    planned: plan.byStep,
    outputs: new Map(),
    counts: { ran: 0, cached: 0, failed: 0, interrupted: 0, skipped: 0, saved: 0 },
    stopNew: false,
    revision: undefined
  } satisfies Run
})

/**
 * One step's data walk, once its needs succeeded: decide, then settle it as cached, or take its key's
 * build lock and its resources and execute it. Whatever goes wrong settles the step (as failed) here.
 */
const build = (run: Run, step: PlannedStep, hold: Hold): Effect.Effect<Outcome> => {
  let key = "" // known once the inputs are
  return Effect.gen(function* () {
    const { store } = run.project
    const planned = run.planned.get(step.id)
    if (plannedCached(planned)) {
      // decided while planning, from the same (cached) inputs: nothing to recompute
      const d = planned.decision
      return yield* store.attempt(() => settleCached(run, step, planned.key, planned.trace, d.output, d.seconds, d.restored))
    }
    const d = yield* store.attempt(() => decide(run.decide, step, run.outputs))
    // the scheduler builds a step only once every need has an output
    if (d.waiting) return yield* Effect.die(new Error(`step "${step.id}" was scheduled before its inputs were known`))
    const { trace, decision } = d
    key = d.key
    if (decision.action === "cached") return yield* store.attempt(() => settleCached(run, step, key, trace, decision.output, decision.seconds, decision.restored))
    if (run.stopNew) return skip(run, step, "the run stopped after a failure (use --keep-going to run independent steps)")
    return yield* withLock(run, step, key, (waited) => Effect.gen(function* () {
      // another process may have built this key while we waited for the lock (otherwise the
      // rebuilder's decision to run stands, even for a key built before)
      const again = run.decide.force.has(step.id) || !waited ? undefined : yield* store.attempt((s) => {
        const r = s.db.result(key)
        return r !== undefined && s.has(r.output) ? r : undefined
      })
      if (again !== undefined) return yield* store.attempt(() => settleCached(run, step, key, trace, again.output, again.seconds, true))
      return yield* hold((grant, release) => run.stopNew ? Effect.succeed(skip(run, step, "the run stopped after a failure")) : execute(run, step, key, trace, grant, release))
    }))
  }).pipe(
    // a failure outside execute (the database's CacheError, the rebuilder, a lock) still settles the step
    // as failed (interrupts alone carry no error value, hence the cast)
    Effect.catchCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause as Cause.Cause<never>) : Effect.sync(() => failOutside(run, step, key, cause))))
  )
}

/** Settles every step planned as cached (before anything is scheduled); returns their outcomes. */
const settlePlannedCached = (run: Run, steps: ReadonlyArray<PlannedStep>): Map<string, Outcome> => {
  const settled = new Map<string, Outcome>()
  if (run.options.signal?.aborted === true) return settled
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!
    const planned = run.planned.get(step.id)
    if (!plannedCached(planned)) continue
    const d = planned.decision
    // a cached step's needs were cached in the plan (else it would be waiting), so they settled above
    try {
      settled.set(step.id, settleCached(run, step, planned.key, planned.trace, d.output, d.seconds, d.restored))
    } catch (e) {
      // recording it failed (the database): the step fails, as it would in build
      settled.set(step.id, failOutside(run, step, planned.key, Cause.die(e)))
    }
  }
  return settled
}

const skip = (run: Run, step: PlannedStep, because: string): Outcome => {
  run.counts.skipped++
  run.emit({ event: "skipped", step: step.id, kind: step.def.kind, because })
  return { ok: false }
}

/** The step id's row in the recipe's records (what `plan` compares against next time). */
const record = (run: Run, step: PlannedStep, key: string, trace: Trace, output: string, seconds: number, runId: number | null): StepRecord => {
  const prev = run.decide.records.get(step.id)
  const rec: StepRecord = {
    recipe: run.project.recipeId,
    step: step.id,
    kind: step.def.kind,
    key,
    // the text the key hashes, so that the next plan knows the key from the text alone (decide.ts `query`)
    trace: traceText(trace),
    output,
    run_id: runId,
    built_session: run.session,
    changed_session: prev !== undefined && prev.output === output ? prev.changed_session : run.session,
    seconds,
    fingerprint: fingerprint(step.def)
  }
  run.project.store.db.putStep(rec)
  run.decide.records.set(step.id, rec)
  return rec
}

const settleCached = (run: Run, step: PlannedStep, key: string, trace: Trace, output: string, seconds: number, restored: boolean): Outcome => {
  const { db } = run.project.store
  const prev = run.decide.records.get(step.id)
  if (prev === undefined || prev.key !== key || prev.output !== output) {
    db.transaction(() => {
      record(run, step, key, trace, output, seconds, db.result(key)?.run_id ?? null)
      db.touchArtifact(output)
    })
  }
  run.counts.cached++
  run.counts.saved += seconds
  run.outputs.set(step.id, output)
  run.emit({ event: "step", step: step.id, kind: step.def.kind, status: "cached", key, output, seconds: 0, restored: restored || undefined })
  return { ok: true, hash: output }
}

/** Holds the cross-process build lock of a key; another process building it makes us wait. The body
 * learns whether we waited: only then can the key have been built since the rebuilder decided. */
const withLock = <A, E>(run: Run, step: PlannedStep, key: string, body: (waited: boolean) => Effect.Effect<A, E>): Effect.Effect<A, E | CacheError> => {
  const { db } = run.project.store
  return Effect.gen(function* () {
    let announced = false
    for (;;) {
      const holder = yield* db.attempt((d) => d.tryLock(key, step.id, run.project.recipeId))
      if (holder === null) break
      if (!announced) {
        announced = true
        run.emit({ event: "waiting", step: step.id, reason: `waiting for pid ${holder.pid} (${holder.recipe}, step ${holder.step}), which is building the same key` })
      }
      yield* Effect.sleep("200 millis")
    }
    return yield* body(announced)
  }).pipe(Effect.ensuring(Effect.ignore(db.attempt((d) => d.unlock(key)))))
}

/** A step being executed: what its clean-up needs to know, filled in as it goes. */
interface Attempt {
  phase: "prepare" | "run" | "commit"
  staging: string | undefined
  runId: number | undefined
  logPath: string | undefined
  /** set once the step is recorded as ran: an interrupt that arrived during the (uninterruptible)
   * commit then ends the run, but must not also record this step as interrupted */
  settled: boolean
}

/** Runs one step into staging and commits it. Whatever goes wrong, the step settles once: ran, failed
 * (with the message; the cause goes to its log) or interrupted (only when the cause is interrupts alone).
 * The step's resources go back to the pool (`release`) once its process is done and its output is not
 * empty: the commit (hashing on the store's workers, fsyncs, the database) needs none of its slots or
 * GPUs, and the next step starts meanwhile. */
const execute = (run: Run, step: PlannedStep, key: string, trace: Trace, grant: Grant, release: () => void): Effect.Effect<Outcome> => {
  const { store } = run.project
  const t0 = performance.now()
  const seconds = () => (performance.now() - t0) / 1000
  const at: Attempt = { phase: "prepare", staging: undefined, runId: undefined, logPath: undefined, settled: false }
  const cleanUp = (status: "failed" | "interrupted", error: string) => {
    if (at.staging !== undefined) attempt(() => store.discard(at.staging!))
    if (at.runId !== undefined) attempt(() => store.db.finishRun(at.runId!, { status, seconds: seconds(), output: null, metrics: {}, error }))
  }
  const fail = (cause: Cause.Cause<unknown>): Outcome => {
    const error = Cause.squash(cause)
    const message = error instanceof StepExecutionError || error instanceof EmptyOutput ? error.message
      : at.phase === "prepare" ? `could not prepare the step: ${messageOf(error)}`
      : at.phase === "commit" ? `could not commit the output: ${messageOf(error)}`
      : messageOf(error)
    if (at.logPath !== undefined) attempt(() => fs.appendFileSync(at.logPath!, `[error] ${message}\n${Cause.pretty(cause)}\n`))
    cleanUp("failed", message)
    failed(run)
    run.emit({ event: "step", step: step.id, kind: step.def.kind, status: "failed", key, output: null, seconds: seconds(), error: message })
    return { ok: false }
  }
  // preparing is short and not cut by an interrupt: whatever it made is in `at` for the clean-up
  return Effect.uninterruptible(Effect.tryPromise({ try: () => prepareSpec(run, step, key, trace, grant, at), catch: (e) => e })).pipe(Effect.flatMap((spec) => {
    run.emit({ event: "started", step: step.id, kind: step.def.kind, key, gpus: grant.gpus, log: spec.logPath })
    at.phase = "run"
    return run.executor.run(spec, run.emit).pipe(
      // the commit hashes on worker threads (cache/hash.ts), so events keep flowing meanwhile; it is not
      // cut short by an interrupt once started
      Effect.flatMap((result) => Effect.uninterruptible(Effect.gen(function* () {
        at.phase = "commit"
        const hash = yield* commitStep(run, step, key, trace, grant, spec, result.metrics, seconds, release)
        at.staging = undefined // renamed into the store (or dropped as a duplicate)
        at.settled = true
        removeResumeDir(spec.resumeDir)
        run.counts.ran++
        run.outputs.set(step.id, hash)
        run.emit({ event: "step", step: step.id, kind: step.def.kind, status: "ran", key, output: hash, seconds: seconds() })
        return { ok: true, hash } satisfies Outcome
      })))
    )
  })).pipe(
    // interrupts alone carry no error value, hence the cast
    Effect.catchCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause as Cause.Cause<never>) : Effect.sync(() => fail(cause)))),
    Effect.onInterrupt(() =>
      Effect.sync(() => {
        if (at.settled) return
        cleanUp("interrupted", "interrupted")
        run.counts.interrupted++
        run.emit({ event: "step", step: step.id, kind: step.def.kind, status: "interrupted", key, output: null, seconds: seconds() })
      })
    )
  )
}

/** A failure stops new steps unless --keep-going. */
const failed = (run: Run) => {
  run.counts.failed++
  if (run.options.keepGoing !== true) run.stopNew = true
}

/**
 * Staging, resume directory, log and run row for one execution, and the spec the executor gets. The
 * staging directory and the log file are made on libuv's threads: a directory operation can wait behind
 * other commits' fsyncs, and here it would hold up every other step.
 */
const prepareSpec = async (run: Run, step: PlannedStep, key: string, trace: Trace, grant: Grant, at: Attempt): Promise<StepSpec> => {
  const { store, recipeId, graph } = run.project
  at.staging = await store.newStagingAsync(key)
  const resumeDir = store.resumeDir(key)
  // a worker process is handed the directory; a TS step makes it when it first asks (local.ts): most
  // never do, and a mkdir and rmdir were a tenth of an executed no-op step
  if (step.def.implementation.run === undefined) makeDir(resumeDir)
  const logPath = (at.logPath = store.logPath(run.session, step.id))
  // with the other steps that start in this turn (CacheDb.batched)
  at.runId = await store.db.batched(() => store.db.startRun({ session: run.session, recipe: recipeId, step: step.id, kind: step.def.kind, key, logPath, trace: JSON.stringify(trace), gpus: grant.gpus }))
  const inputs: Record<string, string | ReadonlyArray<string>> = {}
  const pathOf = (n: GraphNode) => (n._tag === "source" ? n.path : store.artifactPath(run.outputs.get(n.id)!))
  for (const [port, node] of Object.entries(step.inputs)) {
    inputs[port] = Array.isArray(node) ? (node as ReadonlyArray<GraphNode>).map(pathOf) : pathOf(node as GraphNode)
  }
  const base: Omit<StepSpec, "implementation"> = {
    specVersion: 1,
    runId: at.runId,
    step: step.id,
    kind: step.def.kind,
    version: step.def.version,
    key,
    params: step.params,
    inputs,
    inputHashes: trace.inputs,
    output: at.staging,
    resumeDir,
    logPath,
    devices: { gpus: grant.gpus, cpus: Math.max(1, grant.cpus), memoryGb: grant.memoryGb || undefined },
    seed: stepSeed(step),
    recipe: graph.recipe,
    // the call's executor option, for a cluster executor's placement (engine/executors/placement.ts)
    ...(step.node.options.executor !== undefined ? { placement: step.node.options.executor } : {})
  }
  const spec = buildSpec(step, base, logPath, grant, path.dirname(graph.recipe))
  await (await fs.promises.open(logPath, "a")).close() // a log name the filesystem refuses fails here, while preparing
  return spec
}

/**
 * Commits a step's output: the store moves it into place with its self-description and records the
 * artifact, the run, the key's result and the step's record in one transaction. Returns the output's hash.
 */
const commitStep = (
  run: Run,
  step: PlannedStep,
  key: string,
  trace: Trace,
  grant: Grant,
  spec: StepSpec,
  metrics: Record<string, number | string>,
  seconds: () => number,
  release: () => void
): Effect.Effect<string, EmptyOutput | StoreFailure> => Effect.gen(function* () {
  const { store, recipeId, graph } = run.project
  // an empty output fails the step before its slots go back: without --keep-going no new step starts
  if (step.def.output.kind === "dataset" && isEmptyDir(spec.output)) return yield* Effect.fail(new EmptyOutput(step.id))
  release()
  // asked once per run: `??=` would ask again after every null (a recipe outside git), a `git` process
  // per step that cost an executed no-op step 40 ms
  if (run.revision === undefined) run.revision = gitRevision(path.dirname(graph.recipe))
  const committed = yield* store.commitEffect(spec.output, step.def.output.kind, {
    step: step.id,
    recipe: recipeId,
    version: step.def.version,
    key,
    params: step.params,
    inputs: trace.inputs,
    seed: spec.seed,
    devices: { gpus: grant.gpus, cpus: grant.cpus, host: thisHost() },
    versions: { anneal: annealVersion, node: process.versions.node },
    git: run.revision,
    created: new Date().toISOString()
  }, (c) => {
    // in the store's transaction, with the artifact's own row
    const secs = seconds()
    store.db.finishRun(spec.runId, { status: "ran", seconds: secs, output: c.hash, metrics, error: null })
    store.db.putResult(key, c.hash, spec.runId, secs)
    record(run, step, key, trace, c.hash, secs, spec.runId)
    // the key's build lock goes with the result that ends it (withLock's own unlock then finds no row)
    store.db.unlock(key)
  })
  return committed.hash
})

/** A failure outside execute (the database, the rebuilder, a lock). */
const failOutside = (run: Run, step: PlannedStep, key: string, cause: Cause.Cause<unknown>): Outcome => {
  const message = messageOf(Cause.squash(cause))
  failed(run)
  run.emit({ event: "log", step: step.id, level: "error", message: Cause.pretty(cause) })
  run.emit({ event: "step", step: step.id, kind: step.def.kind, status: "failed", key, output: null, seconds: 0, error: message })
  return { ok: false }
}

/** Records how the run ended and emits the final run event. */
const endRun = (run: Run, exit: Exit.Exit<void>, started: number): RunSummary => {
  const { store } = run.project
  const { counts } = run
  // steps settle every failure themselves, so only interruption (or an engine bug, said aloud) ends here
  const interrupted = Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
  if (Exit.isFailure(exit) && !interrupted) {
    counts.failed++
    run.emit({ event: "log", step: null, level: "error", message: Cause.pretty(exit.cause) })
  }
  const summary: RunSummary = {
    ...counts,
    seconds: (performance.now() - started) / 1000,
    exitCode: counts.failed > 0 || counts.interrupted > 0 || interrupted ? 1 : 0,
    session: run.session,
    outputs: run.outputs,
    storeRoot: store.root
  }
  attempt(() => store.db.endSession(run.session, interrupted ? "interrupted" : summary.exitCode === 0 ? "ok" : "failed"), (e) =>
    run.emit({ event: "log", step: null, level: "error", message: `could not record the end of the run: ${messageOf(e)}` }))
  run.emit({
    event: "run",
    ran: counts.ran,
    cached: counts.cached,
    failed: counts.failed,
    interrupted: counts.interrupted,
    skipped: counts.skipped,
    seconds: Math.round(summary.seconds * 1000) / 1000,
    saved: Math.round(counts.saved * 1000) / 1000,
    storeBytes: attempt(() => store.bytes()),
    runDir: path.join(store.logsDir, String(run.session))
  })
  return summary
}

/**
 * A finished step's checkpoints go (a rerun of the key must not resume from them). Most steps never
 * checkpoint: an empty directory is one rmdir, where a recursive rm cost an executed no-op step 1 ms.
 */
const removeResumeDir = (dir: string) => {
  try {
    fs.rmdirSync(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return
    attempt(() => fs.rmSync(dir, { recursive: true, force: true }))
  }
}

/** `mkdir -p` in one call when only the last level is missing (the usual case: resume/ exists). */
const makeDir = (dir: string) => {
  try {
    fs.mkdirSync(dir)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST" && fs.statSync(dir).isDirectory()) return
    fs.mkdirSync(dir, { recursive: true })
  }
}

/** Runs a clean-up action whose own failure must not hide the error being reported. */
const attempt = <A>(f: () => A, onError?: (e: unknown) => void): A | undefined => {
  try {
    return f()
  } catch (e) {
    onError?.(e)
    return undefined
  }
}


/** A dataset step that succeeded without writing anything: almost always a bug in the step. */
class EmptyOutput extends Data.TaggedError("EmptyOutput")<{ readonly step: string; readonly message: string }> {
  constructor(step: string) {
    super({ step, message: `step "${step}" finished but left its output empty: a dataset step must write its rows into its output directory` })
  }
}

const isEmptyDir = (dir: string): boolean =>
  !fs.readdirSync(dir, { recursive: true, withFileTypes: true }).some((e) => e.isFile())

/**
 * The spec's implementation part: TS steps run by kind; command steps get their argv now and run in the
 * recipe's directory (or their `cwd`, resolved from there), so relative paths in argv mean what they
 * mean for sources.
 */
const buildSpec = (step: PlannedStep, base: Omit<StepSpec, "implementation">, logPath: string, grant: Grant, recipeDir: string): StepSpec => {
  const impl = step.def.implementation
  if (impl.command === undefined) return { ...base, implementation: { type: "ts" } }
  const specPath = logPath.replace(/\.log$/, ".spec.json")
  const provisional: StepSpec = { ...base, implementation: { type: "command", argv: [], env: {} } }
  const cmd = impl.command({ params: step.decoded, specPath, step: step.id, gpus: grant.gpus, cpus: grant.cpus })
  const spec: StepSpec = {
    ...provisional,
    implementation: { type: "command", argv: cmd.argv, env: { ...cmd.env, ANNEAL_SPEC: specPath }, cwd: path.resolve(recipeDir, cmd.cwd ?? ".") }
  }
  fs.writeFileSync(specPath, JSON.stringify(spec, null, 2) + "\n")
  return spec
}

/**
 * `anneal run`, programmatically. This is the one orchestrator, and it is long because it is where the
 * pieces meet: the plan (plan.ts) says what is cached, the rebuilder (rebuilder.ts) decides per step as
 * upstream hashes become known, the resource pool (resources.ts) decides when a step may start, an
 * executor runs it, and the store commits it. Every step is one fiber that waits for the deferred
 * outcomes of what it needs, so independent branches run concurrently with no central loop.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execFileSync } from "node:child_process"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type { StepRecord } from "../cache/db.ts"
import type { RemoteConfig } from "../cache/remote/url.ts"
import type { Store } from "../cache/store.ts"
import { messageOf, UsageError } from "./errors.ts"
import type { EngineEvent, Reporter, RunEvent } from "./events.ts"
import { makeLocalExecutor } from "./executors/local.ts"
import type { GraphNode, PlannedStep } from "./graph.ts"
import { makeTrace, stepSeed } from "./keys.ts"
import type { Trace } from "./keys.ts"
import { fingerprint, inputHashes, openProject, planSteps, query, selectSteps, unknownStep } from "./plan.ts"
import type { Project } from "./plan.ts"
import { constructiveTraces } from "./rebuilder.ts"
import type { Rebuilder } from "./rebuilder.ts"
import { detectGpus, detectMemoryGb, ResourcePool } from "./resources.ts"
import type { Grant, Request } from "./resources.ts"
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

type Outcome = { readonly ok: true; readonly hash: string } | { readonly ok: false }

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

/** What a step asks of the pool; GPU shortfalls are resolved (CPU fallback or an error) before the run. */
export const requestOf = (step: PlannedStep): Request => {
  const r = typeof step.def.resources === "function" ? step.def.resources(step.decoded) : step.def.resources ?? {}
  return {
    cpus: step.node.options.cpus ?? r.cpus ?? 1,
    gpus: step.node.options.gpus ?? r.gpus ?? 0,
    memoryGb: step.node.options.memoryGb ?? r.memoryGb ?? 0
  }
}

const cpuFallbackAllowed = (step: PlannedStep): boolean => {
  const r = typeof step.def.resources === "function" ? step.def.resources(step.decoded) : step.def.resources ?? {}
  return r.cpuFallback !== false
}

export const runRecipe = async (options: RunOptions): Promise<RunSummary> => {
  const started = performance.now()
  // loaded only when used: the S3 client is no cost to a run without a remote
  const remote = options.remote === undefined ? undefined : await (await import("../cache/remote/sync.ts")).openRemoteRun(options.remote, options.reporter)
  const project = await openProject(options.recipe, { store: options.store, fresh: options.fresh ?? false }).catch(async (e: unknown) => {
    await remote?.close()
    throw e
  })
  const executor = options.executor ?? makeLocalExecutor()
  try {
    if (remote === undefined) return await runProject(project, { ...options, executor }, started)
    const reporter = await remote.restore(project, options)
    return await remote.finish(await runProject(project, { ...options, executor, reporter }, started))
  } finally {
    // the local executor's warm Python process lives as long as the run
    await executor.close?.()
    await remote?.close()
    project.store.close()
  }
}

const runProject = async (project: Project, options: RunOptions, started: number): Promise<RunSummary> => {
  const { graph, store, recipeId } = project
  /** steps that reported how they ended (ran, cached, failed, interrupted, skipped) */
  const settledSteps = new Set<string>()
  const emit = (e: EngineEvent) => {
    if (e.event === "step" || e.event === "skipped") settledSteps.add(e.step)
    options.reporter.emit(e)
  }
  const steps = selectSteps(graph, options.targets ?? [])
  const force = new Set(options.force ?? [])
  for (const f of force) if (!graph.byId.has(f)) throw unknownStep(graph, f)

  // resources, and GPU shortfalls decided before anything runs
  const gpus = await detectGpus(options.gpus)
  const pool = new ResourcePool({
    cpus: options.jobs ?? os.availableParallelism(),
    gpus,
    memoryGb: options.memoryGb ?? detectMemoryGb()
  })
  const requests = new Map<string, Request>()
  const onCpu: Array<string> = []
  for (const step of steps) {
    let r = requestOf(step)
    if (r.gpus > gpus.length) {
      const allowed = (options.allowCpu === true || step.node.options.allowCpu === true) && cpuFallbackAllowed(step)
      if (!allowed) {
        throw new UsageError({
          message: `step "${step.id}" needs ${r.gpus} GPU${r.gpus > 1 ? "s" : ""} but ${gpus.length === 0 ? "none are" : `only ${gpus.length} ${gpus.length === 1 ? "is" : "are"}`} available${gpus.length > 0 ? ` (${gpus.join(",")})` : ""}: pass --allow-cpu to run it on CPU, or --gpus to name devices`
        })
      }
      r = { ...r, gpus: 0 }
      onCpu.push(step.id)
    }
    requests.set(step.id, r)
  }

  // from here the run heartbeats and leases what it asks about; Store.close() releases it all
  store.beginRun({ verify: options.verify === true })
  store.db.recoverCrashed()
  store.sweepStaging()
  const plan = planSteps(project, steps, { force: [...force], rebuilder: options.rebuilder })
  const session = store.db.startSession(recipeId, options.argv ?? [])
  for (const w of plan.warnings) emit({ event: "log", step: null, level: "warn", message: w })
  // said once, not per step: a recipe that allows CPU (the demo) runs without --allow-cpu
  const toRunOnCpu = onCpu.filter((id) => plan.entries.some((e) => e.step === id && e.status !== "cached"))
  if (toRunOnCpu.length > 0) {
    emit({
      event: "log", step: null, level: "info",
      message: `${gpus.length === 0 ? "no GPU" : `${gpus.length} GPU${gpus.length > 1 ? "s" : ""}`}: running ${toRunOnCpu.join(", ")} on CPU`
    })
  }
  for (const e of plan.entries) {
    emit({ event: "planned", step: e.step, kind: e.kind, status: e.status, reasons: e.reasons, needs: e.needs })
  }

  const plannedById = new Map(plan.entries.map((e) => [e.step, e]))
  const executor = options.executor ?? makeLocalExecutor()
  const rebuild = options.rebuilder ?? constructiveTraces
  const records = store.db.stepRecords(recipeId)
  const outputs = new Map<string, string>()
  const counts = { ran: 0, cached: 0, failed: 0, interrupted: 0, skipped: 0, saved: 0 }
  let stopNew = false
  let revision: string | null | undefined

  const deferreds = new Map<string, Deferred.Deferred<Outcome>>()
  for (const s of steps) deferreds.set(s.id, Deferred.makeUnsafe<Outcome>())

  const skip = (step: PlannedStep, because: string): Outcome => {
    counts.skipped++
    emit({ event: "skipped", step: step.id, kind: step.def.kind, because })
    return { ok: false }
  }

  const record = (step: PlannedStep, key: string, trace: Trace, output: string, seconds: number, runId: number | null, prev: StepRecord | undefined) => {
    const rec: StepRecord = {
      recipe: recipeId,
      step: step.id,
      kind: step.def.kind,
      key,
      trace: JSON.stringify(trace),
      output,
      run_id: runId,
      built_session: session,
      changed_session: prev !== undefined && prev.output === output ? prev.changed_session : session,
      seconds,
      fingerprint: fingerprint(step.def)
    }
    store.db.putStep(rec)
    return rec
  }

  const settleCached = (step: PlannedStep, key: string, trace: Trace, output: string, seconds: number, restored: boolean): Outcome => {
    const prev = records.get(step.id)
    if (prev === undefined || prev.key !== key || prev.output !== output) {
      store.db.transaction(() => {
        record(step, key, trace, output, seconds, store.db.result(key)?.run_id ?? null, prev)
        store.db.touchArtifact(output)
      })
    }
    counts.cached++
    counts.saved += seconds
    outputs.set(step.id, output)
    emit({ event: "step", step: step.id, kind: step.def.kind, status: "cached", key, output, seconds: 0, restored: restored || undefined })
    return { ok: true, hash: output }
  }

  /** Holds the cross-process build lock of a key; another process building it makes us wait. The body
   * learns whether we waited: only then can the key have been built since the rebuilder decided. */
  const withLock = <A, E>(step: PlannedStep, key: string, body: (waited: boolean) => Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.gen(function* () {
      let announced = false
      for (;;) {
        const holder = store.db.tryLock(key, step.id, recipeId)
        if (holder === null) break
        if (!announced) {
          announced = true
          emit({ event: "waiting", step: step.id, reason: `waiting for pid ${holder.pid} (${holder.recipe}, step ${holder.step}), which is building the same key` })
        }
        yield* Effect.sleep("200 millis")
      }
      return yield* body(announced)
    }).pipe(Effect.ensuring(Effect.sync(() => store.db.unlock(key))))

  /** Runs one step into staging and commits it. Whatever goes wrong, the step settles once: ran, failed
   * (with the message; the cause goes to its log) or interrupted (only when the cause is interrupts alone). */
  const execute = (step: PlannedStep, key: string, trace: Trace, grant: Grant): Effect.Effect<Outcome> => {
    const t0 = performance.now()
    const seconds = () => (performance.now() - t0) / 1000
    let phase: "prepare" | "run" | "commit" = "prepare"
    let staging: string | undefined
    let runId: number | undefined
    let logPath: string | undefined
    // set once the step is recorded as ran: an interrupt that arrived during the (uninterruptible)
    // commit then ends the run, but must not also record this step as interrupted
    let settled = false
    const cleanUp = (status: "failed" | "interrupted", error: string) => {
      if (staging !== undefined) attempt(() => store.discard(staging!))
      if (runId !== undefined) attempt(() => store.db.finishRun(runId!, { status, seconds: seconds(), output: null, metrics: {}, error }))
    }
    const fail = (cause: Cause.Cause<unknown>): Outcome => {
      const error = Cause.squash(cause)
      const message = error instanceof StepExecutionError || error instanceof EmptyOutput ? error.message
        : phase === "prepare" ? `could not prepare the step: ${messageOf(error)}`
        : phase === "commit" ? `could not commit the output: ${messageOf(error)}`
        : messageOf(error)
      if (logPath !== undefined) attempt(() => fs.appendFileSync(logPath!, `[error] ${message}\n${Cause.pretty(cause)}\n`))
      cleanUp("failed", message)
      counts.failed++
      if (options.keepGoing !== true) stopNew = true
      emit({ event: "step", step: step.id, kind: step.def.kind, status: "failed", key, output: null, seconds: seconds(), error: message })
      return { ok: false }
    }
    const body = Effect.suspend(() => {
      staging = store.newStaging(key)
      const resumeDir = store.resumeDir(key)
      fs.mkdirSync(resumeDir, { recursive: true })
      logPath = store.logPath(session, step.id)
      runId = store.db.startRun({ session, recipe: recipeId, step: step.id, kind: step.def.kind, key, logPath, trace: JSON.stringify(trace), gpus: grant.gpus })
      const inputs: Record<string, string | ReadonlyArray<string>> = {}
      const pathOf = (n: GraphNode) => (n._tag === "source" ? n.path : store.artifactPath(outputs.get(n.id)!))
      for (const [port, node] of Object.entries(step.inputs)) {
        inputs[port] = Array.isArray(node) ? (node as ReadonlyArray<GraphNode>).map(pathOf) : pathOf(node as GraphNode)
      }
      const base: Omit<StepSpec, "implementation"> = {
        specVersion: 1,
        runId,
        step: step.id,
        kind: step.def.kind,
        version: step.def.version,
        key,
        params: step.params,
        inputs,
        inputHashes: trace.inputs,
        output: staging,
        resumeDir,
        logPath,
        devices: { gpus: grant.gpus, cpus: Math.max(1, grant.cpus), memoryGb: grant.memoryGb || undefined },
        seed: stepSeed(step),
        recipe: graph.recipe
      }
      const spec = buildSpec(step, base, logPath, grant, path.dirname(graph.recipe))
      fs.closeSync(fs.openSync(logPath, "a")) // a log name the filesystem refuses fails here, while preparing
      emit({ event: "started", step: step.id, kind: step.def.kind, key, gpus: grant.gpus, log: logPath })
      phase = "run"
      return executor.run(spec, emit).pipe(
        // the commit hashes on worker threads (cache/hash.ts), so events keep flowing meanwhile; like the
        // synchronous commit it replaced, it is not cut short by an interrupt once started
        Effect.flatMap((result) => Effect.uninterruptible(Effect.promise(async () => {
            phase = "commit"
            if (step.def.output.kind === "dataset" && isEmptyDir(spec.output)) throw new EmptyOutput(step.id)
            // asked once per run: `??=` would ask again after every null (a recipe outside git), a
            // `git` process per step that cost an executed no-op step 40 ms
            if (revision === undefined) revision = gitRevision(path.dirname(graph.recipe))
            return { committed: await store.commit(spec.output, step.def.output.kind, {
              step: step.id,
              recipe: recipeId,
              version: step.def.version,
              key,
              params: step.params,
              inputs: trace.inputs,
              seed: spec.seed,
              devices: { gpus: grant.gpus, cpus: grant.cpus, host: os.hostname() },
              versions: { anneal: annealVersion, node: process.versions.node },
              git: revision,
              created: new Date().toISOString()
            }) }
          }).pipe(Effect.map(({ committed }): Outcome => {
            staging = undefined // renamed into the store (or dropped as a duplicate)
            settled = true
            const secs = seconds()
            store.db.transaction(() => {
              store.db.putArtifact({ hash: committed.hash, kind: step.def.output.kind, bytes: committed.bytes, files: committed.files })
              store.db.finishRun(runId!, { status: "ran", seconds: secs, output: committed.hash, metrics: result.metrics, error: null })
              store.db.putResult(key, committed.hash, runId!, secs)
              records.set(step.id, record(step, key, trace, committed.hash, secs, runId!, records.get(step.id)))
            })
            attempt(() => fs.rmSync(resumeDir, { recursive: true, force: true }))
            counts.ran++
            outputs.set(step.id, committed.hash)
            emit({ event: "step", step: step.id, kind: step.def.kind, status: "ran", key, output: committed.hash, seconds: secs })
            return { ok: true, hash: committed.hash }
          }))))
      )
    })
    return body.pipe(
      // interrupts alone carry no error value, hence the cast
      Effect.catchCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause as Cause.Cause<never>) : Effect.sync(() => fail(cause)))),
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          if (settled) return
          cleanUp("interrupted", "interrupted")
          counts.interrupted++
          emit({ event: "step", step: step.id, kind: step.def.kind, status: "interrupted", key, output: null, seconds: seconds() })
        })
      )
    )
  }

  const failOutside = (step: PlannedStep, key: string, cause: Cause.Cause<unknown>): Outcome => {
    const message = messageOf(Cause.squash(cause))
    counts.failed++
    if (options.keepGoing !== true) stopNew = true
    emit({ event: "log", step: step.id, level: "error", message: Cause.pretty(cause) })
    emit({ event: "step", step: step.id, kind: step.def.kind, status: "failed", key, output: null, seconds: 0, error: message })
    return { ok: false }
  }

  const runStep = (step: PlannedStep): Effect.Effect<void> =>
    Effect.gen(function* () {
      const done = deferreds.get(step.id)!
      let key = "" // known once the inputs are
      const outcome = yield* Effect.gen(function* () {
        for (const need of step.needs) {
          const o = yield* Deferred.await(deferreds.get(need)!)
          if (!o.ok) return skip(step, `${need} did not succeed`)
        }
        const planned = plannedById.get(step.id)
        if (planned?.decision?.action === "cached" && planned.key !== undefined && planned.trace !== undefined) {
          // decided while planning, from the same (cached) inputs: nothing to recompute
          const d = planned.decision
          return settleCached(step, planned.key, planned.trace, d.output, d.seconds, d.restored)
        }
        const hashes = inputHashes(step, outputs, plan.sources)!
        const trace = makeTrace(step, hashes)
        const q = query(step, trace, records.get(step.id), store, force.has(step.id))
        key = q.key
        const decision = rebuild(q)
        if (decision.action === "cached") return settleCached(step, q.key, trace, decision.output, decision.seconds, decision.restored)
        if (stopNew) return skip(step, "the run stopped after a failure (use --keep-going to run independent steps)")
        return yield* withLock(
          step,
          q.key,
          (waited) => Effect.suspend(() => {
            // another process may have built this key while we waited for the lock (otherwise the
            // rebuilder's decision to run stands, even for a key built before)
            const again = force.has(step.id) || !waited ? undefined : store.db.result(q.key)
            if (again !== undefined && store.has(again.output)) {
              return Effect.succeed(settleCached(step, q.key, trace, again.output, again.seconds, true))
            }
            return pool.withResources(requests.get(step.id)!, (grant) =>
              stopNew ? Effect.succeed(skip(step, "the run stopped after a failure")) : execute(step, q.key, trace, grant))
          })
        )
      }).pipe(
        // a throw outside execute (the database, the rebuilder, a lock) still settles the step as failed
        Effect.catchCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : Effect.sync(() => failOutside(step, key, cause)))),
        // a step still waiting for its inputs when the run is interrupted says so: it was skipped
        Effect.onInterrupt(() =>
          Effect.sync(() => settledSteps.has(step.id) || skip(step, "the run was interrupted")).pipe(
            Effect.andThen(Deferred.succeed(done, { ok: false })),
            Effect.asVoid
          ))
      )
      yield* Deferred.succeed(done, outcome)
    })

  const program = Effect.forEach(steps, runStep, { concurrency: "unbounded", discard: true })
  const exit = await Effect.runPromiseExit(program, { signal: options.signal })
  // steps settle every failure themselves, so only interruption (or an engine bug, said aloud) ends here
  const interrupted = Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
  if (Exit.isFailure(exit) && !interrupted) {
    counts.failed++
    emit({ event: "log", step: null, level: "error", message: Cause.pretty(exit.cause) })
  }
  const summary: RunSummary = {
    ...counts,
    seconds: (performance.now() - started) / 1000,
    exitCode: counts.failed > 0 || counts.interrupted > 0 || interrupted ? 1 : 0,
    session,
    outputs,
    storeRoot: store.root
  }
  attempt(() => store.db.endSession(session, interrupted ? "interrupted" : summary.exitCode === 0 ? "ok" : "failed"), (e) =>
    emit({ event: "log", step: null, level: "error", message: `could not record the end of the run: ${messageOf(e)}` }))
  const runEvent: EngineEvent = {
    event: "run",
    ran: counts.ran,
    cached: counts.cached,
    failed: counts.failed,
    interrupted: counts.interrupted,
    skipped: counts.skipped,
    seconds: Math.round(summary.seconds * 1000) / 1000,
    saved: Math.round(counts.saved * 1000) / 1000,
    storeBytes: attempt(() => store.bytes()),
    runDir: path.join(store.logsDir, String(session))
  }
  emit(runEvent)
  return summary
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
class EmptyOutput extends Error {
  readonly _tag = "EmptyOutput"
  constructor(readonly step: string) {
    super(`step "${step}" finished but left its output empty: a dataset step must write its rows into its output directory`)
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

/**
 * The scheduler: in which order steps are built and how many at once, and nothing of what a build does.
 * Every step is one fiber that waits for the outcomes of the steps it needs, so independent branches run
 * concurrently with no central loop; a step whose need did not succeed is not built. How many run at
 * once is the resource pool's business (engine/resources.ts): a build that decides to run its step holds
 * the step's whole request (a gang of processes included) while it runs. What a build does (decide,
 * execute, commit) is engine/run.ts's `build`, handed in as a function, the split "Build systems a la
 * carte" makes between a scheduler and a rebuilder.
 */
import * as os from "node:os"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import { UsageError } from "./errors.ts"
import type { PlannedStep } from "./graph.ts"
import { detectGpus, detectMemoryGb, ResourcePool } from "./resources.ts"
import type { Grant, Request } from "./resources.ts"

/** How a step ended, as the steps that need it see it. */
export type Outcome = { readonly ok: true; readonly hash: string } | { readonly ok: false }

/**
 * Holds the step's resources while `use` runs: all of them at once, or it waits holding nothing. `use`
 * may give them back before it ends (`release`): once the step's process is done, its commit needs none.
 */
export type Hold = <A, E>(use: (grant: Grant, release: () => void) => Effect.Effect<A, E>) => Effect.Effect<A, E>

export interface Schedule<S> {
  readonly steps: ReadonlyArray<S>
  /** outcomes of needs settled before scheduling (steps planned as cached), which are not in `steps` */
  readonly settled?: ReadonlyMap<string, Outcome> | undefined
  readonly pool: ResourcePool
  readonly request: (step: S) => Request
  /** builds a step whose needs all succeeded; settles every failure itself (fails only by interruption) */
  readonly build: (step: S, hold: Hold) => Effect.Effect<Outcome>
  /** a need did not succeed: the step is not built */
  readonly blocked: (step: S, need: string) => Outcome
  /** the run was interrupted while the step waited for its needs or its resources (and had not settled) */
  readonly interrupted: (step: S) => void
}

/** Builds every step once its needs succeeded; ends when all have settled, or when interrupted. */
export const schedule = <S extends { readonly id: string; readonly needs: ReadonlyArray<string> }>(
  s: Schedule<S>
): Effect.Effect<void> => {
  const outcomes = new Map<string, Deferred.Deferred<Outcome>>()
  for (const step of s.steps) outcomes.set(step.id, Deferred.makeUnsafe<Outcome>())
  const one = (step: S): Effect.Effect<void> => {
    const done = outcomes.get(step.id)!
    const hold: Hold = (use) => s.pool.withResources(s.request(step), use)
    return Effect.gen(function* () {
      for (const need of step.needs) {
        const o = s.settled?.get(need) ?? (yield* Deferred.await(outcomes.get(need)!))
        if (!o.ok) return s.blocked(step, need)
      }
      return yield* s.build(step, hold)
    }).pipe(
      Effect.flatMap((outcome) => Deferred.succeed(done, outcome)),
      Effect.onInterrupt(() =>
        Effect.sync(() => s.interrupted(step)).pipe(Effect.andThen(Deferred.succeed(done, { ok: false })))),
      Effect.asVoid
    )
  }
  return Effect.forEach(s.steps, one, { concurrency: "unbounded", discard: true })
}

/** What a step asks of the pool, in total over its processes; GPU shortfalls are resolved by `stepRequests`. */
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

export interface MachineOptions {
  /** CPU slots (default: the number of cores) */
  readonly jobs?: number | undefined
  /** GPU ids to use (default: CUDA_VISIBLE_DEVICES, else nvidia-smi) */
  readonly gpus?: ReadonlyArray<number> | undefined
  readonly memoryGb?: number | undefined
}

/** The pool of this machine (or the caps a cluster executor gives in its place). */
export const machinePool = async (options: MachineOptions): Promise<ResourcePool> =>
  new ResourcePool({
    cpus: options.jobs ?? os.availableParallelism(),
    gpus: await detectGpus(options.gpus),
    memoryGb: options.memoryGb ?? detectMemoryGb()
  })

/**
 * Each step's request, with GPU shortfalls decided before anything runs: a step that wants more GPUs than
 * the pool has runs on CPU when allowed (`--allow-cpu`, the call's allowCpu, and its kind's cpuFallback),
 * else the run stops with a UsageError naming the step. `onCpu` lists the steps moved to CPU.
 */
export const stepRequests = (
  steps: ReadonlyArray<PlannedStep>,
  gpus: ReadonlyArray<number>,
  allowCpu: boolean
): { readonly requests: ReadonlyMap<string, Request>; readonly onCpu: ReadonlyArray<string> } => {
  const requests = new Map<string, Request>()
  const onCpu: Array<string> = []
  for (const step of steps) {
    let r = requestOf(step)
    if (r.gpus > gpus.length) {
      const allowed = (allowCpu || step.node.options.allowCpu === true) && cpuFallbackAllowed(step)
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
  return { requests, onCpu }
}

/**
 * Planning: open the project's store, hash the sources, and decide for every step whether it is cached,
 * stale (with reasons) or waiting on a stale step. `anneal plan` prints this; `anneal run` starts from it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { recordsWithOutputs } from "../cache/db.ts"
import type { StepRecord } from "../cache/db.ts"
import { Store } from "../cache/store.ts"
import type { PresenceScan } from "../cache/presence-scan.ts"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import { badInputOf, UsageError } from "./errors.ts"
import type { BadInput } from "./errors.ts"
import { sha256 } from "../cache/hash.ts"
import { decide, presence } from "./decide.ts"
import type { Graph, PlannedStep, SourceNode } from "./graph.ts"
import { diffTraces, makeTrace } from "./keys.ts"
import type { Trace } from "./keys.ts"
import { loadRecipe } from "./load.ts"
import { checkSource } from "./source-check.ts"
import { constructiveTraces } from "./rebuilder.ts"
import type { Decision, Rebuilder } from "./rebuilder.ts"
import type { StepDefinition } from "./step.ts"
import type { PlanStatus } from "./events.ts"

export { inputHashes, query } from "./decide.ts"

/** The directory a recipe belongs to: the nearest ancestor with a package.json or .git. */
export const projectRootOf = (file: string): string => {
  let dir = path.dirname(path.resolve(file))
  for (;;) {
    if (fs.existsSync(path.join(dir, "package.json")) || fs.existsSync(path.join(dir, ".git"))) return dir
    const up = path.dirname(dir)
    if (up === dir) return path.dirname(path.resolve(file))
    dir = up
  }
}

export interface Project {
  readonly graph: Graph
  readonly store: Store
  /** the recipe's path relative to its project root: how the cache names it */
  readonly recipeId: string
  /** the presence scan started while the recipe loaded, for the first plan (closed by planSteps) */
  readonly scan?: PresenceScan | undefined
}

type OpenOptions = {
  store?: string | undefined
  fresh?: boolean
  /** check the recorded outputs on a worker thread while the recipe loads (not under run --verify) */
  scan?: boolean
}

/**
 * Loads the recipe and opens its store. A bad recipe (RecipeError, SourceError, UsageError) or a store
 * that cannot be opened (CacheError) is in the error channel; the caller closes the store (and the scan).
 */
export const openProjectEffect = (recipe: string, options: OpenOptions): Effect.Effect<Project, BadInput> =>
  Effect.suspend(() => {
    const storeRootOf = (root: string) => (options.store !== undefined ? path.resolve(options.store) : path.join(root, ".anneal"))
    // where the recipe's store and records are is known from its path: the scan starts before it loads
    const file = path.resolve(recipe)
    const fileRoot = options.scan === true ? projectRootOf(file) : undefined
    const scan = fileRoot === undefined ? undefined : Store.scan(storeRootOf(fileRoot), path.relative(fileRoot, file))
    return Effect.gen(function* () {
      const graph = yield* badInputOf(() => loadRecipe(recipe, { fresh: options.fresh ?? false }))
      const root = projectRootOf(graph.recipe)
      const store = yield* Store.make(storeRootOf(root))
      return { graph, store, recipeId: path.relative(root, graph.recipe), scan }
    }).pipe(Effect.onError(() => Effect.sync(() => scan?.close())))
  })

export const openProject = (recipe: string, options: OpenOptions): Promise<Project> =>
  Effect.runPromise(openProjectEffect(recipe, options))

/** The named steps and everything they need (all steps when none are named). */
export const selectSteps = (graph: Graph, targets: ReadonlyArray<string>): ReadonlyArray<PlannedStep> => {
  if (targets.length === 0) return graph.steps
  const wanted = new Set<string>()
  const visit = (id: string) => {
    if (wanted.has(id)) return
    wanted.add(id)
    for (const d of graph.byId.get(id)!.needs) visit(d)
  }
  for (const t of targets) {
    if (!graph.byId.has(t)) throw unknownStep(graph, t)
    visit(t)
  }
  return graph.steps.filter((s) => wanted.has(s.id))
}

export const unknownStep = (graph: Graph, id: string): UsageError =>
  new UsageError({
    message: `no step "${id}" in ${path.relative(process.cwd(), graph.recipe)} (steps: ${graph.steps.map((s) => s.id).slice(0, 12).join(", ")}${graph.steps.length > 12 ? ", ..." : ""})`
  })

/**
 * Each source the steps read, with the first step (in step order) that reads it: a source read by many
 * steps is checked once, for that step, whose id an error names.
 */
const firstReaders = (steps: ReadonlyArray<PlannedStep>): Array<readonly [PlannedStep, SourceNode]> => {
  const seen = new Set<SourceNode>()
  const pairs: Array<readonly [PlannedStep, SourceNode]> = []
  for (const s of steps) {
    for (const src of s.sources) {
      if (seen.has(src)) continue
      seen.add(src)
      pairs.push([s, src])
    }
  }
  return pairs
}

/**
 * Content hashes of the sources the selected steps read, hashed on the store's worker threads (stat-cached),
 * so the event loop (and the live view) keeps going while a large source is read. A bad source is the
 * same error `hashSources` gives: the first in step order.
 */
export const hashSourcesEffect = (store: Store, steps: ReadonlyArray<PlannedStep>): Effect.Effect<Map<string, string>, BadInput> =>
  Effect.gen(function* () {
    const paths: Array<string> = []
    for (const [s, src] of firstReaders(steps)) {
      yield* badInputOf(() => checkSource(s, src))
      if (!paths.includes(src.path)) paths.push(src.path)
    }
    // all hashed at once; each settles before the first failure (in step order) is reported
    const hashed = yield* Effect.forEach(paths, (p) => Effect.result(store.hashSourceEffect(p)), { concurrency: "unbounded" })
    const hashes = new Map<string, string>()
    for (const [i, h] of hashed.entries()) {
      if (Result.isFailure(h)) return yield* Effect.fail(h.failure)
      hashes.set(paths[i]!, h.success.hash)
    }
    return hashes
  })

export const hashSourcesOffThread = (store: Store, steps: ReadonlyArray<PlannedStep>): Promise<Map<string, string>> =>
  Effect.runPromise(hashSourcesEffect(store, steps))

/** Content hashes of the sources the selected steps read (stat-cached). */
export const hashSources = (store: Store, steps: ReadonlyArray<PlannedStep>): Map<string, string> => {
  const hashes = new Map<string, string>()
  for (const [s, src] of firstReaders(steps)) {
    checkSource(s, src)
    if (!hashes.has(src.path)) hashes.set(src.path, store.hashSource(src.path).hash)
  }
  return hashes
}

/** Fingerprint of a kind's implementation, to warn when it changed but its version did not. */
export const fingerprint = (def: StepDefinition): string => {
  let f = fingerprints.get(def)
  if (f === undefined) fingerprints.set(def, (f = computeFingerprint(def)))
  return f
}
const fingerprints = new WeakMap<StepDefinition, string>()

const computeFingerprint = (def: StepDefinition): string => {
  const impl = def.implementation
  const parts = [String(impl.run ?? impl.command)]
  for (const f of def.sourceFiles ?? []) {
    try {
      parts.push(fs.readFileSync(f, "utf8"))
    } catch {
      parts.push(`missing ${f}`)
    }
  }
  return sha256(parts.join("\0")).slice(0, 16)
}

export const versionWarning = (step: PlannedStep, record: StepRecord | undefined): string | undefined => {
  if (record === undefined || record.fingerprint === null || record.kind !== step.def.kind) return undefined
  if (record.fingerprint === fingerprint(step.def)) return undefined
  const trace = JSON.parse(record.trace) as Trace
  if (trace.version !== step.def.version) return undefined
  return `step "${step.id}": the implementation of kind "${step.def.kind}" changed since it last ran, but its version is still ${step.def.version}; bump \`version\` in defineStep if outputs can change (cached results are being reused)`
}

export interface PlanEntry {
  readonly step: string
  readonly kind: string
  readonly status: PlanStatus
  readonly reasons: ReadonlyArray<string>
  readonly needs: ReadonlyArray<string>
  readonly key: string | undefined
  readonly output: string | undefined
  readonly decision: Decision | undefined
  readonly trace: Trace | undefined
}

type PlanOptions = {
  force?: ReadonlyArray<string>
  rebuilder?: Rebuilder
  /** the sources' hashes, when the caller has them (hashSourcesOffThread); else hashed here */
  sources?: ReadonlyMap<string, string>
}
type Plan = {
  entries: ReadonlyArray<PlanEntry>
  sources: ReadonlyMap<string, string>
  warnings: ReadonlyArray<string>
  /** the recipe's step records the plan was made from (read once: a run goes on updating them) */
  records: Map<string, StepRecord>
}

/**
 * Statuses for the selected steps without running anything. In a run, the leases on what the plan
 * found present are taken in one transaction after the checks (one write per artifact made a 10,000-step
 * null rerun seconds slower); if gc removed one in between, the plan is made again, leasing as it goes.
 */
export const planSteps = (project: Project, steps: ReadonlyArray<PlannedStep>, options: PlanOptions = {}): Plan => {
  project.store.deferLeases()
  let first: Plan
  try {
    first = planOnce(project, steps, options, project.scan)
  } finally {
    // its verdicts describe the store as it was before this plan: none serves another
    project.scan?.close()
  }
  return project.store.confirmLeases().length === 0 ? first : planOnce(project, steps, options, undefined)
}

const planOnce = (project: Project, steps: ReadonlyArray<PlannedStep>, options: PlanOptions, scan: PresenceScan | undefined): Plan => {
  const { store, recipeId } = project
  const sources = options.sources ?? hashSources(store, steps)
  // the recorded outputs' rows come with the records, in one query (the presence scan's, when its rows
  // are in: it read them while the recipe loaded)
  const scanned = scan?.takeRows()
  const { records, outputs: recorded } = scanned !== undefined ? recordsWithOutputs(recipeId, scanned) : store.db.stepRecordsWithOutputs(recipeId)
  const ctx = {
    store,
    records,
    force: new Set(options.force ?? []),
    rebuild: options.rebuilder ?? constructiveTraces,
    present: presence(store),
    sources
  }
  const outputs = new Map<string, string>()
  const stale = new Set<string>()
  const warnings: Array<string> = []
  const entries = store.withPrefetch(recorded, () => steps.map((step): PlanEntry => {
    const record = ctx.records.get(step.id)
    const w = versionWarning(step, record)
    if (w !== undefined) warnings.push(w)
    const needs = step.needs
    const d = needs.some((n) => stale.has(n)) ? { waiting: true as const } : decide(ctx, step, outputs)
    if (d.waiting) {
      stale.add(step.id)
      const waitingFor = needs.filter((n) => stale.has(n))
      const own = record === undefined ? ["never run"] : diffOwn(step, record)
      return {
        step: step.id,
        kind: step.def.kind,
        status: "waiting",
        reasons: [`waits for ${waitingFor.join(", ")}`, ...own],
        needs,
        key: undefined,
        output: undefined,
        decision: undefined,
        trace: undefined
      }
    }
    const { decision, key, trace } = d
    if (decision.action === "cached") {
      outputs.set(step.id, decision.output)
      return { step: step.id, kind: step.def.kind, status: "cached", reasons: decision.reasons, needs, key, output: decision.output, decision, trace }
    }
    stale.add(step.id)
    return { step: step.id, kind: step.def.kind, status: "stale", reasons: decision.reasons, needs, key, output: undefined, decision, trace }
  }), scan)
  return { entries, sources, warnings, records: ctx.records }
}

/** Differences a waiting step already shows in its own params or version (inputs are not known yet). */
const diffOwn = (step: PlannedStep, record: StepRecord): Array<string> => {
  const cur = makeTrace(step, {})
  return diffTraces(JSON.parse(record.trace) as Trace, { kind: cur.kind, version: cur.version, params: cur.params })
}

/**
 * Planning: open the project's store, hash the sources, and decide for every step whether it is cached,
 * stale (with reasons) or waiting on a stale step. `anneal plan` prints this; `anneal run` starts from it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { StepRecord } from "../cache/db.ts"
import { Store } from "../cache/store.ts"
import { UsageError } from "./errors.ts"
import type { Graph, GraphNode, PlannedStep } from "./graph.ts"
import { sha256 } from "../cache/hash.ts"
import { diffTraces, makeTrace, traceKey } from "./keys.ts"
import type { Trace } from "./keys.ts"
import { loadRecipe } from "./load.ts"
import { checkSource } from "./source-check.ts"
import { constructiveTraces } from "./rebuilder.ts"
import type { Decision, Rebuilder, RebuildQuery } from "./rebuilder.ts"
import type { StepDefinition } from "./step.ts"
import type { PlanStatus } from "./events.ts"

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
}

export const openProject = async (recipe: string, options: { store?: string | undefined; fresh?: boolean }): Promise<Project> => {
  const graph = await loadRecipe(recipe, { fresh: options.fresh ?? false })
  const root = projectRootOf(graph.recipe)
  const store = Store.open(options.store !== undefined ? path.resolve(options.store) : path.join(root, ".anneal"))
  return { graph, store, recipeId: path.relative(root, graph.recipe) }
}

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

/** Content hashes of the sources the selected steps read (stat-cached). */
export const hashSources = (store: Store, steps: ReadonlyArray<PlannedStep>): Map<string, string> => {
  const hashes = new Map<string, string>()
  for (const s of steps) {
    for (const src of s.sources) {
      checkSource(s, src)
      if (!hashes.has(src.path)) hashes.set(src.path, store.hashSource(src.path).hash)
    }
  }
  return hashes
}

/** Input port -> artifact hash(es), or undefined while some upstream output is unknown. */
export const inputHashes = (
  step: PlannedStep,
  outputs: ReadonlyMap<string, string>,
  sources: ReadonlyMap<string, string>
): Record<string, string | ReadonlyArray<string>> | undefined => {
  const of = (n: GraphNode): string | undefined => (n._tag === "source" ? sources.get(n.path) : outputs.get(n.id))
  const result: Record<string, string | ReadonlyArray<string>> = {}
  for (const [port, node] of Object.entries(step.inputs)) {
    if (Array.isArray(node)) {
      const hs = (node as ReadonlyArray<GraphNode>).map(of)
      if (hs.some((h) => h === undefined)) return undefined
      result[port] = hs as Array<string>
    } else {
      const h = of(node as GraphNode)
      if (h === undefined) return undefined
      result[port] = h
    }
  }
  return result
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

export const query = (
  step: PlannedStep,
  trace: Trace,
  record: StepRecord | undefined,
  store: Store,
  forced: boolean,
  present: (hash: string) => boolean = (h) => store.has(h)
): RebuildQuery => {
  const key = traceKey(trace)
  return {
    step,
    trace,
    key,
    record,
    forced,
    result: store.db.result(key),
    present,
    damage: (h) => store.problem(h)
  }
}

type PlanOptions = { force?: ReadonlyArray<string>; rebuilder?: Rebuilder }
type Plan = { entries: ReadonlyArray<PlanEntry>; sources: Map<string, string>; warnings: ReadonlyArray<string> }

/**
 * Statuses for the selected steps without running anything. In a run, the leases on what the plan
 * found present are taken in one transaction after the checks (one write per artifact made a 10,000-step
 * null rerun seconds slower); if gc removed one in between, the plan is made again, leasing as it goes.
 */
export const planSteps = (project: Project, steps: ReadonlyArray<PlannedStep>, options: PlanOptions = {}): Plan => {
  project.store.deferLeases()
  const first = planOnce(project, steps, options)
  return project.store.confirmLeases().length === 0 ? first : planOnce(project, steps, options)
}

const planOnce = (project: Project, steps: ReadonlyArray<PlannedStep>, options: PlanOptions): Plan => {
  const { store, recipeId } = project
  const rebuild = options.rebuilder ?? constructiveTraces
  const force = new Set(options.force ?? [])
  const sources = hashSources(store, steps)
  const records = store.db.stepRecords(recipeId)
  const outputs = new Map<string, string>()
  const stale = new Set<string>()
  const warnings: Array<string> = []
  // present = recorded and matching its manifest (a stat per file, cache/manifest.ts); in a run, the
  // store leases each artifact before checking it, so a concurrent `cache gc` cannot take it afterwards
  const checked = new Map<string, boolean>()
  const present = (h: string) => {
    let ok = checked.get(h)
    if (ok === undefined) checked.set(h, (ok = store.has(h)))
    return ok
  }
  const entries = steps.map((step): PlanEntry => {
    const record = records.get(step.id)
    const w = versionWarning(step, record)
    if (w !== undefined) warnings.push(w)
    const needs = step.needs
    const hashes = inputHashes(step, outputs, sources)
    if (hashes === undefined || needs.some((n) => stale.has(n))) {
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
    const trace = makeTrace(step, hashes)
    const q = query(step, trace, record, store, force.has(step.id), present)
    const decision = rebuild(q)
    if (decision.action === "cached") {
      outputs.set(step.id, decision.output)
      return { step: step.id, kind: step.def.kind, status: "cached", reasons: decision.reasons, needs, key: q.key, output: decision.output, decision, trace }
    }
    stale.add(step.id)
    return { step: step.id, kind: step.def.kind, status: "stale", reasons: decision.reasons, needs, key: q.key, output: undefined, decision, trace }
  })
  return { entries, sources, warnings }
}

/** Differences a waiting step already shows in its own params or version (inputs are not known yet). */
const diffOwn = (step: PlannedStep, record: StepRecord): Array<string> => {
  const cur = makeTrace(step, {})
  return diffTraces(JSON.parse(record.trace) as Trace, { kind: cur.kind, version: cur.version, params: cur.params })
}

/**
 * The one decision for a step, made by `anneal plan` and by `anneal run` alike: its inputs' hashes
 * -> its trace -> what the store knows of the trace's key (the query) -> the rebuilder's verdict
 * (cached, or run and why). Planning asks it before anything runs, where a step whose upstream is stale
 * is still waiting; the run asks again once the upstream outputs are known.
 */
import type { StepRecord } from "../cache/db.ts"
import type { Store } from "../cache/store.ts"
import type { GraphNode, PlannedStep } from "./graph.ts"
import { keyOf, makeTrace, traceText } from "./keys.ts"
import type { Trace } from "./keys.ts"
import type { Decision, Rebuilder, RebuildQuery } from "./rebuilder.ts"

/** Input port -> artifact hash(es), or undefined while some upstream output is unknown. */
export const inputHashes = (
  step: PlannedStep,
  outputs: ReadonlyMap<string, string>,
  sources: ReadonlyMap<string, string>
): Record<string, string | ReadonlyArray<string>> | undefined => {
  const of = (n: GraphNode): string | undefined => (n._tag === "source" ? sources.get(n.path) : outputs.get(n.id))
  const result: Record<string, string | ReadonlyArray<string>> = {}
  // indexed loops: a plan calls this for every step, mostly before V8 optimises it
  const ports = Object.keys(step.inputs)
  for (let p = 0; p < ports.length; p++) {
    const port = ports[p]!
    const node = step.inputs[port]!
    if (Array.isArray(node)) {
      const list = node as ReadonlyArray<GraphNode>
      const hs = new Array<string>(list.length)
      for (let i = 0; i < list.length; i++) {
        const h = of(list[i]!)
        if (h === undefined) return undefined
        hs[i] = h
      }
      result[port] = hs
    } else {
      const h = of(node as GraphNode)
      if (h === undefined) return undefined
      result[port] = h
    }
  }
  return result
}

/** What the store knows of one trace: the rebuilder's whole input. */
export const query = (
  step: PlannedStep,
  trace: Trace,
  record: StepRecord | undefined,
  store: Store,
  forced: boolean,
  present: (hash: string) => boolean = (h) => store.has(h)
): RebuildQuery => {
  // a record stores its trace's text and its key: the same text is the same key, without hashing
  // again (10,000 sha256 calls in a null rerun)
  const text = traceText(trace)
  const key = record !== undefined && record.trace === text ? record.key : keyOf(text)
  // the step's own record of this key, when its output is intact, is what the key's result would say:
  // a null rerun then asks the database nothing per step (the store's lookup was a third of its time)
  const own = record !== undefined && record.key === key && present(record.output)
    ? { output: record.output, seconds: record.seconds }
    : undefined
  return {
    step,
    trace,
    key,
    record,
    forced,
    result: own ?? store.db.result(key),
    present,
    damage: (h) => store.problem(h)
  }
}

/**
 * Whether an artifact is in the store (recorded and matching its manifest: a stat per file), asked once
 * per hash. Only a yes is remembered: an artifact found missing may be committed later in the same run
 * (another step with the same output). In a run the store leases each artifact it finds, so a concurrent
 * `cache gc` cannot take it after the yes.
 */
export const presence = (store: Store): ((hash: string) => boolean) => {
  const found = new Set<string>()
  return (h) => {
    if (found.has(h)) return true
    if (!store.has(h)) return false
    found.add(h)
    return true
  }
}

export interface DecideContext {
  readonly store: Store
  /** each step id's last successful state in this recipe */
  readonly records: ReadonlyMap<string, StepRecord>
  readonly force: ReadonlySet<string>
  readonly rebuild: Rebuilder
  readonly present: (hash: string) => boolean
  /** content hashes of the sources */
  readonly sources: ReadonlyMap<string, string>
}

export type Decided =
  /** some upstream output is not known yet */
  | { readonly waiting: true }
  | { readonly waiting: false; readonly trace: Trace; readonly key: string; readonly decision: Decision }

/** inputs -> trace -> query -> rebuild, for one step, given the outputs known so far. */
export const decide = (ctx: DecideContext, step: PlannedStep, outputs: ReadonlyMap<string, string>): Decided => {
  const hashes = inputHashes(step, outputs, ctx.sources)
  if (hashes === undefined) return { waiting: true }
  const trace = makeTrace(step, hashes)
  const q = query(step, trace, ctx.records.get(step.id), ctx.store, ctx.force.has(step.id), ctx.present)
  return { waiting: false, trace, key: q.key, decision: ctx.rebuild(q) }
}

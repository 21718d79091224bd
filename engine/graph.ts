/**
 * The graph a recipe builds. Step calls and `source.*` calls add nodes to the builder that is active
 * while the recipe's build function runs; handles point at those nodes. `validateGraph` then decodes
 * every step's params, checks ids, ports and cycles, and returns a `Graph` in topological order.
 */
import * as path from "node:path"
import * as Schema from "effect/Schema"
import type { AnyHandle, ArtifactKind, Dataset, Files, Model, NodeRef, Tokenizer, Adapter, Report } from "./artifact.ts"
import { isHandle, makeHandle } from "./artifact.ts"
import type { Row } from "./rows.ts"
import type { CallOptions, StepDefinition, AnyPort } from "./step.ts"
import { RecipeError } from "./errors.ts"
import { copyFlat, flatDecoder } from "./flat-params.ts"

export interface StepNode extends NodeRef {
  readonly _tag: "step"
  readonly id: string
  readonly explicitId: boolean
  readonly def: StepDefinition
  readonly rawParams: unknown
  readonly handles: Readonly<Record<string, AnyHandle | ReadonlyArray<AnyHandle> | undefined>>
  readonly options: CallOptions
  /** file:line of the call in the recipe, for error messages (formatted only when asked for) */
  readonly callSite: string | undefined
}

export interface SourceNode extends NodeRef {
  readonly _tag: "source"
  readonly id: string
  readonly kind: ArtifactKind
  /** absolute path of a file or directory outside the store */
  readonly path: string
  readonly callSite: string | undefined
}

export type GraphNode = StepNode | SourceNode

/** A validated step: params decoded, inputs resolved to nodes. */
export interface PlannedStep {
  readonly id: string
  readonly node: StepNode
  readonly def: StepDefinition
  /** decoded params, encoded back to plain JSON with defaults filled in */
  readonly params: Record<string, unknown>
  readonly decoded: unknown
  readonly inputs: Readonly<Record<string, GraphNode | ReadonlyArray<GraphNode>>>
  /** ids of steps this one needs (data inputs and `after`) */
  readonly needs: ReadonlyArray<string>
  readonly sources: ReadonlyArray<SourceNode>
}

export interface Graph {
  readonly recipe: string
  readonly recipeName: string
  /** steps in a topological order (every step after what it needs) */
  readonly steps: ReadonlyArray<PlannedStep>
  readonly sources: ReadonlyArray<SourceNode>
  readonly byId: ReadonlyMap<string, PlannedStep>
}

// ---------------------------------------------------------------------------------------------
// The builder

export class GraphBuilder {
  readonly nodes: Array<GraphNode> = []
  /**
   * `callSites`: capture each call's stack, for the `file:line` an error message names. Capturing is a
   * sixth of building a 10,000-step recipe, and only a recipe that fails validation needs it, so the
   * loader builds without, and builds again with them when validation fails (load.ts).
   */
  constructor(readonly recipeFile: string, readonly callSites = false) {}

  private located<N extends GraphNode>(node: Omit<N, "callSite">): N {
    return this.callSites ? lazyCallSite<N>(node, this.recipeFile) : ({ ...node, callSite: undefined } as N)
  }

  addStep(def: StepDefinition, handles: Record<string, unknown>, rawParams: unknown, options: CallOptions): StepNode {
    const node = this.located<StepNode>({
      _tag: "step",
      id: options.id ?? def.kind,
      explicitId: options.id !== undefined,
      def,
      rawParams,
      handles: handles as StepNode["handles"],
      options
    })
    this.nodes.push(node)
    return node
  }

  addSource(kind: ArtifactKind, file: string, id: string | undefined): SourceNode {
    const abs = path.resolve(path.dirname(this.recipeFile), file)
    const node = this.located<SourceNode>({
      _tag: "source",
      id: id ?? "source:" + path.relative(path.dirname(this.recipeFile), abs),
      kind,
      path: abs
    })
    this.nodes.push(node)
    return node
  }
}

// Kept on globalThis, not in module state: a recipe may reach anneal through another path (a linked
// package, a CJS/ESM pair of instances), and every instance must see the one builder being filled.
const state = ((globalThis as Record<symbol, unknown>)[Symbol.for("anneal/graph-builder")] ??= { active: undefined }) as {
  active: GraphBuilder | undefined
}

export const currentBuilder = (what: string): GraphBuilder => {
  const active = state.active
  if (active === undefined) {
    throw new Error(`${what} was called outside a recipe: call steps inside the function passed to recipe()`)
  }
  return active
}

export const withBuilder = <A>(builder: GraphBuilder, f: () => A): A => {
  const previous = state.active
  state.active = builder
  try {
    return f()
  } finally {
    state.active = previous
  }
}

const engineDir = path.dirname(new URL(import.meta.url).pathname)
const stepsDir = path.join(path.dirname(engineDir), "steps")
/** the installed package's start-up bundle, which holds this module (scripts/startup-bundle.js) */
const startupBundle = path.join(path.dirname(engineDir), "startup.js")

/** A node's captured stack, formatted into its `callSite` on first read. */
const callStack = Symbol("anneal/call-stack")
interface CallStack {
  readonly holder: { stack?: string }
  readonly recipeFile: string
  formatted: string | undefined | null
}
const callSiteGetter = {
  get callSite(): string | undefined {
    const c = (this as unknown as { [callStack]: CallStack })[callStack]
    return c.formatted === null ? (c.formatted = callSite(c.holder.stack ?? "", c.recipeFile)) : c.formatted
  }
}

/**
 * Captures the call's stack now but formats it only if an error message needs it: formatting goes
 * through source maps and would dominate loading a 10,000-step recipe. The getter lives on one shared
 * prototype: a getter defined on each node put every node in V8's dictionary mode, where each read of a
 * node's field (validation, planning, the run) was a hash lookup (20x slower, measured).
 */
const lazyCallSite = <N extends GraphNode>(node: Omit<N, "callSite">, recipeFile: string): N => {
  const holder: { stack?: string } = {}
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 13 // the builder's own two frames, then the recipe's
  Error.captureStackTrace(holder, lazyCallSite)
  Error.stackTraceLimit = limit
  const located = Object.assign(Object.create(callSiteGetter) as object, node) as N & { [callStack]: CallStack }
  located[callStack] = { holder, recipeFile, formatted: null }
  return located
}

/** The `file:line` of the innermost stack frame inside the recipe file (or any non-engine file). */
const callSite = (stackText: string, recipeFile: string): string | undefined => {
  const stack = stackText.split("\n").slice(1)
  let fallback: string | undefined
  for (const line of stack) {
    const m = /\(?((?:file:\/\/)?\/[^():]+):(\d+):\d+\)?\s*$/.exec(line)
    if (m === null) continue
    const file = m[1]!.replace(/^file:\/\//, "")
    if (file === recipeFile) return `${path.relative(process.cwd(), file) || file}:${m[2]}`
    if (fallback === undefined && !file.startsWith(engineDir) && !file.includes("node_modules")
      && !file.startsWith(stepsDir) && file !== startupBundle) {
      fallback = `${path.relative(process.cwd(), file)}:${m[2]}`
    }
  }
  return fallback
}

// ---------------------------------------------------------------------------------------------
// Recipes and sources

export interface Recipe {
  readonly _tag: "Recipe"
  readonly name: string
  readonly build: () => void
}

/** A recipe module's default export: `export default recipe("name", () => { ...step calls... })`. */
export const recipe = (name: string, build: () => void): Recipe => ({ _tag: "Recipe", name, build })

const sourceOf = <H extends AnyHandle>(kind: ArtifactKind) => (file: string, options?: { readonly id?: string }): H =>
  makeHandle<H>(kind, currentBuilder("source." + kind).addSource(kind, file, options?.id))

/**
 * Inputs from outside the store, hashed by content (a stat cache avoids rehashing unchanged files).
 * Relative paths are resolved against the recipe file's directory.
 */
export const source = {
  /** a JSONL (plain or .gz) or Parquet file, a directory or a glob (`shards/*.parquet`) of them; rows are checked when a step reads them */
  dataset: <R extends Row>(file: string, _rows?: Schema.Codec<R, any>, options?: { readonly id?: string }): Dataset<R> =>
    sourceOf<Dataset<R>>("dataset")(file, options),
  /** a Hugging Face model directory */
  model: sourceOf<Model>("model"),
  adapter: sourceOf<Adapter>("adapter"),
  tokenizer: sourceOf<Tokenizer>("tokenizer"),
  report: sourceOf<Report>("report"),
  files: sourceOf<Files>("file")
}

// ---------------------------------------------------------------------------------------------
// Validation

/**
 * Step ids: a letter or digit, then letters, digits, `.`, `_` or `-`, at most 100 characters. An id
 * names files (logs, specs) and appears in one-line messages and on the command line, so it holds no
 * path separator, no `:` (two ids must never map to one file name) and nothing invisible.
 */
export const stepIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/

// One decoder and encoder per params schema, not per step: building them costs far more than running
// them, and a generated recipe has thousands of steps of a few kinds.
interface ParamsCodec {
  readonly decode: (u: unknown) => unknown
  readonly encode: (a: unknown) => unknown
  /** a flat schema's fast path (flat-params.ts): the decoded copy of a value it accepts */
  readonly flat: ((u: unknown) => Record<string, unknown> | undefined) | undefined
}
const codecs = new WeakMap<object, ParamsCodec>()
const codecOf = (schema: unknown): ParamsCodec => {
  let c = codecs.get(schema as object)
  if (c === undefined) {
    const codec = schema as Schema.Codec<unknown, unknown>
    c = { decode: Schema.decodeUnknownSync(codec, { onExcessProperty: "error" }), encode: Schema.encodeSync(codec), flat: flatDecoder(codec) }
    codecs.set(schema as object, c)
  }
  return c
}

export const validateGraph = (recipeFile: string, recipeName: string, nodes: ReadonlyArray<GraphNode>): Graph => {
  const steps = nodes.filter((n): n is StepNode => n._tag === "step")
  const sources = nodes.filter((n): n is SourceNode => n._tag === "source")
  const at = (n: GraphNode) => (n.callSite !== undefined ? ` (${n.callSite})` : "")

  // ids: default to the kind; a clash is an error that says how to fix it
  const seen = new Map<string, StepNode>()
  // indexed loops over steps, ports and inputs here: this runs once per process, mostly before V8
  // optimises it, and unoptimised for...of allocates an iterator result per element (6 MB of 10,000 steps)
  for (let i = 0; i < steps.length; i++) {
    const n = steps[i]!
    if (typeof n.id !== "string" || !stepIdPattern.test(n.id)) {
      // JSON.stringify keeps a newline or NUL in the id from breaking the one-line message
      const shown = JSON.stringify(String(n.id)).slice(0, 120)
      throw new RecipeError({
        message: `step id ${shown}${at(n)} is not allowed: use a letter or digit, then letters, digits, . _ or -, at most 100 characters`,
        step: String(n.id)
      })
    }
    const prev = seen.get(n.id)
    if (prev !== undefined) {
      const hint = n.explicitId ? "give each a different id" : `pass { id: "..." } as the third argument of each ${n.def.kind}() call`
      throw new RecipeError({
        message: `duplicate step id "${n.id}"${at(prev)}${at(n)}: ${hint}`,
        step: n.id
      })
    }
    seen.set(n.id, n)
  }
  const sourceIds = new Map<string, SourceNode>()
  for (const s of sources) {
    const prev = sourceIds.get(s.id)
    if (prev !== undefined && prev.path !== s.path) {
      throw new RecipeError({ message: `two sources share the id "${s.id}"${at(s)}`, step: s.id })
    }
    sourceIds.set(s.id, s)
  }

  const planned = new Map<string, PlannedStep>()
  const nodeOf = (n: StepNode, port: string, h: unknown, want: AnyPort): GraphNode => {
    if (!isHandle(h)) {
      throw new RecipeError({ message: `step "${n.id}"${at(n)}: input "${port}" is not an artifact handle`, step: n.id, param: port })
    }
    if (h.kind !== want.kind) {
      throw new RecipeError({
        message: `step "${n.id}"${at(n)}: input "${port}" wants a ${want.kind}, got a ${h.kind}`,
        step: n.id,
        param: port
      })
    }
    return h.node as GraphNode
  }

  // a generated recipe has thousands of steps of a few kinds: each kind's ports are listed once
  const portsOf = new Map<StepDefinition, ReadonlyArray<readonly [string, AnyPort]>>()
  for (let i = 0; i < steps.length; i++) {
    const n = steps[i]!
    // params: decoded now, so a bad value fails before anything runs
    const codec = codecOf(n.def.params)
    let decoded: unknown = codec.flat?.(n.rawParams)
    let params: Record<string, unknown>
    if (decoded !== undefined) {
      // a flat schema's value decodes to a copy of itself, and encodes back to the same
      params = copyFlat(decoded as Record<string, unknown>)
    } else {
      try {
        decoded = codec.decode(n.rawParams)
      } catch (e) {
        throw RecipeError.fromSchema(n.id, n.def.kind, at(n), e)
      }
      params = codec.encode(decoded) as Record<string, unknown>
    }

    let ports = portsOf.get(n.def)
    if (ports === undefined) portsOf.set(n.def, (ports = Object.entries(n.def.inputs)))
    const inputs: Record<string, GraphNode | ReadonlyArray<GraphNode>> = {}
    // what it needs, in port order, each once; and its sources
    const needs: Array<string> = []
    let needSet: Set<string> | undefined // once there are many (a step gathering thousands of outputs)
    const need = (id: string) => {
      if (needSet === undefined ? needs.includes(id) : needSet.has(id)) return
      needs.push(id)
      if (needSet !== undefined) needSet.add(id)
      else if (needs.length > 16) needSet = new Set(needs)
    }
    const stepSources: Array<SourceNode> = []
    const needed = (x: GraphNode) => {
      if (x._tag === "step") {
        if (seen.get(x.id) !== x) {
          throw new RecipeError({ message: `step "${n.id}"${at(n)}: an input comes from a step that is not part of this recipe`, step: n.id })
        }
        need(x.id)
      } else stepSources.push(x)
    }
    for (let k = 0; k < ports.length; k++) {
      const portName = ports[k]![0]
      const port = ports[k]![1]
      const h = n.handles[portName]
      if (h === undefined) {
        if (port.optional) continue
        throw new RecipeError({ message: `step "${n.id}"${at(n)}: missing input "${portName}"`, step: n.id, param: portName })
      }
      if (port.many) {
        if (!Array.isArray(h)) {
          throw new RecipeError({ message: `step "${n.id}"${at(n)}: input "${portName}" wants a list of ${port.kind}s`, step: n.id, param: portName })
        }
        const list = new Array<GraphNode>(h.length)
        for (let i = 0; i < h.length; i++) list[i] = nodeOf(n, portName, h[i], port)
        inputs[portName] = list
      } else {
        inputs[portName] = nodeOf(n, portName, h, port)
      }
    }
    const given = Object.keys(n.handles)
    for (let k = 0; k < given.length; k++) {
      const portName = given[k]!
      if (!(portName in n.def.inputs) && n.handles[portName] !== undefined) {
        throw new RecipeError({
          message: `step "${n.id}"${at(n)}: unknown input "${portName}" (${n.def.kind} takes ${Object.keys(n.def.inputs).join(", ") || "no inputs"})`,
          step: n.id,
          param: portName
        })
      }
    }
    const problem = n.def.checkParams?.(
      decoded,
      Object.fromEntries(ports.map(([p]) => [p, Array.isArray(inputs[p]) ? (inputs[p] as ReadonlyArray<GraphNode>).length : inputs[p] === undefined ? 0 : 1]))
    )
    if (problem !== undefined) {
      throw new RecipeError({ message: `step "${n.id}"${at(n)} (${n.def.kind}): param ${problem.param}: ${problem.message}`, step: n.id, param: problem.param })
    }
    for (let k = 0; k < ports.length; k++) {
      const x = inputs[ports[k]![0]]
      if (x === undefined) continue
      if (Array.isArray(x)) for (let j = 0; j < x.length; j++) needed((x as ReadonlyArray<GraphNode>)[j]!)
      else needed(x as GraphNode)
    }
    for (const a of n.options.after ?? []) {
      if (!seen.has(a)) throw new RecipeError({ message: `step "${n.id}"${at(n)}: after names unknown step "${a}"`, step: n.id, param: "after" })
      need(a)
    }
    planned.set(n.id, { id: n.id, node: n, def: n.def, params, decoded, inputs, needs, sources: stepSources })
  }

  return { recipe: recipeFile, recipeName, steps: topoSort(planned), sources: [...sourceIds.values()], byId: planned }
}

/** Kahn's algorithm, stable in declaration order; a cycle is named step by step. */
export const topoSort = (steps: ReadonlyMap<string, PlannedStep>): ReadonlyArray<PlannedStep> => {
  // on indices in typed arrays, each step's dependents in one flat array (CSR), with indexed loops: a
  // generated recipe of 10,000 steps spent more in maps, per-step arrays and iterators than in the sort
  const list = Array.from(steps.values())
  const n = list.length
  const index = new Map<string, number>()
  for (let i = 0; i < n; i++) index.set(list[i]!.id, i)
  const indegree = new Int32Array(n)
  let edges = 0
  for (let i = 0; i < n; i++) {
    indegree[i] = list[i]!.needs.length
    edges += list[i]!.needs.length
  }
  // dependents of j: dependent[first[j] .. first[j + 1]), in declaration order
  const first = new Int32Array(n + 1)
  const need = new Int32Array(edges)
  for (let i = 0, e = 0; i < n; i++) {
    const needs = list[i]!.needs
    for (let k = 0; k < needs.length; k++) {
      const j = index.get(needs[k]!)!
      need[e++] = j
      first[j + 1]!++
    }
  }
  for (let j = 0; j < n; j++) first[j + 1]! += first[j]!
  const next = first.slice(0, n)
  const dependent = new Int32Array(edges)
  for (let i = 0, e = 0; i < n; i++) {
    for (let k = list[i]!.needs.length; k > 0; k--) dependent[next[need[e++]!]!++] = i
  }
  const ready = new Int32Array(n)
  let head = 0
  let tail = 0
  for (let i = 0; i < n; i++) if (indegree[i] === 0) ready[tail++] = i
  const order: Array<PlannedStep> = []
  while (head < tail) {
    const i = ready[head++]!
    order.push(list[i]!)
    for (let x = first[i]!; x < first[i + 1]!; x++) {
      const d = dependent[x]!
      if (--indegree[d]! === 0) ready[tail++] = d
    }
  }
  if (order.length < n) {
    const cycle = findCycle(steps, new Set(order.map((s) => s.id)))
    throw new RecipeError({ message: `the recipe has a cycle: ${cycle.join(" -> ")}`, step: cycle[0] })
  }
  return order
}

const findCycle = (steps: ReadonlyMap<string, PlannedStep>, done: ReadonlySet<string>): Array<string> => {
  const state = new Map<string, 1 | 2>()
  const stack: Array<string> = []
  const visit = (id: string): Array<string> | undefined => {
    state.set(id, 1)
    stack.push(id)
    for (const d of steps.get(id)?.needs ?? []) {
      if (state.get(d) === 1) return [...stack.slice(stack.indexOf(d)), d]
      if (state.get(d) === undefined) {
        const c = visit(d)
        if (c) return c
      }
    }
    stack.pop()
    state.set(id, 2)
    return undefined
  }
  for (const id of steps.keys()) {
    if (done.has(id) || state.has(id)) continue
    const c = visit(id)
    if (c) return c.reverse()
  }
  return []
}

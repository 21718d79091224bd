/**
 * `anneal show` and `anneal logs`: what the cache knows about one step. With `--recipe` the step is
 * looked up in that recipe; without it, in the store (`--store`, else the current project's), where
 * exactly one recipe must have run a step with that id. Neither command creates a store.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Database } from "../cache/sqlite.ts"
import { Store } from "../cache/store.ts"
import { UsageError } from "../engine/errors.ts"
import type { PlannedStep } from "../engine/graph.ts"
import { loadRecipe } from "../engine/load.ts"
import { projectRootOf, unknownStep } from "../engine/plan.ts"
import type { Trace } from "../engine/keys.ts"

/** The step being shown: its store, the recipe id the cache knows it by, and the recipe's step if loaded. */
interface Target {
  readonly store: Store
  readonly recipeId: string
  readonly step: PlannedStep | undefined
}

const storeFlag = (v: Record<string, unknown>): string | undefined => (typeof v.store === "string" ? path.resolve(v.store) : undefined)

const openExisting = (root: string): Store => {
  if (!fs.existsSync(path.join(root, "cache.db"))) throw new UsageError({ message: `no store at ${root} (run a recipe first, or pass --store)` })
  return Store.open(root)
}

/** Recipes that ran step `id` in the store at `root`, most recent first (read-only: nothing is created). */
const recipesThatRan = (root: string, id: string): Array<string> => {
  const db = new Database(path.join(root, "cache.db"), { readonly: true, fileMustExist: true })
  try {
    const rows = db.prepare("SELECT recipe, MAX(id) AS last FROM runs WHERE step = ? GROUP BY recipe ORDER BY last DESC").all(id)
    return (rows as Array<{ recipe: string }>).map((r) => r.recipe)
  } finally {
    db.close()
  }
}

const findTarget = async (v: Record<string, unknown>, id: string): Promise<Target> => {
  if (typeof v.recipe === "string") {
    const graph = await loadRecipe(v.recipe)
    const step = graph.byId.get(id)
    if (step === undefined) throw unknownStep(graph, id)
    const root = projectRootOf(graph.recipe)
    return { store: openExisting(storeFlag(v) ?? path.join(root, ".anneal")), recipeId: path.relative(root, graph.recipe), step }
  }
  const root = storeFlag(v) ?? path.join(projectRootOf(path.join(process.cwd(), "package.json")), ".anneal")
  if (!fs.existsSync(path.join(root, "cache.db"))) throw new UsageError({ message: `no store at ${root} (run a recipe first, or pass --store or --recipe)` })
  const recipes = recipesThatRan(root, id)
  if (recipes.length === 0) throw new UsageError({ message: `no recipe has run a step "${id}" in the store at ${root} (pass --recipe <file>)` })
  if (recipes.length > 1) {
    throw new UsageError({ message: `step "${id}" was run by ${recipes.length} recipes in the store at ${root}: ${recipes.join(", ")}; pass --recipe <file>` })
  }
  const recipeId = recipes[0]!
  // the recipe's current params when its file is where the cache last saw it; else the stored trace's
  const file = path.join(path.dirname(root), recipeId)
  const step = fs.existsSync(file) ? await loadRecipe(file).then((g) => g.byId.get(id), () => undefined) : undefined
  return { store: openExisting(root), recipeId, step }
}

/** Everything `show` reports, as plain data (the --json object and the input of the human rendering). */
export interface ShowData {
  readonly step: string
  /** the recipe the cache knows the step by (always set here; optional so hand-made records fit) */
  readonly recipe?: string | undefined
  readonly kind: string
  readonly status: string
  readonly key: string | null
  readonly params: Record<string, unknown>
  readonly trace: Trace | null
  readonly inputs: Record<string, unknown>
  readonly output: { readonly hash: string; readonly path: string } | null
  readonly metrics: Record<string, unknown>
  readonly seconds: number | null
  readonly log: string | null
  readonly error: string | null
  readonly summary: string | null
}

export const showData = async (v: Record<string, unknown>, id: string): Promise<ShowData> => {
  const { store, recipeId, step } = await findTarget(v, id)
  try {
    const db = store.db
    const record = db.stepRecord(recipeId, id)
    const last = db.lastRun(recipeId, id)
    const built = record?.run_id != null ? db.run(record.run_id) : undefined
    const trace = record !== undefined ? (JSON.parse(record.trace) as Trace) : null
    const lastTrace = trace ?? (last !== undefined ? (JSON.parse(last.trace) as Trace) : null)
    const summaryPath = last?.log_path ? last.log_path.replace(/[^/]+$/, "summary.md") : null
    return {
      step: id,
      recipe: recipeId,
      kind: step?.def.kind ?? record?.kind ?? last?.kind ?? "unknown",
      status: last === undefined && record === undefined ? "never run" : last?.status === "running" ? "running" : record !== undefined ? "built" : last?.status ?? "unknown",
      key: record?.key ?? last?.key ?? null,
      params: step?.params ?? lastTrace?.params ?? {},
      trace,
      inputs: trace?.inputs ?? {},
      output: record !== undefined ? { hash: record.output, path: store.artifactPath(record.output) } : null,
      metrics: built !== undefined ? (JSON.parse(built.metrics) as Record<string, unknown>) : {},
      seconds: record?.seconds ?? last?.seconds ?? null,
      log: built?.log_path ?? last?.log_path ?? null,
      error: last?.status === "failed" || last?.status === "interrupted" ? last.error : null,
      summary: summaryPath !== null && fs.existsSync(summaryPath) ? summaryPath : null
    }
  } finally {
    store.close()
  }
}

export const showStep = async (v: Record<string, unknown>, positionals: ReadonlyArray<string>): Promise<number> => {
  const id = positionals[0]
  if (id === undefined) throw new UsageError({ message: "show: give a step id" })
  const data = await showData(v, id)
  if (v.json === true) {
    process.stdout.write(JSON.stringify(data) + "\n")
    return 0
  }
  const { renderShow } = await import("./render/show.ts")
  const { colorEnabled } = await import("./render/paint.ts")
  process.stdout.write(renderShow(data, { color: process.stdout.isTTY === true && colorEnabled() }))
  return 0
}

export const printLogs = async (v: Record<string, unknown>, positionals: ReadonlyArray<string>): Promise<number> => {
  const id = positionals[0]
  if (id === undefined) throw new UsageError({ message: "logs: give a step id" })
  const { store, recipeId } = await findTarget(v, id)
  try {
    const last = store.db.lastRun(recipeId, id)
    if (last === undefined || last.log_path === null) throw new UsageError({ message: `step "${id}" has not run in this store yet` })
    if (!fs.existsSync(last.log_path)) throw new UsageError({ message: `the log of step "${id}" is gone: ${last.log_path}` })
    process.stdout.write(fs.readFileSync(last.log_path))
    return 0
  } finally {
    store.close()
  }
}

/** `anneal show` and `anneal logs`: what the cache knows about one step of a recipe. */
import * as fs from "node:fs"
import { UsageError } from "../engine/errors.ts"
import { openProject, unknownStep } from "../engine/plan.ts"
import type { Trace } from "../engine/keys.ts"

const recipeOf = (v: Record<string, unknown>, command: string): string => {
  if (typeof v.recipe !== "string") throw new UsageError({ message: `${command}: give the recipe with --recipe <file>` })
  return v.recipe
}

/** Everything `show` reports, as plain data (the --json object and the input of the human rendering). */
export interface ShowData {
  readonly step: string
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
  const project = await openProject(recipeOf(v, "show"), { store: typeof v.store === "string" ? v.store : undefined })
  try {
    const step = project.graph.byId.get(id)
    if (step === undefined) throw unknownStep(project.graph, id)
    const db = project.store.db
    const record = db.stepRecord(project.recipeId, id)
    const last = db.lastRun(project.recipeId, id)
    const built = record?.run_id != null ? db.run(record.run_id) : undefined
    const trace = record !== undefined ? (JSON.parse(record.trace) as Trace) : null
    const summaryPath = last?.log_path ? last.log_path.replace(/[^/]+$/, "summary.md") : null
    return {
      step: id,
      kind: step.def.kind,
      status: last === undefined && record === undefined ? "never run" : last?.status === "running" ? "running" : record !== undefined ? "built" : last?.status ?? "unknown",
      key: record?.key ?? last?.key ?? null,
      params: step.params,
      trace,
      inputs: trace?.inputs ?? {},
      output: record !== undefined ? { hash: record.output, path: project.store.artifactPath(record.output) } : null,
      metrics: built !== undefined ? (JSON.parse(built.metrics) as Record<string, unknown>) : {},
      seconds: record?.seconds ?? last?.seconds ?? null,
      log: built?.log_path ?? last?.log_path ?? null,
      error: last?.status === "failed" || last?.status === "interrupted" ? last.error : null,
      summary: summaryPath !== null && fs.existsSync(summaryPath) ? summaryPath : null
    }
  } finally {
    project.store.close()
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
  const project = await openProject(recipeOf(v, "logs"), { store: typeof v.store === "string" ? v.store : undefined })
  try {
    if (!project.graph.byId.has(id)) throw unknownStep(project.graph, id)
    const last = project.store.db.lastRun(project.recipeId, id)
    if (last === undefined || last.log_path === null) throw new UsageError({ message: `step "${id}" has not run in this store yet` })
    if (!fs.existsSync(last.log_path)) throw new UsageError({ message: `the log of step "${id}" is gone: ${last.log_path}` })
    process.stdout.write(fs.readFileSync(last.log_path))
    return 0
  } finally {
    project.store.close()
  }
}

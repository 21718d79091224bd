/**
 * One watch cycle: `anneal run <recipe> --json` as a child process. A child imports the recipe afresh,
 * so edits to the recipe and its local modules always take effect, and interrupting a cycle is a
 * SIGTERM, which the engine handles like Ctrl-C (stops workers, records them interrupted, exits 1).
 */
import * as readline from "node:readline"
import * as path from "node:path"
import { projectRoot } from "../../engine/python.ts"
import { execa } from "execa"
import type { EngineEvent } from "../../engine/events.ts"

export const annealBin = path.join(projectRoot, "bin", "anneal.js")

export interface CycleResult {
  readonly exitCode: number
  /** true when the child printed its final `run` event (false: the recipe did not load, or a crash) */
  readonly completed: boolean
  readonly stderr: string
}

export interface Cycle {
  readonly done: Promise<CycleResult>
  /** SIGTERM: the engine stops its workers and records them interrupted; SIGKILL after 30 s */
  readonly interrupt: () => void
}

/** Parses one stdout line; anything that is not an engine event (a stray print) is passed on as text. */
export const parseEventLine = (line: string): EngineEvent | undefined => {
  if (!line.startsWith("{")) return undefined
  try {
    const v = JSON.parse(line) as { event?: unknown }
    return typeof v.event === "string" ? (v as EngineEvent) : undefined
  } catch {
    return undefined
  }
}

export const startCycle = (options: {
  readonly recipe: string
  /** flags passed to `anneal run` (--store, --jobs, ...) */
  readonly runArgs: ReadonlyArray<string>
  readonly onEvent: (event: EngineEvent, line: string) => void
  readonly onOutput?: ((line: string) => void) | undefined
}): Cycle => {
  const child = execa(process.execPath, [annealBin, "run", options.recipe, "--json", ...options.runArgs], {
    reject: false,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    buffer: { stdout: false, stderr: true },
    forceKillAfterDelay: 30_000,
    // its own process group: a Ctrl-C in the terminal reaches only watch, which stops the cycle with
    // one SIGTERM (two signals would make the engine skip its clean shutdown)
    detached: true,
    // the child must not draw: it speaks JSON on a pipe either way
    env: { FORCE_COLOR: "0" }
  })
  let completed = false
  const lines = readline.createInterface({ input: child.stdout! })
  lines.on("line", (line) => {
    const event = parseEventLine(line)
    if (event === undefined) {
      if (line.trim() !== "") options.onOutput?.(line)
      return
    }
    if (event.event === "run") completed = true
    options.onEvent(event, line)
  })
  const closed = new Promise<void>((resolve) => lines.once("close", () => resolve()))
  let exited = false
  // detached children do not die with watch: take them along if watch exits while one runs
  const killOnExit = () => {
    if (!exited) child.kill("SIGTERM")
  }
  process.once("exit", killOnExit)
  const done = (async (): Promise<CycleResult> => {
    const result = await child
    exited = true
    process.off("exit", killOnExit)
    await closed
    return { exitCode: result.exitCode ?? 1, completed, stderr: String(result.stderr ?? "") }
  })()
  return {
    done,
    interrupt: () => {
      if (!exited) child.kill("SIGTERM")
    }
  }
}

export interface PlanSnapshot {
  /** absolute paths of the recipe's Source inputs */
  readonly sources: ReadonlyArray<string>
  /** step id -> the key it would run with now (null while it waits for a stale step) */
  readonly keys: ReadonlyMap<string, string | null>
}

/**
 * `anneal plan <recipe> --json`: the recipe's sources (its `source` lines) and each step's key (its
 * `plan` lines). Undefined when the recipe does not load.
 */
export const planSnapshot = async (recipe: string, runArgs: ReadonlyArray<string>): Promise<PlanSnapshot | undefined> => {
  const store = runArgs.indexOf("--store")
  const storeArgs = store >= 0 && runArgs[store + 1] !== undefined ? ["--store", runArgs[store + 1]!] : []
  const r = await execa(process.execPath, [annealBin, "plan", recipe, "--json", ...storeArgs], { reject: false, stdin: "ignore" })
  if (r.exitCode !== 0) return undefined
  const sources: Array<string> = []
  const keys = new Map<string, string | null>()
  for (const line of String(r.stdout).split("\n")) {
    if (!line.startsWith("{")) continue
    try {
      const v = JSON.parse(line) as { event?: unknown; path?: unknown; step?: unknown; key?: unknown }
      if (v.event === "source" && typeof v.path === "string") sources.push(v.path)
      if (v.event === "plan" && typeof v.step === "string") keys.set(v.step, typeof v.key === "string" ? v.key : null)
    } catch {
      // not JSON: ignore
    }
  }
  return { sources, keys }
}

/**
 * `anneal watch <recipe>`: run the recipe, then rerun it whenever the recipe module, a local module it
 * imports, or one of its Source inputs changes. Each cycle is a child `anneal run --json` (watch/cycle.ts),
 * so the engine decides what is stale exactly as `anneal run` would: only changed steps and their
 * dependents run, the rest comes from the store.
 *
 * - Saves are debounced, and a file whose content did not change (a `touch`, an editor's no-op save)
 *   is ignored: no cycle at all.
 * - A change while a cycle runs is checked against the running steps' keys (`anneal plan --json`). If a
 *   running step became stale, the cycle is interrupted at once (SIGTERM: the engine records it as
 *   interrupted) and a new one starts it again with the new code or data. If not, the running steps
 *   finish first; then the cycle is stopped and the next one runs what the change made stale.
 * - A recipe that does not load shows its error; watching goes on and the next good save runs.
 * - With `--json`, stdout carries the engine's events only, one `run` event per completed cycle; a cycle
 *   whose recipe did not load prints one `log` event at level error instead. Notes go to stderr.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { watch } from "chokidar"
import type { EngineEvent, Reporter } from "../engine/events.ts"
import { localModules } from "./watch/local-imports.ts"
import { planSnapshot, startCycle } from "./watch/cycle.ts"
import type { Cycle } from "./watch/cycle.ts"
import { makeTerminalReporter } from "./ui/terminal-reporter.ts"

export interface WatchOptions {
  readonly recipe: string
  /** flags for each `anneal run` (--store, --jobs, --gpus, --allow-cpu, --keep-going) */
  readonly runArgs: ReadonlyArray<string>
  readonly json: boolean
  readonly stdout?: NodeJS.WriteStream | undefined
  readonly stderr?: NodeJS.WritableStream | undefined
  /** the reporter of one cycle (human mode); `quit` stops watching (the live view's q / Ctrl-C) */
  readonly makeReporter?: ((quit: () => void) => Reporter | Promise<Reporter>) | undefined
  readonly debounceMs?: number | undefined
  /** aborting it stops watching (the current cycle is interrupted first) */
  readonly signal?: AbortSignal | undefined
}

const contentHash = (file: string): string | undefined => {
  try {
    return createHash("sha256").update(fs.readFileSync(file)).digest("hex")
  } catch {
    return undefined // gone, or a directory: counts as a change
  }
}

const isFile = (p: string) => {
  try {
    return fs.statSync(p).isFile()
  } catch {
    return false
  }
}

export const watchRecipe = async (options: WatchOptions): Promise<number> => {
  const recipe = path.resolve(options.recipe)
  const stdout = options.stdout ?? process.stdout
  const stderr = options.stderr ?? process.stderr
  const note = (line: string) => (options.json ? stderr : stdout).write(line + "\n")
  const debounceMs = options.debounceMs ?? 300

  let modules = new Set(localModules(recipe))
  let sources = new Set((await planSnapshot(recipe, options.runArgs))?.sources ?? [])
  // content hashes of watched files: a save that changes nothing must not rerun anything
  const hashes = new Map<string, string | undefined>()
  const remember = (files: Iterable<string>) => {
    for (const f of files) if (!hashes.has(f) && isFile(f)) hashes.set(f, contentHash(f))
  }
  remember(modules)
  remember(sources)

  const watcher = watch([...modules, ...sources], { ignoreInitial: true, persistent: true })
  await new Promise<void>((resolve) => watcher.once("ready", () => resolve()))

  let stopped = false
  let current: Cycle | undefined
  let reporter: Reporter | undefined
  let wake: (() => void) | undefined
  let timer: NodeJS.Timeout | undefined
  const pending = new Set<string>()
  // steps the current cycle is running (id -> key), and those to let finish before stopping it
  const running = new Map<string, string>()
  let drainFor: Set<string> | undefined
  // set when watch itself stopped the cycle: its end is then no error to report
  let stoppedByUs = false
  const interruptCycle = () => {
    stoppedByUs = true
    current?.interrupt()
  }

  /** A note during a cycle: into the live view (writing around Ink would tear its frame), or stderr. */
  const cycleNote = (message: string) => {
    if (reporter !== undefined) reporter.emit({ event: "log", step: null, level: "info", message })
    else note(message)
  }

  /**
   * A change arrived while a cycle runs. If a running step's key changed (its params, code or inputs),
   * stop the cycle now; if not, let the running steps finish (hours of training must not be thrown
   * away for an edit further down the graph) and stop the cycle when they have settled, before it
   * spends long on steps the edit made stale.
   */
  const decide = async () => {
    const cycle = current
    if (cycle === undefined) return
    if (running.size === 0) {
      interruptCycle()
      return
    }
    const plan = await planSnapshot(recipe, options.runArgs)
    if (current !== cycle) return // it ended meanwhile; the loop starts the next one
    const affected = plan === undefined ? [] : [...running].filter(([id, key]) => plan.keys.get(id) !== key).map(([id]) => id)
    if (plan !== undefined && affected.length > 0) {
      cycleNote(`change affects running ${affected.join(", ")}: interrupting`)
      interruptCycle()
      return
    }
    drainFor = new Set(running.keys())
    cycleNote(`change does not affect running ${[...drainFor].join(", ")}: letting ${drainFor.size === 1 ? "it" : "them"} finish first`)
  }
  const onCycleEvent = (event: EngineEvent) => {
    if (event.event === "started") running.set(event.step, event.key)
    if (event.event === "step") {
      running.delete(event.step)
      drainFor?.delete(event.step)
      if (drainFor !== undefined && drainFor.size === 0) interruptCycle()
    }
  }

  const stop = () => {
    stopped = true
    stoppedByUs = true
    current?.interrupt()
    wake?.()
  }
  options.signal?.addEventListener("abort", stop, { once: true })

  const onFsEvent = (file: string) => {
    const abs = path.resolve(file)
    const now = contentHash(abs)
    if (hashes.has(abs) && hashes.get(abs) === now && now !== undefined) {
      // said, so that a save that changes nothing is visibly seen and ignored (tests wait for this line)
      cycleNote(`unchanged: ${rel(abs)} (same content): nothing to rerun`)
      return
    }
    hashes.set(abs, now)
    pending.add(abs)
    if (timer !== undefined) clearTimeout(timer)
    timer = setTimeout(() => {
      timer = undefined
      if (pending.size === 0) return // a cycle that started meanwhile took them
      if (current === undefined) wake?.()
      else void decide()
    }, debounceMs)
  }
  watcher.on("add", onFsEvent).on("change", onFsEvent).on("unlink", onFsEvent)

  const rel = (f: string) => path.relative(process.cwd(), f) || f
  const describeWatch = () =>
    `watching ${rel(recipe)}, ${modules.size - 1} local module${modules.size === 2 ? "" : "s"} and ${sources.size} source${sources.size === 1 ? "" : "s"}: save to rerun, Ctrl-C exits`

  let first = true
  while (!stopped) {
    if (!first && pending.size === 0) {
      note(describeWatch())
      await new Promise<void>((resolve) => (wake = resolve))
      wake = undefined
      if (stopped) break
      if (pending.size === 0) continue
    }
    const changed = [...pending]
    pending.clear()
    // this cycle takes these changes: their debounce timer must not interrupt it when it fires
    if (timer !== undefined) {
      clearTimeout(timer)
      timer = undefined
    }
    if (!first) note(`changed: ${changed.map(rel).join(", ")}`)
    if (!first && changed.some((f) => modules.has(f))) {
      // the code changed: its imports and its sources may have too
      const nextModules = new Set(localModules(recipe))
      const nextSources = (await planSnapshot(recipe, options.runArgs))?.sources
      const next = new Set([...nextModules, ...(nextSources ?? sources)])
      const before = new Set([...modules, ...sources])
      watcher.add([...next].filter((f) => !before.has(f)))
      watcher.unwatch([...before].filter((f) => !next.has(f) && f !== recipe))
      modules = nextModules
      if (nextSources !== undefined) sources = new Set(nextSources)
      remember(next)
    }
    first = false

    const cycleReporter = options.json ? undefined : await (options.makeReporter ?? defaultReporter(stdout))(stop)
    reporter = cycleReporter
    running.clear()
    drainFor = undefined
    stoppedByUs = false
    current = startCycle({
      recipe,
      runArgs: options.runArgs,
      onEvent: (event, line) => {
        onCycleEvent(event)
        if (cycleReporter === undefined) stdout.write(line + "\n")
        else cycleReporter.emit(event)
      },
      onOutput: (line) => stderr.write(line + "\n")
    })
    const result = await current.done
    current = undefined
    reporter = undefined
    await cycleReporter?.close?.()
    if (!result.completed && !stoppedByUs) {
      // the recipe did not load (or the engine crashed): say why, keep watching
      const message = result.stderr.trim() || `anneal run exited with code ${result.exitCode}`
      if (options.json) {
        stdout.write(JSON.stringify({ event: "log", step: null, level: "error", message }) + "\n")
        stderr.write(message + "\n")
      } else note(message)
    } else if (result.stderr.trim() !== "") stderr.write(result.stderr.trimEnd() + "\n")
  }

  if (timer !== undefined) clearTimeout(timer)
  await watcher.close()
  return 0
}

const defaultReporter = (stdout: NodeJS.WriteStream) => (quit: () => void): Promise<Reporter> =>
  makeTerminalReporter({ onInterrupt: quit, stdout })

/** Flags of `anneal watch` passed on to each `anneal run`. */
export const runArgsFrom = (values: Record<string, unknown>): Array<string> => {
  const out: Array<string> = []
  for (const name of ["store", "jobs", "gpus"]) if (typeof values[name] === "string") out.push(`--${name}`, values[name] as string)
  for (const name of ["allow-cpu", "keep-going"]) if (values[name] === true) out.push(`--${name}`)
  return out
}

/** The `watch` command: runs until Ctrl-C (or SIGTERM), then exits 0. */
export const watchCommand = async (recipe: string, values: Record<string, unknown>): Promise<number> => {
  const controller = new AbortController()
  const stop = () => controller.abort()
  process.on("SIGINT", stop)
  process.on("SIGTERM", stop)
  try {
    return await watchRecipe({ recipe, runArgs: runArgsFrom(values), json: values["json"] === true, signal: controller.signal })
  } finally {
    process.off("SIGINT", stop)
    process.off("SIGTERM", stop)
  }
}

/**
 * `anneal exec-step SPEC.json`: runs one step spec here, speaking the worker protocol on stdout. Cluster
 * executors submit exactly this command, so TS steps and Python workers run the same way on any node.
 */
import * as fs from "node:fs"
import { pathToFileURL } from "node:url"
import * as path from "node:path"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { UsageError } from "../engine/errors.ts"
import type { EngineEvent } from "../engine/events.ts"
import { makeLocalExecutor } from "../engine/executors/local.ts"
import type { StepSpec } from "../engine/spec.ts"
import "../steps/index.ts"

/** An engine event back in the worker protocol's shape. */
const toProtocol = (e: EngineEvent): Record<string, unknown> | undefined => {
  switch (e.event) {
    case "progress": {
      const { event: _event, step: _step, tokensPerSecond, ...rest } = e
      return { type: "progress", ...rest, tokens_per_second: tokensPerSecond }
    }
    case "metric":
      return { type: "metric", name: e.name, value: e.value }
    case "log":
      return { type: "log", level: e.level, message: e.message }
    default:
      return undefined
  }
}

export const execStep = async (specPath: string): Promise<number> => {
  let spec: StepSpec
  try {
    spec = JSON.parse(fs.readFileSync(specPath, "utf8")) as StepSpec
  } catch (e) {
    throw new UsageError({ message: `exec-step: cannot read spec ${specPath}: ${(e as Error).message}` })
  }
  if (spec.specVersion !== 1) throw new UsageError({ message: `exec-step: ${specPath} has spec version ${String(spec.specVersion)}, expected 1` })
  if (spec.implementation.type === "ts" && spec.recipe) {
    // registers the recipe's custom step kinds; its build function is not called
    await import(pathToFileURL(spec.recipe).href)
  }
  if (spec.implementation.type === "command") {
    // the argv names the spec file it was built with; this spec may be a copy elsewhere
    const original = spec.implementation.env.ANNEAL_SPEC
    const argv = spec.implementation.argv.map((a) => (a === original ? path.resolve(specPath) : a))
    spec = { ...spec, implementation: { ...spec.implementation, argv, env: { ...spec.implementation.env, ANNEAL_SPEC: path.resolve(specPath) } } }
  }
  fs.mkdirSync(spec.output, { recursive: true })
  const controller = new AbortController()
  const stop = () => controller.abort()
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
  const exit = await Effect.runPromiseExit(
    // one step per job: a warm process would import more than the step itself does
    makeLocalExecutor({ warm: false }).run(spec, (e) => {
      const line = toProtocol(e)
      if (line !== undefined) process.stdout.write(JSON.stringify(line) + "\n")
    }),
    { signal: controller.signal }
  )
  if (Exit.isSuccess(exit)) return 0
  if (Cause.hasInterruptsOnly(exit.cause)) {
    // Effect's own "All fibers interrupted without error" says nothing a user can act on
    process.stderr.write("interrupted\n")
    return 130
  }
  const error = Cause.squash(exit.cause)
  const reason = error instanceof Error ? error.message : String(error)
  process.stderr.write(`error: ${reason}\n`)
  return controller.signal.aborted ? 130 : 1
}

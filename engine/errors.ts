/**
 * Tagged errors with structured fields. Every one of these is a "bad input" error: the CLI prints its
 * one-line message and exits 2 without touching the store. Failures of steps themselves are
 * StepExecutionError (engine/spec.ts) and exit 1.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { CacheError, SourceError } from "../cache/errors.ts"

/** SourceError and CacheError belong to the cache layer (cache/errors.ts); re-exported for the engine's modules. */
export { CacheError, SourceError }

/** The recipe cannot be turned into a valid graph: bad params, wiring, ids, cycles, a module that throws. */
export class RecipeError extends Data.TaggedError("RecipeError")<{
  readonly message: string
  readonly step?: string | undefined
  readonly param?: string | undefined
  readonly file?: string | undefined
  readonly cause?: unknown
}> {
  /** Turns an effect/Schema decode error into "step "sft" (recipes/x.ts:12): param lr: Expected ..." */
  static fromSchema(step: string, kind: string, at: string, e: unknown): RecipeError {
    const raw = e instanceof Error ? e.message : String(e)
    const lines = raw.split("\n").map((l) => l.trim()).filter((l) => l.length > 0)
    // effect's message is "Expected ...\n  at ["lr"]" possibly repeated per issue; fold it onto one line
    const parts: Array<string> = []
    let pending: string | undefined
    let firstParam: string | undefined
    for (const l of lines) {
      const m = /^at (\[.*\])$/.exec(l)
      if (m !== null) {
        const p = pathOf(m[1]!)
        firstParam ??= p
        parts.push(`param ${p}: ${pending ?? "invalid"}`)
        pending = undefined
      } else {
        if (pending !== undefined) parts.push(pending)
        pending = l
      }
    }
    if (pending !== undefined) parts.push(pending)
    return new RecipeError({
      message: `step "${step}"${at} (${kind}): ${parts.join("; ")}`,
      step,
      param: firstParam,
      cause: e
    })
  }
}

const pathOf = (bracketed: string): string => {
  const keys = [...bracketed.matchAll(/\[("?)([^\]"]*)\1\]/g)].map((m) => m[2]!)
  const excess = keys.length === 0 ? bracketed : keys.join(".")
  return excess
}

/** Bad command-line use: unknown step id, bad flag value. */
export class UsageError extends Data.TaggedError("UsageError")<{
  readonly message: string
}> {}

export type BadInput = RecipeError | SourceError | UsageError | CacheError

/**
 * The tags of the errors that mean bad input: the recipe, a source, the command line, the store, or a
 * Python environment that is not installed (engine/python.ts's PythonEnvMissing). The CLI prints their
 * one-line message and exits 2; anything else that ends a command is an internal error (exit 1).
 */
const badInputTags: ReadonlySet<string> = new Set(["RecipeError", "SourceError", "UsageError", "CacheError", "PythonEnvMissing"])

export const isBadInput = (e: unknown): e is BadInput | { readonly _tag: "PythonEnvMissing"; readonly message: string } =>
  typeof e === "object" && e !== null && badInputTags.has((e as { _tag?: unknown })._tag as string)

/**
 * A call that throws (or a promise that rejects) as an Effect: a bad input (the tags above) goes into
 * the error channel as itself, anything else is a defect.
 */
export const badInputOf = <A>(f: () => A | Promise<A>): Effect.Effect<A, BadInput> =>
  Effect.tryPromise({ try: async () => await f(), catch: (e) => e }).pipe(
    Effect.catch((e) => (isBadInput(e) ? Effect.fail(e as BadInput) : Effect.die(e)))
  )

/** How a command that ended with `e` is reported: a bad input's one line and exit 2, else an internal error with its stack. */
export const commandFailure = (e: unknown): { readonly message: string; readonly exitCode: 1 | 2 } =>
  isBadInput(e)
    ? { message: e.message, exitCode: 2 }
    : { message: `internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`, exitCode: 1 }

/** An error's message, or the thrown value as text (a throw from outside code need not be an Error). */
export const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

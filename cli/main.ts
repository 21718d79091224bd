/**
 * The `anneal` command line. Exit codes: 0 success, 1 a step failed or the run was interrupted,
 * 2 bad recipe, bad input or bad usage (with a one-line message on stderr and the store untouched).
 */
import { parseArgs } from "node:util"
import type { ParseArgsConfig } from "node:util"
import { isBadInput, UsageError } from "../engine/errors.ts"
import { helpFor, usage } from "./help.ts"
import { commands } from "./commands.ts"

const fail = (message: string, code: number): never => {
  process.stderr.write(`anneal: ${message}\n`)
  process.exit(code)
}

const main = async () => {
  const argv = process.argv.slice(2)
  const name = argv[0]
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    process.stdout.write(name === "help" && argv[1] !== undefined ? helpFor(argv[1]) : usage)
    return 0
  }
  if (name === "--version" || name === "-v") {
    process.stdout.write((await import("./version.ts")).version + "\n")
    return 0
  }
  const command = commands[name]
  if (command === undefined) throw new UsageError({ message: `unknown command "${name}" (see anneal --help)` })
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(helpFor(name))
    return 0
  }
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({ args: argv.slice(1), options: command.options, allowPositionals: true, strict: true } as ParseArgsConfig)
  } catch (e) {
    throw new UsageError({ message: `${name}: ${(e as Error).message.split("\n")[0]}` })
  }
  return await command.run(parsed.values as Record<string, unknown>, parsed.positionals, argv)
}

let settled = false
// If the event loop empties while a command is still pending, something lost a callback: never let
// that look like success.
process.on("beforeExit", () => {
  if (!settled) fail("internal error: the command stopped without finishing (please report this)", 1)
})

main().finally(() => {
  settled = true
}).then(
  async (code) => {
    // In-process steps that ignored their abort signal may still hold timers: once the command is
    // done (and stdout flushed), leave rather than wait for them.
    await new Promise<void>((ok) => process.stdout.write("", () => ok()))
    await new Promise<void>((ok) => process.stderr.write("", () => ok()))
    process.exit(code ?? 0)
  },
  (e: unknown) => {
    if (isBadInput(e)) fail((e as { message: string }).message, 2)
    const err = e as Error
    if (err?.constructor?.name === "PythonEnvMissing") fail(err.message, 2)
    process.stderr.write(`anneal: internal error: ${err?.stack ?? String(e)}\n`)
    process.exit(1)
  }
)

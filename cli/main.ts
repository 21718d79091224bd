/**
 * The `anneal` command line. Exit codes: 0 success, 1 a step failed or the run was interrupted,
 * 2 bad recipe, bad input or bad usage (with a one-line message on stderr and the store untouched).
 */
import { parseArgs } from "node:util"
import type { ParseArgsConfig } from "node:util"
import { helpFor, usage } from "./help.ts"
// The commands (and through them the engine, Effect and execa) load only once a command is named:
// `anneal --help` and `--version` start in a fraction of the time.
type Commands = typeof import("./commands.ts")
let loaded: { readonly commands: Commands; readonly load: typeof import("../engine/load.ts"); readonly errors: typeof import("../engine/errors.ts") } | undefined
const loadCommands = async () => {
  const [commands, load, errors] = await Promise.all([import("./commands.ts"), import("../engine/load.ts"), import("../engine/errors.ts")])
  return (loaded = { commands, load, errors })
}

const fail = (message: string, code: number): never => {
  process.stderr.write(`anneal: ${message}\n`)
  process.exit(code)
}

// A reader that went away (`anneal cache ls | head -1`) is not an error: stop writing, say nothing.
// The command itself goes on, so a run still records how it ended.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e
  })
}

/**
 * parseArgs refuses `--jobs -1` as "ambiguous" (the value looks like a flag); a negative number after
 * a flag that takes a value is that flag's value, which the command then rejects with its own message.
 */
const joinNegativeValues = (args: ReadonlyArray<string>, options: ParseArgsConfig["options"]): Array<string> => {
  const takesValue = (flag: string): boolean => {
    const entries = Object.entries(options ?? {})
    const o = flag.startsWith("--") ? options?.[flag.slice(2)] : entries.find(([, x]) => x.short === flag.slice(1))?.[1]
    return o?.type === "string"
  }
  const out: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    const next = args[i + 1]
    if (/^--?[A-Za-z]/.test(a) && !a.includes("=") && next !== undefined && /^-\d/.test(next) && takesValue(a)) {
      out.push(a.startsWith("--") ? `${a}=${next}` : `${a}${next}`)
      i++
    } else out.push(a)
  }
  return out
}

/** Flags that name a place: an empty value would silently mean the current directory. */
const pathFlags = ["store", "recipe"]

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
  const { commands: { commands }, errors: { UsageError } } = await loadCommands()
  const command = commands[name]
  if (command === undefined) throw new UsageError({ message: `unknown command "${name}" (see anneal --help)` })
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(helpFor(name))
    return 0
  }
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({ args: joinNegativeValues(argv.slice(1), command.options), options: command.options, allowPositionals: true, strict: true } as ParseArgsConfig)
  } catch (e) {
    throw new UsageError({ message: `${name}: ${(e as Error).message.split("\n")[0]}` })
  }
  for (const f of pathFlags) {
    if (parsed.values[f] === "") throw new UsageError({ message: `${name}: --${f} needs a path, got an empty string` })
  }
  return await command.run(parsed.values as Record<string, unknown>, parsed.positionals, argv)
}

let settled = false
// If the event loop empties while a command is still pending, something lost a callback: never let
// that look like success.
process.on("beforeExit", () => {
  const recipe = loaded?.load.recipeStillLoading()
  if (!settled && recipe !== undefined) {
    fail(`recipe ${recipe} never finished loading: a top-level await in it (or in a module it imports) never settles`, 2)
  }
  if (!settled) fail("internal error: the command stopped without finishing (please report this)", 1)
})

/**
 * tsx writes its transform cache (each TypeScript file compiled once per content) with asynchronous
 * file writes while modules load. Exiting at once cut them short and left empty cache files, so every
 * command compiled its changed sources again (about 0.3 s of CPU at each start of a checkout). Pending
 * file requests are let finish first, for at most 250 ms.
 */
const settleFileWrites = async () => {
  const deadline = performance.now() + 250
  while (performance.now() < deadline && process.getActiveResourcesInfo().includes("FSReqPromise")) {
    await new Promise((ok) => setTimeout(ok, 1))
  }
}

main().finally(() => {
  settled = true
}).then(
  async (code) => {
    // In-process steps that ignored their abort signal may still hold timers: once the command is
    // done (and stdout flushed), leave rather than wait for them.
    await new Promise<void>((ok) => process.stdout.write("", () => ok()))
    await new Promise<void>((ok) => process.stderr.write("", () => ok()))
    await settleFileWrites()
    process.exit(code ?? 0)
  },
  (e: unknown) => {
    // the engine's errors are tagged (engine/errors.ts says which mean bad input); before the engine
    // loaded, nothing but a bug can throw
    const { message, exitCode } = loaded?.errors.commandFailure(e) ?? { message: `internal error: ${(e as Error)?.stack ?? String(e)}`, exitCode: 1 }
    fail(message, exitCode)
  }
)

/**
 * The local executor: TS steps run in this process, command steps (Python workers, user programs) as
 * child processes with execa (argument arrays, never a shell). A child's stdout carries the worker
 * protocol's JSON lines (progress, metric, log), everything else goes to the step's log file.
 * Each command runs under a small supervisor (supervise.mjs) as the leader of its own process group.
 * Interruption sends SIGTERM to the group, then SIGKILL after a grace period, and waits for it to exit;
 * if anneal exits first, the group is killed, and if anneal is killed with -9 the supervisor kills it.
 * TS steps run in this process: when interrupted, their signal aborts and a step that returned a promise
 * is waited for (see runImplementation), so it never writes into a staging directory that was already
 * discarded. Worker threads could stop a step that ignores its signal, but would make every TS step
 * re-import its recipe and anneal in a fresh thread; a second Ctrl-C ends the process instead.
 */
import * as fs from "node:fs"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { execa as Execa } from "execa"
import type { EngineEvent } from "../events.ts"
import type { ExecResult, Executor, StepSpec } from "../spec.ts"
import { StepExecutionError } from "../spec.ts"
import { lookupKind, runImplementation } from "../step.ts"
import type { StepContext } from "../step.ts"
import { sharedWarmWorkers, warmWorkersEnabled, type WarmWorkers } from "../warm-workers.ts"
import { protocolEvent } from "./codec.ts"
import { registerExecutor } from "./registry.ts"

/** The worker protocol's decoder lives in ./codec.ts, shared with the cluster executor. */
export { protocolEvent }

/** Seconds a child gets to exit after SIGTERM before SIGKILL. */
export const killGraceSeconds = 10

/** A TS step's log, opened at its first line (the engine made the file while preparing; most steps write none). */
class LogFile {
  private fd: number | undefined
  readonly tail: Array<string> = []
  constructor(readonly file: string) {}
  write(line: string) {
    this.fd ??= fs.openSync(this.file, "a")
    fs.writeSync(this.fd, line.endsWith("\n") ? line : line + "\n")
    const t = line.trim()
    if (t !== "") {
      this.tail.push(t)
      if (this.tail.length > 30) this.tail.shift()
    }
  }
  close() {
    if (this.fd === undefined) return
    try {
      fs.closeSync(this.fd)
    } catch {
      // already closed
    }
    this.fd = undefined
  }
}

const runTs = (spec: StepSpec, emit: (e: EngineEvent) => void): Effect.Effect<ExecResult, StepExecutionError> =>
  Effect.suspend(() => {
    const def = lookupKind(spec.kind)
    if (def === undefined) {
      return Effect.fail(new StepExecutionError(spec.step, `unknown step kind "${spec.kind}" (is the module that defines it imported by the recipe?)`))
    }
    const log = new LogFile(spec.logPath)
    const metrics: Record<string, number | string> = {}
    const controller = new AbortController()
    // once interrupted, a step that ignores its signal must not report anything more
    const report = (e: EngineEvent) => {
      if (!controller.signal.aborted) emit(e)
    }
    let decoded: unknown
    try {
      decoded = Schema.decodeUnknownSync(def.params as Schema.Codec<unknown, unknown>)(spec.params)
    } catch (e) {
      log.close()
      return Effect.fail(new StepExecutionError(spec.step, `params do not decode: ${(e as Error).message}`))
    }
    let resumeMade = false
    const ctx: StepContext<unknown, Record<string, never>> = {
      step: spec.step,
      key: spec.key,
      params: decoded,
      inputs: spec.inputs as never,
      output: spec.output,
      // made on first use (the engine makes it only for worker processes)
      get resumeDir() {
        if (!resumeMade) {
          fs.mkdirSync(spec.resumeDir, { recursive: true })
          resumeMade = true
        }
        return spec.resumeDir
      },
      gpus: spec.devices.gpus,
      cpus: spec.devices.cpus,
      seed: spec.seed,
      signal: controller.signal,
      progress: (p) => report({ event: "progress", step: spec.step, ...p }),
      metric: (name, value) => {
        metrics[name] = value
        log.write(`metric ${name} = ${value}`)
        report({ event: "metric", step: spec.step, name, value })
      },
      log: (message, level = "info") => {
        log.write(`[${level}] ${message}`)
        report({ event: "log", step: spec.step, level, message })
      }
    }
    // a step that returned a promise is waited for after its signal aborts (see runImplementation);
    // one that has not settled after the grace period is named, so the wait is not a mystery
    let slow: NodeJS.Timeout | undefined
    const abort = () => {
      controller.abort()
      slow = setTimeout(() => {
        const message = `step "${spec.step}" has not stopped ${killGraceSeconds}s after the interrupt; waiting for it to return (it should check ctx.signal; a second Ctrl-C quits at once)`
        log.write(`[warn] ${message}`)
        emit({ event: "log", step: spec.step, level: "warn", message })
      }, killGraceSeconds * 1000)
      slow.unref()
    }
    return runImplementation(def as never, ctx as never, abort).pipe(
      Effect.mapError((e) => {
        const message = e instanceof Error ? e.message : String(e)
        log.write(`[error] ${e instanceof Error ? e.stack ?? message : message}`)
        return new StepExecutionError(spec.step, message, undefined, e)
      }),
      Effect.map((): ExecResult => ({ metrics })),
      Effect.onInterrupt(() => Effect.sync(() => controller.abort())),
      Effect.ensuring(Effect.sync(() => {
        clearTimeout(slow)
        log.close()
      }))
    )
  })

/**
 * The failed rank in torchrun's closing summary ("Root Cause (first observed failure)" with rank, exitcode
 * and traceback lines), as one line: the summary's last line is a row of "=" that says nothing.
 */
export const torchrunFailure = (tail: ReadonlyArray<string>): string | undefined => {
  const start = tail.findLastIndex((l) => l.startsWith("Root Cause"))
  if (start < 0) return undefined
  const field = (name: string) => tail.slice(start).find((l) => l.startsWith(name))?.replace(/^[a-z_]+\s*:\s*/, "")
  const rank = field("rank")
  if (rank === undefined) return undefined
  return `torchrun: rank ${rank} failed (exit code ${field("exitcode")?.split(" ")[0] ?? "?"}): ${field("traceback") ?? "see its log"}`
}

const supervisor = fileURLToPath(new URL("./supervise.mjs", import.meta.url))

const signalGroup = (group: number, signal: NodeJS.Signals) => {
  try {
    process.kill(-group, signal)
  } catch {
    // already gone
  }
}

/**
 * Process groups of command steps still running. When anneal exits without waiting for them (a second
 * Ctrl-C exits at once), they are killed outright: a step that ignores SIGTERM must not outlive it.
 */
const liveGroups = new Set<number>()
process.on("exit", () => {
  for (const group of liveGroups) signalGroup(group, "SIGKILL")
})

/**
 * execa and its dependencies (~140 modules) load when the first command step starts: `plan`, `steps`
 * and a run that starts no process never pay for them.
 */
const loadExeca = (step: string): Effect.Effect<typeof Execa, StepExecutionError> =>
  Effect.tryPromise({
    try: async () => (await import("execa")).execa,
    catch: (e) => new StepExecutionError(step, `cannot load execa, which starts its process: ${(e as Error).message}`, undefined, e)
  })

const runCommand = (
  spec: StepSpec,
  impl: Extract<StepSpec["implementation"], { type: "command" }>,
  emit: (e: EngineEvent) => void,
  warm: WarmWorkers | undefined
): Effect.Effect<ExecResult, StepExecutionError> =>
  Effect.flatMap(loadExeca(spec.step), (execa) => runCommandWith(execa, spec, impl, emit, warm))

const runCommandWith = (
  execa: typeof Execa,
  spec: StepSpec,
  impl: Extract<StepSpec["implementation"], { type: "command" }>,
  emit: (e: EngineEvent) => void,
  warm: WarmWorkers | undefined
): Effect.Effect<ExecResult, StepExecutionError> =>
  Effect.callback<ExecResult, StepExecutionError>((resume) => {
    if (impl.argv.length === 0) return resume(Effect.fail(new StepExecutionError(spec.step, "its command has an empty argv")))
    const nodes = spec.params["nodes"]
    if (typeof nodes === "number" && nodes > 1) {
      return resume(Effect.fail(new StepExecutionError(
        spec.step,
        `param nodes is ${nodes}: a multi-node step runs on the Slurm or Ray executor (--executor slurm|ray), not on this machine`
      )))
    }
    const log = new LogFile(spec.logPath)
    try {
      log.write(`$ ${impl.argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(" ")}`)
    } catch (e) {
      return resume(Effect.fail(new StepExecutionError(spec.step, `cannot open the step's log ${spec.logPath}: ${(e as Error).message}`, undefined, e)))
    }
    const metrics: Record<string, number | string> = {}
    let lastError: string | undefined
    // through the supervisor (supervise.mjs), as the leader of its own process group: signals reach the
    // step and everything it started, and the group dies with anneal even when anneal is killed with -9
    // a Python worker may start from the warm process (engine/warm-workers.ts): same group, pipes and exit
    const argv = warm?.command(impl.argv) ?? impl.argv
    const warmWarning = warm?.takeWarning()
    if (warmWarning !== undefined) emit({ event: "log", step: null, level: "warn", message: warmWarning })
    const child = execa(process.execPath, [supervisor, String(killGraceSeconds * 1000), ...argv], {
      env: {
        ...process.env,
        ...impl.env,
        CUDA_VISIBLE_DEVICES: spec.devices.gpus.join(","),
        ANNEAL_STEP: spec.step
      },
      extendEnv: false,
      cwd: impl.cwd,
      stdin: "pipe", // never written: its end-of-file tells the supervisor that anneal is gone
      buffer: false,
      reject: false,
      cleanup: false,
      detached: true
    })
    const group = child.pid
    if (group !== undefined) liveGroups.add(group)
    const lines = readline.createInterface({ input: child.stdout! })
    const errLines = readline.createInterface({ input: child.stderr! })
    // registered now, before any output can arrive, so a fast child's close is never missed
    const closed = [
      new Promise<void>((ok) => lines.once("close", () => ok())),
      new Promise<void>((ok) => errLines.once("close", () => ok()))
    ]
    lines.on("line", (line) => {
      const event = protocolEvent(spec.step, line, metrics)
      if (event === undefined) {
        log.write(line)
        return
      }
      if (event.event === "log") {
        log.write(`[${event.level}] ${event.message}`)
        if (event.level === "error") lastError = event.message
      }
      emit(event)
    })
    errLines.on("line", (line) => log.write(line))
    let settled = false
    const finish = (outcome: Effect.Effect<ExecResult, StepExecutionError>) => {
      if (group !== undefined) liveGroups.delete(group)
      if (settled) return
      settled = true
      log.close()
      resume(outcome)
    }
    child.then(
      async (r) => {
        // let the readers drain what the child printed before it exited
        await Promise.all(closed)
        if (r.exitCode === 0) return finish(Effect.succeed({ metrics }))
        const why = r.signal !== undefined && r.signal !== null ? `killed by ${r.signal}` : `exit code ${r.exitCode}`
        const detail = lastError ?? torchrunFailure(log.tail) ?? log.tail.filter((l) => !l.startsWith("$ ")).at(-1) ?? "no output"
        finish(Effect.fail(new StepExecutionError(spec.step, `${why}: ${detail}`, r.exitCode ?? undefined)))
      },
      (e: unknown) => {
        const why = impl.cwd !== undefined && !fs.existsSync(impl.cwd) ? `its working directory ${impl.cwd} does not exist` : (e as Error).message
        finish(Effect.fail(new StepExecutionError(spec.step, `could not start ${impl.argv[0]}: ${why}`, undefined, e)))
      }
    )
    // the canceler: SIGTERM to the group now, SIGKILL after the grace period, and wait for the exit.
    // It cannot reject (signalGroup and log.close catch, the child's rejection is caught), as a
    // canceler, which has no error channel, must not
    return Effect.promise(async () => {
      if (group !== undefined) signalGroup(group, "SIGTERM")
      const force = setTimeout(() => group !== undefined && signalGroup(group, "SIGKILL"), killGraceSeconds * 1000)
      await child.catch(() => undefined)
      clearTimeout(force)
      if (group !== undefined) liveGroups.delete(group)
      settled = true
      log.close()
    })
  })

/**
 * `warm`: Python steps fork from the process's warm Python process (engine/warm-workers.ts); default on
 * unless ANNEAL_WARM_WORKERS=0. `close` ends the warm process; a later Python step starts a new one.
 */
export const makeLocalExecutor = (options: { readonly warm?: boolean } = {}): Executor => {
  const warm = () => (options.warm ?? warmWorkersEnabled()) ? sharedWarmWorkers() : undefined
  return {
    name: "local",
    run: (spec, emit) => {
      const impl = spec.implementation
      return impl.type === "ts" ? runTs(spec, emit) : runCommand(spec, impl, emit, warm())
    },
    close: () => warm()?.close() ?? Promise.resolve()
  }
}

registerExecutor({
  name: "local",
  make: (_config, { project }) => makeLocalExecutor(project.warmWorkers === false ? { warm: false } : {}),
  describe: (_config, _step, _kind, r) =>
    `local: ${r.gpus} GPU, ${r.cpus} CPU${r.memoryGb !== undefined && r.memoryGb > 0 ? `, ${r.memoryGb} GiB` : ""}`
})

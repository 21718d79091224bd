/**
 * Warm Python workers: `import torch, transformers, trl, peft` costs ~12 s on a small machine, so a tiny
 * Python step is mostly imports. The local executor keeps one warm process per run
 * (python/anneal_worker/warm_server.py) that has imported them once; each Python step forks from it.
 *
 * Nothing else about a step changes: its command still runs under the supervisor, as the same process
 * group, with the same pipes, environment, working directory, CUDA_VISIBLE_DEVICES, signals and exit
 * status. Only the argv is rewritten, to `python -S -E warm_client.py SOCKET ARGV...`: a client that starts
 * in milliseconds, hands its pipes to the warm process and exits as the forked step exits, or execs
 * ARGV itself (a cold start) when the warm process is gone or declines. Only `PYTHON SCRIPT.py ARGS...`
 * with this project's interpreter starts warm; torchrun commands and other programs start cold.
 *
 * The warm process starts with the first Python step and imports in the background (steps that start
 * before it is ready start cold, never wait for it), ends when the run ends (`close`; the next Python step starts a new one),
 * and exits by itself when anneal dies (its stdin pipe closes). One per anneal process: local executors
 * share it, so executors that are never closed (tests) do not each import torch. If it crashes, the
 * steps that follow start cold until it is closed. `ANNEAL_WARM_WORKERS=0` turns the mechanism off.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { pythonEnvVars, pythonExecutable, pythonPath } from "./python.ts"

export const warmWorkersEnabled = (): boolean => process.env.ANNEAL_WARM_WORKERS !== "0"

export const warmClientScript = path.join(pythonPath(), "anneal_worker", "warm_client.py")

export interface WarmWorkers {
  /** the argv that starts this command from the warm process, or undefined when it starts cold */
  readonly command: (argv: ReadonlyArray<string>) => ReadonlyArray<string> | undefined
  /** a warning to report once: the warm process died and steps now start cold */
  readonly takeWarning: () => string | undefined
  /** starts the warm process if needed; resolves when it has imported everything, false if it died */
  readonly warmUp: () => Promise<boolean>
  /** steps forked so far from this pool's warm processes */
  readonly forks: () => number
  /** the warm process's pid, once started */
  readonly pid: () => number | undefined
  /** stops the warm process (steps still running from it finish first) and waits for it to exit; the
   * next command starts a new one */
  readonly close: () => Promise<void>
}

/** Seconds the warm process gets to exit after SIGTERM at the end of a run before SIGKILL. */
const closeGraceMs = 10_000

export const makeWarmWorkers = (options: { readonly preload?: ReadonlyArray<string> } = {}): WarmWorkers => {
  let server: ChildProcess | undefined
  let dir: string | undefined
  let socket: string | undefined
  let exited: Promise<void> = Promise.resolve()
  let isReady: Promise<boolean> = Promise.resolve(false)
  let dead = false
  let closing = false
  let warning: string | undefined
  let forked = 0

  const start = (): string => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-warm-"))
    const socket = path.join(dir, "socket")
    const logFd = fs.openSync(path.join(dir, "log"), "a")
    const preload = options.preload === undefined ? [] : ["--preload", options.preload.join(",")]
    // the environment a step gets, less its per-step variables: the server declines any other
    dead = false
    const child = spawn(pythonExecutable(), ["-m", "anneal_worker.warm_server", socket, ...preload], {
      env: { ...process.env, ...pythonEnvVars() },
      stdio: ["pipe", "pipe", logFd],
      detached: true
    })
    fs.closeSync(logFd)
    server = child
    const lines = readline.createInterface({ input: child.stdout! })
    isReady = new Promise<boolean>((ok) => {
      lines.on("line", (line) => {
        if (line === "ready") ok(true)
        else if (line.startsWith("forked ")) forked++
      })
      child.once("exit", () => ok(false))
      child.once("error", () => ok(false))
    })
    exited = new Promise<void>((ok) => {
      child.once("exit", () => ok())
      child.once("error", () => ok())
    })
    const logFile = path.join(dir, "log")
    child.once("exit", (code, signal) => {
      dead = true
      if (!closing) {
        let tail = ""
        try {
          tail = fs.readFileSync(logFile, "utf8").trim().split("\n").slice(-3).join(" | ")
        } catch {
          // its folder is gone
        }
        warning = `the warm Python process exited (${signal ?? `code ${code}`}); Python steps start cold from now on. Its log: ${tail}`
      }
    })
    child.on("error", () => {
      dead = true
    })
    // anneal's exit must not wait for it: it exits by itself when its stdin closes
    child.unref()
    for (const s of [child.stdin, child.stdout]) (s as unknown as { unref?: () => void } | null)?.unref?.()
    live.set(child, dir)
    void exited.then(() => live.delete(child))
    return socket
  }

  return {
    command: (argv) => {
      if (dead || argv.length < 2 || argv[0] !== pythonExecutable()) return undefined
      if (!argv[1]!.endsWith(".py") || argv[1]!.startsWith("-")) return undefined
      socket ??= start()
      return [argv[0]!, "-S", "-E", warmClientScript, socket, ...argv]
    },
    takeWarning: () => {
      const w = warning
      warning = undefined
      return w
    },
    warmUp: () => {
      socket ??= start()
      return isReady
    },
    forks: () => forked,
    pid: () => server?.pid,
    close: async () => {
      const [child, done, folder] = [server, exited, dir]
      if (child === undefined) return
      server = socket = dir = undefined
      closing = true
      child.kill("SIGTERM")
      const force = setTimeout(() => child.kill("SIGKILL"), closeGraceMs)
      await done
      clearTimeout(force)
      closing = false
      dead = false
      if (folder !== undefined) fs.rmSync(folder, { recursive: true, force: true })
    }
  }
}

let shared: WarmWorkers | undefined
/** The warm workers of this anneal process, shared by its local executors. */
export const sharedWarmWorkers = (): WarmWorkers => (shared ??= makeWarmWorkers())

/** Warm processes still running when anneal exits without closing them (a second Ctrl-C). */
const live = new Map<ChildProcess, string>()
process.on("exit", () => {
  for (const [child, dir] of live) {
    child.kill("SIGKILL")
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

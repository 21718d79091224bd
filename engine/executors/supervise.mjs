/**
 * The supervisor between anneal and a command step: `node supervise.mjs GRACE_MS ARGV...`.
 *
 * anneal starts it as the leader of a new process group (and session), with a pipe on its stdin that
 * anneal never writes to. It runs ARGV in that group with stdout and stderr passed straight through, and
 * exits the way ARGV exited (same code, same signal). Its one job: when anneal dies, even by kill -9,
 * the pipe reaches end-of-file, and the supervisor sends SIGTERM to the whole group, then SIGKILL after
 * GRACE_MS, so no step process outlives anneal. Python workers also watch their own parent; this covers
 * every command step, whatever it runs.
 *
 * While anneal lives, it signals the group itself (SIGTERM, then SIGKILL): the supervisor ignores
 * SIGTERM and SIGINT so that it stays to report how the step ended. Plain JavaScript, so Node runs it
 * directly, without anneal's TypeScript loader.
 */
import { spawn } from "node:child_process"

const [graceArg, command, ...args] = process.argv.slice(2)
const graceMs = Number(graceArg)
if (command === undefined || !Number.isFinite(graceMs)) {
  process.stderr.write("usage: supervise.mjs GRACE_MS COMMAND [ARGS...]\n")
  process.exit(2)
}

process.on("SIGTERM", () => undefined)
process.on("SIGINT", () => undefined)

const signalGroup = (signal) => {
  try {
    process.kill(-process.pid, signal)
  } catch {
    // the group is already gone
  }
}

let orphaned = false
const parentGone = () => {
  if (orphaned) return
  orphaned = true
  signalGroup("SIGTERM")
  setTimeout(() => signalGroup("SIGKILL"), graceMs).unref()
}
// end-of-file on the pipe means anneal exited or was killed; a changed parent pid says the same
process.stdin.on("end", parentGone)
process.stdin.on("error", parentGone)
process.stdin.on("close", parentGone)
process.stdin.resume()
const parent = process.ppid
setInterval(() => {
  if (process.ppid !== parent) parentGone()
}, 1000).unref()

const child = spawn(command, args, { stdio: ["ignore", "inherit", "inherit"] })
child.on("error", (e) => {
  process.stderr.write(`could not start ${command}: ${e.message}\n`)
  process.exit(127)
})
child.on("exit", (code, signal) => {
  // whatever the step left behind in its group (grandchildren) goes with it when anneal is gone
  if (orphaned) signalGroup("SIGKILL")
  if (signal !== null) {
    process.removeAllListeners(signal)
    process.kill(process.pid, signal)
    return
  }
  process.exit(code ?? 1)
})

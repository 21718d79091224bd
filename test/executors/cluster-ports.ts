/** Free ports, readiness waits and process ownership for the test clusters (Slurm, Ray) the executor tests start. */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

export const freePorts = async (n: number): Promise<Array<number>> => {
  const ports = new Set<number>()
  while (ports.size < n) ports.add(await freePort())
  return [...ports]
}

/**
 * How long a test waits for a cluster job to show progress, and how long such a test may run: bounds
 * for a loaded 2-core machine (a job is a node process loading anneal, then a Python worker), not
 * expectations; a test that passes never waits them out.
 */
export const jobWaitMs = 300_000
export const clusterTestTimeoutMs = 600_000

export const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms))

/** Polls until `check` returns a value (not undefined), the deadline passes, or `cancelled()` turns true. */
export const waitFor = async <A>(
  what: string,
  check: () => Promise<A | undefined> | A | undefined,
  timeoutMs: number,
  everyMs = 250,
  cancelled: () => boolean = () => false
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    if (cancelled()) throw new Error(`stopped while waiting for ${what}`)
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (e) {
      lastError = e
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError !== undefined ? `: ${(lastError as Error).message}` : ""}`)
    }
    await sleep(everyMs)
  }
}

/** True while a process with this id exists. */
export const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** SIGTERM, then SIGKILL after `graceMs`, for processes this test started (by id). */
export const stopPids = async (pids: ReadonlyArray<number>, graceMs = 5000): Promise<void> => {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGTERM")
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + graceMs
  while (pids.some(isRunning) && Date.now() < deadline) await sleep(100)
  for (const pid of pids.filter(isRunning)) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
}

export interface Proc {
  readonly pid: number
  readonly ppid: number
  readonly pgid: number
}

/** Every live (not zombie) process, from /proc. */
export const listProcesses = (): Array<Proc> => {
  const procs: Array<Proc> = []
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (fields[0] === "Z") continue
      procs.push({ pid: Number(name), ppid: Number(fields[1]), pgid: Number(fields[2]) })
    } catch {
      // exited while listing
    }
  }
  return procs
}

const environOf = (pid: number): Array<string> => {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")
  } catch {
    return []
  }
}

/**
 * What a test cluster owns: the processes whose environment holds one of `marks` ("NAME=value", set
 * on the daemons it started and so inherited by everything they start, daemonized or not) or whose
 * process group is one of `groups`, and all their descendants. Never this process or its ancestors.
 */
export const ownedProcesses = (marks: ReadonlyArray<string>, groups: ReadonlyArray<number> = []): Array<number> => {
  const procs = listProcesses()
  const spared = new Set<number>()
  for (let pid: number | undefined = process.pid; pid !== undefined && pid > 1 && !spared.has(pid); pid = procs.find((p) => p.pid === pid)?.ppid) {
    spared.add(pid)
  }
  const mine = new Set<number>()
  for (const p of procs) {
    if (spared.has(p.pid)) continue
    if (groups.includes(p.pgid) || (marks.length > 0 && environOf(p.pid).some((e) => marks.includes(e)))) mine.add(p.pid)
  }
  return [...withDescendants(mine, procs, spared)]
}

/** `roots` and all their descendants among `procs`, but none of `spared` (nor what descends from it). */
export const withDescendants = (roots: Iterable<number>, procs: ReadonlyArray<Pick<Proc, "pid" | "ppid">>, spared: ReadonlySet<number> = new Set()): Set<number> => {
  const tree = new Set(roots)
  for (let grew = true; grew;) {
    grew = false
    for (const p of procs) {
      if (!tree.has(p.pid) && !spared.has(p.pid) && tree.has(p.ppid)) {
        tree.add(p.pid)
        grew = true
      }
    }
  }
  return tree
}

/** `signal` to each of `pids` that is still there. */
export const signalAll = (pids: Iterable<number>, signal: NodeJS.Signals) => {
  for (const pid of pids) {
    try {
      process.kill(pid, signal)
    } catch {
      // already gone
    }
  }
}

/** SIGTERM to what `find` returns, then SIGKILL to whatever it still returns after `graceMs`. */
export const stopOwned = async (find: () => Array<number>, graceMs = 8000): Promise<void> => {
  signalAll(find(), "SIGTERM")
  const deadline = Date.now() + graceMs
  while (find().length > 0 && Date.now() < deadline) await sleep(200)
  // twice: a parent killed mid-fork can leave a child that the first listing did not see
  for (let i = 0; i < 2; i++) {
    const left = find()
    if (left.length === 0) return
    signalAll(left, "SIGKILL")
    await sleep(200)
  }
}

/** SIGKILL to what `find` returns, synchronously: for `process.on("exit")`, where nothing can wait. */
export const killOwnedNow = (find: () => Array<number>) => signalAll(find(), "SIGKILL")

/**
 * Starts a detached watchdog (cluster-reaper.mjs) that ends the processes marked with `marks` once
 * this test process is gone, killed by a signal included, when neither afterAll nor an exit hook can
 * run. Returns a function that dismisses it (after a normal stop). Its own environment has no mark.
 */
export const startReaper = (marks: ReadonlyArray<string>): (() => void) => {
  const env = { ...process.env }
  for (const m of marks) {
    const name = m.slice(0, m.indexOf("="))
    if (env[name] === m.slice(name.length + 1)) delete env[name]
  }
  const child = spawn(process.execPath, [path.join(path.dirname(fileURLToPath(import.meta.url)), "cluster-reaper.mjs"), String(process.pid), ...marks], {
    detached: true,
    stdio: "ignore",
    env
  })
  child.unref()
  return () => {
    try {
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL")
    } catch {
      // already gone
    }
  }
}

/**
 * Runs `attempt` until it succeeds, `isStopped()` turns true, or the deadline passes; each attempt
 * gets the time left. A failed attempt must clean up after itself before it throws.
 */
export const retryUntil = async <A>(
  what: string,
  attempt: (timeLeftMs: number, n: number) => Promise<A>,
  deadlineMs: number,
  isStopped: () => boolean
): Promise<A> => {
  const deadline = Date.now() + deadlineMs
  const errors: Array<string> = []
  for (let n = 1; ; n++) {
    if (isStopped()) throw new Error(`${what}: stopped before it was ready`)
    try {
      return await attempt(deadline - Date.now(), n)
    } catch (e) {
      const message = (e as Error).message
      // whatever went wrong after stop() was called came from being stopped
      if (isStopped()) throw new Error(`${what}: stopped while starting`)
      errors.push(`attempt ${n}: ${message.split("\n")[0]}`)
      // a short backoff, so a busy machine can catch up; never past the deadline
      if (Date.now() + 2000 > deadline) {
        throw new Error(`${what} failed after ${n} attempt${n > 1 ? "s" : ""} in ${Math.round(deadlineMs / 1000)} s: ${errors.join("; ")}\n${message}`)
      }
      process.stderr.write(`${what}: attempt ${n} failed, retrying: ${message.split("\n")[0]}\n`)
      await sleep(Math.min(5000, 1000 * n))
    }
  }
}

/** Child processes a test started (drivers, CLI runs), so afterAll can end them when a test timed out. */
const trackedChildren = new Set<{ kill(signal?: NodeJS.Signals): unknown; readonly exitCode?: number | null }>()

export const track = <C extends { kill(signal?: NodeJS.Signals): unknown; readonly exitCode?: number | null }>(child: C): C => {
  trackedChildren.add(child)
  return child
}

/** SIGKILL to every tracked child still running. */
export const killTracked = () => {
  for (const c of trackedChildren) {
    try {
      c.kill("SIGKILL")
    } catch {
      // already gone
    }
  }
  trackedChildren.clear()
}

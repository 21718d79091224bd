/** Free TCP ports on loopback for the daemons the executor tests start. */
import * as net from "node:net"

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

export const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms))

/** Polls until `check` returns a value (not undefined) or the deadline passes. */
export const waitFor = async <A>(what: string, check: () => Promise<A | undefined> | A | undefined, timeoutMs: number, everyMs = 250): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
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

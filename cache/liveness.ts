/**
 * Is the process that holds a lock or a lease still alive? On this host the kernel knows (signal 0).
 * A pid from another host means nothing here, so there the answer comes from the holder's heartbeat in
 * the `processes` table: a holder whose heartbeat is older than the expiry is dead. Runs beat every
 * HEARTBEAT_S seconds; the expiry is long enough that a driver busy hashing a large output (a
 * synchronous commit) is not declared dead.
 */
import * as os from "node:os"

export const HEARTBEAT_S = 15

/** Seconds after the last heartbeat before a holder on another host is presumed dead. */
export const expirySeconds = (): number => {
  const v = Number(process.env.ANNEAL_LEASE_EXPIRY_S)
  return Number.isFinite(v) && v > 0 ? v : 600
}

// asked once: a step's prepare, lock and commit named the host six times, a uname(2) each
const host = os.hostname()

/** This machine's name, as locks, leases and staging directories record it. */
export const thisHost = (): string => host

/** Whether a pid on this host is running (EPERM: it is, but belongs to someone else). */
export const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * A holder recorded as (pid, host). `host` "" is a record from before hosts were stored: judged as local,
 * the old behaviour. `heartbeatAt` is the holder's last heartbeat (seconds), or, when it never registered,
 * the time it took what it holds.
 */
export const holderAlive = (pid: number, host: string, heartbeatAt: number | undefined, now = Date.now() / 1000): boolean => {
  if (host === "" || host === thisHost()) return pidAlive(pid)
  if (heartbeatAt === undefined) return true
  return now - heartbeatAt < expirySeconds()
}

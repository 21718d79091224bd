/**
 * Collection of a node's scratch store (`<scratch>/store`, cache/remote/node-job.ts), run by each job
 * on the node as it ends. The scratch store is a cache of the remote: nothing in it is the only copy
 * (every input came from the remote, every output was uploaded before the job's exit record), so the
 * policy is a disk cache's, least recently used first, with one hard rule: what a live job on the node
 * uses stays.
 *
 * - In use: an artifact a live job leases (the node job leases each input before it checks it, and its
 *   output as it commits it; cache/store.ts) is never removed; a lease whose holder died is broken
 *   (the pid, on this host). These count toward the cap first, even when they alone exceed it.
 * - Kept: the other artifacts, most recently used first (a job touches each input it reuses), while the
 *   store stays within `maxBytes` and they were used within `maxAgeDays`; an older one that still fits
 *   is kept too, so one huge recent artifact does not flush every small one. The rest are removed
 *   (Store.remove: forgotten and moved to trash/ in one transaction that first checks the lease again).
 * - Checkpoints (`resume/<key>/`) of a key that a live job on the node holds the lock of are kept; the
 *   others go once nothing in them was written for `maxAgeDays` (a job that finished removed its own).
 * - Leftovers of dead jobs: staging directories, the job directories under `<scratch>/jobs/` (named
 *   `…-<pid>@<host>`), trash/ and quarantine/.
 *
 * A scratch store on a network filesystem is left alone: each host then keeps its own database
 * (cache/db-location.ts), so one node could not see another node's leases on the same directories.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { networkFilesystem } from "../db-location.ts"
import { listCheckpoints, removeCheckpoint } from "../gc.ts"
import { pidAlive, thisHost } from "../liveness.ts"
import { safeReaddir } from "../store.ts"
import type { Store } from "../store.ts"

const GiB = 1024 ** 3
export const DEFAULT_SCRATCH_MAX_GB = 50
export const DEFAULT_SCRATCH_MAX_AGE_DAYS = 7

export interface ScratchPolicy {
  /** the most the scratch store's artifacts may hold once collected (what live jobs use may exceed it) */
  readonly maxBytes: number
  /** artifacts unused and checkpoints unwritten for longer are removed, whatever the room */
  readonly maxAgeDays: number
}

/**
 * The policy from the executor's settings: `scratchMaxGb` (default the smaller of 50 GiB and half the
 * scratch filesystem's size, so a small $TMPDIR is not filled) and `scratchMaxAgeDays` (default 7).
 */
export const scratchPolicy = (root: string, settings: { readonly maxGb?: number | undefined; readonly maxAgeDays?: number | undefined }): ScratchPolicy => {
  let maxBytes = settings.maxGb !== undefined ? settings.maxGb * GiB : DEFAULT_SCRATCH_MAX_GB * GiB
  if (settings.maxGb === undefined) {
    try {
      const st = fs.statfsSync(root)
      maxBytes = Math.min(maxBytes, (st.blocks * st.bsize) / 2)
    } catch {
      // no statfs here: the fixed default
    }
  }
  return { maxBytes, maxAgeDays: settings.maxAgeDays ?? DEFAULT_SCRATCH_MAX_AGE_DAYS }
}

export interface ScratchCollected {
  readonly removed: ReadonlyArray<{ readonly hash: string; readonly bytes: number; readonly why: "over the cap" | "unused too long" | "unrecorded" }>
  /** artifacts kept because a live job uses them, and their bytes */
  readonly inUse: number
  readonly inUseBytes: number
  /** the others kept (recently used, within the cap), and their bytes */
  readonly kept: number
  readonly keptBytes: number
  /** checkpoint keys removed */
  readonly checkpoints: ReadonlyArray<string>
  /** dead jobs' directories removed from `jobsDir` */
  readonly jobDirs: number
  readonly freedBytes: number
  /** why nothing was collected, when nothing was */
  readonly skipped: string | undefined
}

/** Collects `store` by the policy above; `jobsDir` is where the node jobs keep their own files. */
export const collectScratch = (store: Store, policy: ScratchPolicy, options: { readonly jobsDir?: string; readonly now?: number } = {}): ScratchCollected => {
  const nfs = networkFilesystem(store.root)
  if (nfs !== undefined) {
    return {
      removed: [], inUse: 0, inUseBytes: 0, kept: 0, keptBytes: 0, checkpoints: [], jobDirs: 0, freedBytes: 0,
      skipped: `the scratch store ${store.root} is on ${nfs}: each node has its own database there, so none can tell what another uses (set "scratchDir" to a node-local disk)`
    }
  }
  const now = options.now ?? Date.now() / 1000
  const cutoff = now - policy.maxAgeDays * 86400
  store.sweepTrash()
  store.sweepStaging()
  for (const q of safeReaddir(store.quarantineDir)) fs.rmSync(path.join(store.quarantineDir, q), { recursive: true, force: true })

  const removed: Array<ScratchCollected["removed"][number]> = []
  let inUse = 0
  let inUseBytes = 0
  let kept = 0
  let keptBytes = 0
  // most recently used first (the database's order); what live jobs use is counted before the rest
  const artifacts = store.db.artifacts()
  const free = artifacts.filter((a) => {
    if (!store.db.leased(a.hash)) return true
    inUse++
    inUseBytes += a.bytes
    return false
  })
  for (const a of free) {
    const recent = a.used_at >= cutoff
    if (recent && inUseBytes + keptBytes + a.bytes <= policy.maxBytes) {
      kept++
      keptBytes += a.bytes
    } else if (store.remove(a.hash)) {
      removed.push({ hash: a.hash, bytes: a.bytes, why: recent ? "over the cap" : "unused too long" })
    } else {
      // a job leased it since we looked: in use after all
      inUse++
      inUseBytes += a.bytes
    }
  }
  // directories no row records: a job killed between the rename and the record (a live one leases first)
  const recorded = new Set(artifacts.map((a) => a.hash))
  for (const name of safeReaddir(store.artifactsDir)) {
    const m = /^([0-9a-f]{64})(\.json)?$/.exec(name)
    if (m === null || recorded.has(m[1]!) || store.db.artifact(m[1]!) !== undefined) continue
    if (m[2] === undefined) {
      if (store.remove(name)) removed.push({ hash: name, bytes: 0, why: "unrecorded" })
    } else if (!fs.existsSync(store.artifactPath(m[1]!))) fs.rmSync(path.join(store.artifactsDir, name), { force: true })
  }

  const checkpoints: Array<string> = []
  let checkpointBytes = 0
  for (const c of listCheckpoints(store)) {
    if (c.state === "building" || c.writtenAt > cutoff) continue
    // skipped while a job on the node holds the key's lock
    if (!removeCheckpoint(store, c.key)) continue
    checkpoints.push(c.key)
    checkpointBytes += c.bytes
  }

  let jobDirs = 0
  if (options.jobsDir !== undefined) {
    for (const name of safeReaddir(options.jobsDir)) {
      const m = /-(\d+)@(.+)$/.exec(name)
      // another host's job (a scratch directory shared after all) or one alive here stays
      if (m === null || m[2] !== thisHost() || pidAlive(Number(m[1]))) continue
      fs.rmSync(path.join(options.jobsDir, name), { recursive: true, force: true })
      jobDirs++
    }
  }
  const freedBytes = removed.reduce((n, r) => n + r.bytes, 0) + checkpointBytes
  return { removed, inUse, inUseBytes, kept, keptBytes, checkpoints, jobDirs, freedBytes, skipped: undefined }
}

const gb = (bytes: number) => `${(bytes / GiB).toFixed(bytes < GiB ? 3 : 1)} GiB`

/** One line for the job's log: what the collection did. */
export const describeScratch = (r: ScratchCollected, policy: ScratchPolicy): string => {
  if (r.skipped !== undefined) return `scratch store not collected: ${r.skipped}`
  const parts = [
    `removed ${r.removed.length} artifact${r.removed.length === 1 ? "" : "s"}${r.checkpoints.length > 0 ? ` and ${r.checkpoints.length} checkpoint${r.checkpoints.length === 1 ? "" : "s"}` : ""} (${gb(r.freedBytes)})`,
    `kept ${r.kept} (${gb(r.keptBytes)}; cap ${gb(policy.maxBytes)}, ${policy.maxAgeDays} days)`,
    `${r.inUse} in use by live jobs (${gb(r.inUseBytes)})`
  ]
  if (r.jobDirs > 0) parts.push(`${r.jobDirs} dead job${r.jobDirs === 1 ? "'s" : "s'"} files`)
  return `scratch store: ${parts.join(", ")}`
}

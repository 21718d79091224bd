/**
 * `cache gc`. What it keeps:
 * - every artifact some recipe's latest state references (the `steps` table);
 * - every artifact a live run leases (what it will read, restore or is committing);
 * - with a size budget (`--max-size`), the most recently used unreferenced ones up to that total.
 * It deletes the rest (crash-safely: Store.remove), plus unrecorded directories nobody leases, sidecars
 * without their artifact, the quarantine, and what a crashed deletion left in trash/.
 *
 * Checkpoints (`resume/<key>/`) follow their own policy: a checkpoint whose key a live run is building
 * is kept; one whose key has finished since is deleted (the run that finished removes its own, so these
 * are leftovers); any other is deleted once nothing in it was written for `checkpointDays` (default 7).
 *
 * The generate step's request cache (`requests/ab/<key>.json`, steps/generate/request_store.py) is
 * collected by age of last use: an entry not written or read (a hit refreshes its mtime) for
 * `requestDays` (default 30) is deleted. Nothing in the store refers to an entry (a step's output never
 * depends on whether an answer came from the cache), so age is the policy; see docs/generate.md. While
 * a generate step is running (a live build lock on a generate key) the request cache is left whole: that
 * run may be about to read any entry.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { safeReaddir } from "./store.ts"
import type { Store } from "./store.ts"

export interface Collected {
  readonly hash: string
  readonly kind: string
  readonly bytes: number
  readonly why: string
}

export interface CheckpointInfo {
  readonly key: string
  readonly bytes: number
  /** newest write in it, seconds since the epoch */
  readonly writtenAt: number
  /** the step whose run last used this key, when the database knows */
  readonly step: string | undefined
  readonly state: "building" | "finished" | "idle"
}

/** What gc did to the request cache: entries deleted and kept, or why it was left alone. */
export interface RequestsCollected {
  readonly dir: string
  readonly deleted: number
  readonly bytes: number
  readonly kept: number
  /** set when the cache was left whole (a generate step is running) */
  readonly skipped: string | undefined
}

export interface GcResult {
  readonly deleted: ReadonlyArray<Collected>
  readonly checkpoints: ReadonlyArray<CheckpointInfo>
  /** undefined when the store has no request cache */
  readonly requests: RequestsCollected | undefined
  readonly kept: number
  /** unreferenced artifacts kept only because a live run leases them */
  readonly leased: number
  readonly freedBytes: number
}

export const DEFAULT_CHECKPOINT_DAYS = 7
export const DEFAULT_REQUEST_DAYS = 30

const treeSize = (dir: string): { bytes: number; newest: number } => {
  let bytes = 0
  let newest = 0
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      const st = fs.lstatSync(p)
      newest = Math.max(newest, st.mtimeMs / 1000)
      if (e.isDirectory()) walk(p)
      else bytes += st.size
    }
  }
  try {
    newest = fs.statSync(dir).mtimeMs / 1000
    walk(dir)
  } catch {
    // vanished while we looked: a run finished with it
  }
  return { bytes, newest }
}

/** Every checkpoint directory with its size, age and state. */
export const listCheckpoints = (store: Store): Array<CheckpointInfo> =>
  safeReaddir(store.resumeRoot).map((key) => {
    const { bytes, newest } = treeSize(store.resumeDir(key))
    const state = store.db.lockHolder(key) !== undefined ? "building" : store.db.result(key) !== undefined ? "finished" : "idle"
    return { key, bytes, writtenAt: newest, step: store.db.lastRunOfKey(key)?.step, state }
  })

export const collectGarbage = (
  store: Store,
  options: { maxBytes?: number; dryRun?: boolean; checkpointDays?: number; requestDays?: number } = {}
): GcResult => {
  const dry = options.dryRun === true
  if (!dry) store.sweepTrash()
  const referenced = store.db.referencedOutputs()
  let budget = options.maxBytes ?? 0
  const deleted: Array<Collected> = []
  let kept = 0
  let leased = 0
  let freed = 0
  const drop = (c: Collected): boolean => {
    if (dry ? store.db.leased(c.hash) : !store.remove(c.hash)) return false
    deleted.push(c)
    freed += c.bytes
    return true
  }
  const known = store.db.artifacts()
  for (const a of known) {
    if (referenced.has(a.hash)) kept++
    else if (a.bytes <= budget) {
      budget -= a.bytes
      kept++
    } else if (!drop({ hash: a.hash, kind: a.kind, bytes: a.bytes, why: "unreferenced" })) {
      kept++
      leased++
    }
  }
  // entries no database row knows: a crash between rename and record, or a half-finished deletion
  const recorded = new Set(known.map((a) => a.hash))
  for (const name of safeReaddir(store.artifactsDir)) {
    const m = /^([0-9a-f]{64})(\.json)?$/.exec(name)
    if (m === null || recorded.has(m[1]!)) continue
    if (m[2] === undefined) drop({ hash: name, kind: "?", bytes: 0, why: "unrecorded" })
    else if (!fs.existsSync(store.artifactPath(m[1]!)) && !dry) fs.rmSync(path.join(store.artifactsDir, name), { force: true })
  }
  if (!dry) for (const q of safeReaddir(store.quarantineDir)) fs.rmSync(path.join(store.quarantineDir, q), { recursive: true, force: true })
  const checkpoints = collectCheckpoints(store, options.checkpointDays ?? DEFAULT_CHECKPOINT_DAYS, dry)
  const requests = collectRequests(store, options.requestDays ?? DEFAULT_REQUEST_DAYS, dry)
  freed += checkpoints.reduce((s, c) => s + c.bytes, 0) + (requests?.bytes ?? 0)
  return { deleted, checkpoints, requests, kept, leased, freedBytes: freed }
}

/** The request cache in the store (generate's `requestCacheDir` may put one elsewhere: not gc's). */
export const requestCacheDir = (store: Store): string => path.join(store.root, "requests")

/** Deletes (or with dryRun counts) the request cache entries unused for `days`; see the header. */
const collectRequests = (store: Store, days: number, dry: boolean): RequestsCollected | undefined => {
  const dir = requestCacheDir(store)
  if (!fs.existsSync(dir)) return undefined
  const liveGenerate = () => store.db.liveLocks().find((l) => {
    const kind = store.db.lastRunOfKey(l.key)?.kind
    return kind === undefined || kind === "generate" // a lock with no run row yet: it may be one
  })
  const cutoff = Date.now() / 1000 - days * 86400
  let live = liveGenerate()
  let deleted = 0
  let bytes = 0
  let kept = 0
  for (const shard of safeReaddir(dir)) {
    // asked again per shard: a generate step that starts while gc walks stops the deleting there
    if (live === undefined) live = liveGenerate()
    const sub = path.join(dir, shard)
    for (const name of safeReaddir(sub)) {
      const file = path.join(sub, name)
      let st: fs.Stats
      try {
        st = fs.statSync(file)
      } catch {
        continue // a writer renamed it under us
      }
      // entries, and temporary files a killed writer left (they are never read)
      const ours = /^[0-9a-f]{64}\.json$/.test(name) || name.startsWith(".tmp-")
      if (live !== undefined || !ours || !st.isFile() || st.mtimeMs / 1000 > cutoff) {
        kept++
        continue
      }
      if (!dry) fs.rmSync(file, { force: true })
      deleted++
      bytes += st.size
    }
    if (!dry) {
      try {
        fs.rmdirSync(sub) // only when empty; a writer recreates it
      } catch {
        // not empty, or not a directory
      }
    }
  }
  const skipped = live === undefined ? undefined : `step ${live.step} of ${live.recipe} is running and may read any entry`
  return { dir, deleted, bytes, kept, skipped }
}

/** Deletes (or with dryRun lists) the checkpoints the policy above collects. */
const collectCheckpoints = (store: Store, days: number, dry: boolean): Array<CheckpointInfo> => {
  const cutoff = Date.now() / 1000 - days * 86400
  const gone: Array<CheckpointInfo> = []
  for (const c of listCheckpoints(store)) {
    if (c.state === "building" || (c.state === "idle" && c.writtenAt > cutoff)) continue
    if (dry) {
      gone.push(c)
      continue
    }
    if (removeCheckpoint(store, c.key)) gone.push(c)
  }
  return gone
}

/**
 * Removes a key's checkpoint (its resume directory) unless a live run holds the key's build lock. The
 * check and the move to the trash happen under the database's write lock, so no run can take the key's
 * lock in between. Whether it was removed.
 */
export const removeCheckpoint = (store: Store, key: string): boolean => {
  const moved = store.db.transaction(() => {
    if (store.db.lockHolder(key) !== undefined) return undefined
    const to = path.join(store.trashDir, `resume-${key}-${process.pid}`)
    fs.renameSync(store.resumeDir(key), to)
    return to
  })
  if (moved === undefined) return false
  fs.rmSync(moved, { recursive: true, force: true })
  return true
}

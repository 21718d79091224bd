/**
 * `cache verify`: rehash every artifact (recorded or not), check each sidecar `.json`, and check the
 * database's references (constructive-trace rows pointing at artifacts it does not record). Read-only
 * unless `repair`: then a bad artifact is quarantined (moved to quarantine/, its rows forgotten) so the
 * next run rebuilds it, a damaged sidecar is rewritten from the database, a stray sidecar is deleted and
 * a dangling reference is dropped. An artifact a live run leases is reported but left alone.
 */
import * as fs from "node:fs"
import { hashTree } from "./hash.ts"
import type { Trace } from "./trace.ts"
import { manifestOf } from "./manifest.ts"
import { safeReaddir } from "./store.ts"
import type { Store } from "./store.ts"

export interface Problem {
  readonly what: "artifact" | "sidecar" | "reference"
  /** the artifact hash, or for a reference the step key */
  readonly id: string
  readonly problem: string
  /** what --repair did about it; absent without --repair */
  readonly repaired?: string
  /** whether --repair fixed it (false: left alone, e.g. a live run leases it); absent without --repair */
  readonly fixed?: boolean
}

/** What a repair did: `fixed` says whether the problem is gone, `repaired` says how (or why not). */
type Repair = { readonly repaired: string; readonly fixed: boolean }
const fixed = (repaired: string): Repair => ({ repaired, fixed: true })
const leftAlone = (why: string): Repair => ({ repaired: `left alone: ${why}`, fixed: false })

export interface VerifyResult {
  readonly problems: ReadonlyArray<Problem>
  readonly artifacts: number
  readonly bytes: number
}

const isHashName = (n: string) => /^[0-9a-f]{64}$/.test(n)

/** Rehashes one artifact; undefined when it matches its name. */
const artifactProblem = (store: Store, hash: string): string | undefined => {
  const dir = store.artifactPath(hash)
  let st: fs.Stats
  try {
    st = fs.lstatSync(dir)
  } catch {
    return "missing from the store"
  }
  if (!st.isDirectory()) return st.isSymbolicLink() ? "replaced by a symbolic link" : "replaced by a plain file"
  try {
    const actual = hashTree(dir).hash
    return actual === hash ? undefined : `content hashes to ${actual.slice(0, 12)}`
  } catch (e) {
    return `unreadable: ${(e as Error).message}`
  }
}

export const verifyStore = (store: Store, options: { repair?: boolean; onProgress?: (done: number, total: number) => void } = {}): VerifyResult => {
  const repair = options.repair === true
  const problems: Array<Problem> = []
  const known = store.db.artifacts()
  const recorded = new Map(known.map((a) => [a.hash, a]))
  const entries = safeReaddir(store.artifactsDir)
  const orphans = entries.filter((n) => isHashName(n) && !recorded.has(n))
  const total = known.length + orphans.length
  let done = 0
  let bytes = 0

  const quarantine = (hash: string): Repair =>
    store.quarantine(hash) ? fixed("quarantined; the next run rebuilds it") : leftAlone("a live run leases it")

  for (const hash of [...known.map((a) => a.hash), ...orphans]) {
    options.onProgress?.(done++, total)
    const problem = artifactProblem(store, hash)
    const rec = recorded.get(hash)
    const isOrphan = rec === undefined
    if (problem === undefined) {
      bytes += rec?.bytes ?? 0
      // an artifact recorded before manifests existed gets one, so has() can check it from now on
      if (repair && rec !== undefined && rec.manifest === null) {
        const dir = store.artifactPath(hash)
        store.db.setManifest(hash, JSON.stringify(manifestOf(dir, hashTree(dir).entries)))
      }
      const side = store.sidecarProblem(hash)
      if (side !== undefined) {
        problems.push({ what: "sidecar", id: hash, problem: side, ...(repair ? rewriteSidecar(store, hash) : {}) })
      }
      continue
    }
    if (isOrphan && problem === "missing from the store") continue
    const text = isOrphan ? `unrecorded, ${problem}` : problem
    problems.push({ what: "artifact", id: hash, problem: text, ...(repair ? quarantine(hash) : {}) })
  }

  // sidecars whose artifact is gone, and leftovers of interrupted sidecar writes
  const present = new Set(safeReaddir(store.artifactsDir))
  for (const n of entries) {
    const side = /^([0-9a-f]{64})\.json$/.exec(n)
    if (side === null || present.has(side[1]!)) continue
    problems.push({ what: "sidecar", id: side[1]!, problem: "sidecar .json without its artifact", ...(repair ? removeEntry(store, n) : {}) })
  }

  for (const r of store.db.danglingResults()) {
    problems.push({
      what: "reference",
      id: r.key,
      problem: `the result of key ${r.key.slice(0, 12)} names artifact ${r.output.slice(0, 12)}, which the database does not record`,
      ...(repair ? (store.db.deleteResult(r.key), fixed("dropped; the step rebuilds")) : {})
    })
  }
  return { problems, artifacts: total, bytes }
}

const removeEntry = (store: Store, name: string): Repair => {
  fs.rmSync(`${store.artifactsDir}/${name}`, { recursive: true, force: true })
  return fixed("deleted")
}

/** Rewrites a sidecar from what the database knows (the run that produced the artifact). */
const rewriteSidecar = (store: Store, hash: string): Repair => {
  const a = store.db.artifact(hash)
  if (a === undefined) return leftAlone("the artifact is not recorded")
  const run = store.db.lastRunWithOutput(hash)
  const trace = run === undefined ? undefined : (JSON.parse(run.trace) as Trace)
  store.writeSidecar(hash, {
    hash,
    kind: a.kind,
    bytes: a.bytes,
    files: a.files,
    ...(run === undefined ? {} : { step: run.step, recipe: run.recipe, key: run.key, version: trace?.version, params: trace?.params, inputs: trace?.inputs }),
    rewritten: new Date().toISOString()
  })
  return fixed("rewritten from the database")
}

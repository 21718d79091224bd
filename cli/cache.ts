/** `anneal cache ls|gc|verify`: printing only; the work is in cache/gc.ts and cache/verify.ts. */
import { collectGarbage, listCheckpoints } from "../cache/gc.ts"
import type { Store } from "../cache/store.ts"
import { verifyStore } from "../cache/verify.ts"
import { UsageError } from "../engine/errors.ts"

const units: Record<string, number> = { "": 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }

export const parseSize = (s: string): number => {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(s.trim())
  if (m === null) throw new UsageError({ message: `--max-size takes a size like 500M or 20G, got "${s}"` })
  return Math.floor(Number(m[1]) * units[m[2]!.toUpperCase()]!)
}

export const formatBytes = (n: number): string => {
  for (const [u, f] of [["T", 2 ** 40], ["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]] as const) {
    if (n >= f) return `${(n / f).toFixed(1)}${u}`
  }
  return `${n}B`
}

const when = (seconds: number) => new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19)

const out = (line: string) => process.stdout.write(line + "\n")

const days = (flag: string, v: unknown): number | undefined => {
  if (v === undefined) return undefined
  const n = Number(v)
  if (typeof v !== "string" || !Number.isFinite(n) || n < 0) {
    throw new UsageError({ message: `--${flag} takes a number of days (0 or more), got "${String(v)}"` })
  }
  return n
}

const ls = (store: Store, v: Record<string, unknown>): number => {
  const users = new Map<string, Array<string>>()
  for (const s of store.db.stepOutputs()) users.set(s.output, [...(users.get(s.output) ?? []), `${s.recipe}:${s.step}`])
  const rows = store.db.artifacts()
  const checkpoints = listCheckpoints(store)
  if (v.json === true) {
    for (const a of rows) {
      const steps = users.get(a.hash) ?? []
      out(JSON.stringify({ hash: a.hash, kind: a.kind, bytes: a.bytes, files: a.files, usedAt: a.used_at, referenced: steps.length > 0, steps, path: store.artifactPath(a.hash) }))
    }
    for (const c of checkpoints) out(JSON.stringify({ checkpoint: c.key, bytes: c.bytes, writtenAt: c.writtenAt, step: c.step ?? null, state: c.state, path: store.resumeDir(c.key) }))
    return 0
  }
  for (const a of rows) {
    const steps = users.get(a.hash)
    out(`${a.hash.slice(0, 16)}  ${a.kind.padEnd(9)}  ${formatBytes(a.bytes).padStart(7)}  ${when(a.used_at)}  ${steps === undefined ? "unreferenced" : steps.join(", ")}`)
  }
  for (const c of checkpoints) {
    out(`checkpoint ${c.key.slice(0, 16)}  ${formatBytes(c.bytes).padStart(7)}  ${when(c.writtenAt)}  ${c.state}${c.step === undefined ? "" : ` (step ${c.step})`}`)
  }
  const ckBytes = checkpoints.reduce((s, c) => s + c.bytes, 0)
  out(`${rows.length} artifacts, ${formatBytes(rows.reduce((s, a) => s + a.bytes, 0))}${checkpoints.length > 0 ? `; ${checkpoints.length} checkpoints, ${formatBytes(ckBytes)}` : ""} in ${store.root}`)
  return 0
}

const gc = (store: Store, v: Record<string, unknown>): number => {
  const maxBytes = typeof v["max-size"] === "string" ? parseSize(v["max-size"]) : 0
  const dryRun = v["dry-run"] === true
  const r = collectGarbage(store, {
    maxBytes, dryRun, checkpointDays: days("checkpoint-days", v["checkpoint-days"]), requestDays: days("request-days", v["request-days"])
  })
  const rq = r.requests
  if (v.json === true) {
    out(JSON.stringify({
      event: "gc", dryRun, deleted: r.deleted.map((d) => d.hash), checkpoints: r.checkpoints.map((c) => c.key), kept: r.kept, leased: r.leased, freedBytes: r.freedBytes,
      ...(rq === undefined ? {} : { requests: { deleted: rq.deleted, bytes: rq.bytes, kept: rq.kept, skipped: rq.skipped ?? null } })
    }))
    return 0
  }
  const verb = dryRun ? "would delete" : "deleted"
  for (const d of r.deleted) out(`${verb} ${d.hash.slice(0, 16)}  ${d.kind.padEnd(9)}  ${formatBytes(d.bytes).padStart(7)}  (${d.why})`)
  for (const c of r.checkpoints) out(`${verb} checkpoint ${c.key.slice(0, 16)}  ${formatBytes(c.bytes).padStart(7)}  (${c.state === "finished" ? "its key has finished" : `idle since ${when(c.writtenAt)}`})`)
  if (rq !== undefined) {
    out(rq.skipped === undefined
      ? `request cache: ${verb} ${rq.deleted} entries unused for --request-days (${formatBytes(rq.bytes)}), kept ${rq.kept}`
      : rq.deleted === 0
      ? `request cache: kept all ${rq.kept} entries (${rq.skipped})`
      : `request cache: ${verb} ${rq.deleted} entries unused for --request-days (${formatBytes(rq.bytes)}), then kept the other ${rq.kept} (${rq.skipped})`)
  }
  out(`${verb} ${r.deleted.length} artifacts and ${r.checkpoints.length} checkpoints (${formatBytes(r.freedBytes)}), kept ${r.kept}${r.leased > 0 ? ` (${r.leased} only because a live run uses them)` : ""}`)
  return 0
}

const verify = (store: Store, v: Record<string, unknown>): number => {
  const repair = v.repair === true
  const r = verifyStore(store, { repair })
  const integrity = store.db.integrityCheck()
  const unrepaired = r.problems.filter((p) => p.fixed !== true)
  if (v.json === true) out(JSON.stringify({ event: "verify", problems: r.problems, artifacts: r.artifacts, bytes: r.bytes, database: integrity }))
  else {
    for (const p of r.problems) out(`${p.fixed === true ? "REPAIRED" : "MISMATCH"} ${p.what} ${p.id}: ${p.problem}${p.repaired === undefined ? "" : ` -> ${p.repaired}`}`)
    out(`${r.artifacts} artifacts checked (${formatBytes(r.bytes)}), ${r.problems.length} problems${repair ? `, ${r.problems.length - unrepaired.length} repaired` : r.problems.length > 0 ? " (cache verify --repair quarantines them)" : ""}; database: ${integrity}`)
  }
  return unrepaired.length === 0 && integrity === "ok" ? 0 : 1
}

export const cacheCommand = (store: Store, positionals: ReadonlyArray<string>, v: Record<string, unknown>): number => {
  const sub = positionals[0]
  switch (sub) {
    case "ls":
      return ls(store, v)
    case "gc":
      return gc(store, v)
    case "verify":
      return verify(store, v)
    default:
      throw new UsageError({ message: `cache: expected ls, gc or verify${sub === undefined ? "" : `, got "${sub}"`}` })
  }
}

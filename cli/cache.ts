/** `anneal cache ls|gc|verify`. */
import * as fs from "node:fs"
import * as path from "node:path"
import type { Store } from "../cache/store.ts"
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

export interface GcResult {
  readonly deleted: ReadonlyArray<string>
  readonly kept: number
  readonly freedBytes: number
}

/**
 * Keeps every artifact that some recipe's latest state references (the `steps` table), plus, with a
 * size budget, the most recently used unreferenced ones up to that total; deletes the rest.
 */
export const collectGarbage = (store: Store, options: { maxBytes?: number; dryRun?: boolean } = {}): GcResult => {
  const referenced = store.db.referencedOutputs()
  let budget = options.maxBytes ?? 0
  const deleted: Array<string> = []
  let kept = 0
  let freed = 0
  for (const a of store.db.artifacts()) {
    if (referenced.has(a.hash)) {
      kept++
      continue
    }
    if (a.bytes <= budget) {
      budget -= a.bytes
      kept++
      continue
    }
    deleted.push(a.hash)
    freed += a.bytes
    if (options.dryRun !== true) store.remove(a.hash)
  }
  // directories no database row knows (a crash between rename and commit): unreachable, so removable
  const known = new Set(store.db.artifacts().map((a) => a.hash))
  for (const name of fs.readdirSync(store.artifactsDir)) {
    if (name.endsWith(".json") || known.has(name) || deleted.includes(name)) continue
    if (fs.statSync(path.join(store.artifactsDir, name)).isDirectory()) {
      deleted.push(name)
      if (options.dryRun !== true) store.remove(name)
    }
  }
  return { deleted, kept, freedBytes: freed }
}

export const cacheCommand = (store: Store, positionals: ReadonlyArray<string>, v: Record<string, unknown>): number => {
  const sub = positionals[0]
  switch (sub) {
    case "ls": {
      const referenced = store.db.referencedOutputs()
      const rows = store.db.artifacts()
      if (v.json === true) {
        for (const a of rows) {
          process.stdout.write(JSON.stringify({ hash: a.hash, kind: a.kind, bytes: a.bytes, files: a.files, usedAt: a.used_at, referenced: referenced.has(a.hash), path: store.artifactPath(a.hash) }) + "\n")
        }
        return 0
      }
      for (const a of rows) {
        const when = new Date(a.used_at * 1000).toISOString().replace("T", " ").slice(0, 19)
        process.stdout.write(`${a.hash.slice(0, 16)}  ${a.kind.padEnd(9)}  ${formatBytes(a.bytes).padStart(7)}  ${when}  ${referenced.has(a.hash) ? "in use" : "unreferenced"}\n`)
      }
      process.stdout.write(`${rows.length} artifacts, ${formatBytes(rows.reduce((s, a) => s + a.bytes, 0))} in ${store.root}\n`)
      return 0
    }
    case "gc": {
      const maxBytes = typeof v["max-size"] === "string" ? parseSize(v["max-size"]) : 0
      const r = collectGarbage(store, { maxBytes, dryRun: v["dry-run"] === true })
      const verb = v["dry-run"] === true ? "would delete" : "deleted"
      if (v.json === true) process.stdout.write(JSON.stringify({ event: "gc", deleted: r.deleted, kept: r.kept, freedBytes: r.freedBytes }) + "\n")
      else process.stdout.write(`${verb} ${r.deleted.length} artifacts (${formatBytes(r.freedBytes)}), kept ${r.kept}\n`)
      return 0
    }
    case "verify": {
      const bad = store.verify()
      const integrity = store.db.integrityCheck()
      if (v.json === true) process.stdout.write(JSON.stringify({ event: "verify", mismatches: bad, database: integrity }) + "\n")
      else {
        for (const b of bad) process.stdout.write(`MISMATCH ${b.hash}: ${b.problem}\n`)
        process.stdout.write(`${store.db.artifacts().length} artifacts checked, ${bad.length} problems; database: ${integrity}\n`)
      }
      return bad.length === 0 && integrity === "ok" ? 0 : 1
    }
    default:
      throw new UsageError({ message: `cache: expected ls, gc or verify${sub === undefined ? "" : `, got "${sub}"`}` })
  }
}

/**
 * The remote's part of the command line: which remote a command uses (`--remote s3://...` wins over
 * anneal.config.json's "remote"; `--remote none` turns a configured one off), and the printing of
 * `cache verify` / `cache gc` on it. Loaded only by commands that have a remote.
 */
import type { Store } from "../store.ts"
import { CacheError } from "../errors.ts"
import { collectRemoteGarbage, verifyRemote } from "./maintain.ts"
import { RemoteStore } from "./remote-store.ts"
import { parseRemote } from "./url.ts"
import type { RemoteConfig } from "./url.ts"

/** The remote a command uses, if any. */
export const chooseRemote = (flag: unknown, config: { readonly remote?: RemoteConfig | undefined }): RemoteConfig | undefined => {
  if (flag === "none") return undefined
  if (typeof flag === "string") return flag
  return config.remote
}

const formatBytes = (n: number): string => {
  for (const [u, f] of [["T", 2 ** 40], ["G", 2 ** 30], ["M", 2 ** 20], ["K", 2 ** 10]] as const) if (n >= f) return `${(n / f).toFixed(1)}${u}`
  return `${n}B`
}

const out = (line: string) => process.stdout.write(line + "\n")

const maxAgeDays = (v: unknown): number | undefined => {
  if (v === undefined) return undefined
  const n = Number(v)
  if (typeof v !== "string" || !Number.isFinite(n) || n < 0) {
    throw new CacheError({ message: `--remote-max-age-days takes a number of days (0 or more), got "${String(v)}"`, path: String(v) })
  }
  return n
}

/** `cache verify|gc` on the remote; returns the exit code (verify: 1 when a problem is left). */
export const remoteCacheCommand = async (config: RemoteConfig, store: Store | undefined, sub: string, v: Record<string, unknown>): Promise<number> => {
  const remote = await RemoteStore.open(parseRemote(config))
  const url = remote.spec.url
  try {
    if (sub === "verify") {
      const repair = v.repair === true
      const r = await verifyRemote(remote, { repair }).catch((e: unknown) => {
        throw remote.error("verify failed", e)
      })
      const unrepaired = r.problems.filter((p) => p.fixed !== true)
      if (v.json === true) out(JSON.stringify({ event: "verify-remote", remote: url, problems: r.problems, artifacts: r.artifacts, keys: r.keys, bytes: r.bytes }))
      else {
        for (const p of r.problems) out(`${p.fixed === true ? "REPAIRED" : "MISMATCH"} ${p.what} ${p.id}: ${p.problem}${p.repaired === undefined ? "" : ` -> ${p.repaired}`}`)
        out(`remote ${url}: ${r.artifacts} artifacts and ${r.keys} keys checked (${formatBytes(r.bytes)}), ${r.problems.length} problems${repair ? `, ${r.problems.length - unrepaired.length} repaired` : r.problems.length > 0 ? " (cache verify --repair deletes them from the remote)" : ""}`)
      }
      return unrepaired.length === 0 ? 0 : 1
    }
    const dryRun = v["dry-run"] === true
    const r = await collectRemoteGarbage(remote, { maxAgeDays: maxAgeDays(v["remote-max-age-days"]), dryRun, store }).catch((e: unknown) => {
      throw e instanceof CacheError ? e : remote.error("gc failed", e)
    })
    if (v.json === true) {
      out(JSON.stringify({ event: "gc-remote", remote: url, dryRun, deletedKeys: r.deletedKeys, deletedArtifacts: r.deletedArtifacts, deletedBlobs: r.deletedBlobs, freedBytes: r.freedBytes, expiredLeases: r.expiredLeases, pinned: r.pinned }))
    } else {
      const verb = dryRun ? "would delete" : "deleted"
      for (const h of r.deletedArtifacts) out(`${verb} remote artifact ${h.slice(0, 16)}`)
      out(`remote ${url}: ${verb} ${r.deletedKeys} keys, ${r.deletedArtifacts.length} artifacts and ${r.deletedBlobs} blobs (${formatBytes(r.freedBytes)}), ${r.expiredLeases} expired leases${r.pinned > 0 ? `; kept ${r.pinned} only because a live run pins them` : ""}`)
    }
    return 0
  } finally {
    remote.close()
  }
}

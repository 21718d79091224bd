/**
 * `cache verify` and `cache gc` on the remote (`--remote s3://...`, or the config's "remote").
 *
 * verify: every manifest parses and names its artifact; every blob it lists is there with its size;
 * every index entry names an artifact whose manifest is there. `--repair` deletes what is wrong (a
 * manifest with a missing blob, an index entry pointing nowhere), so the artifact counts as absent and
 * the next run that builds it uploads it again; what a live driver pins is reported and left alone.
 * Blob contents are not downloaded: each blob's sha256 was signed with its upload (the server refuses
 * a body that does not match) and every restore rehashes what it downloads.
 *
 * gc: deletes what nothing references. Kept: index entries (all of them; with `maxAgeDays`, those
 * written within that many days or whose output this machine's recipes still use), the manifests they
 * name or a live lease pins, and the blobs those manifests list or a live upload's lease names. Expired
 * leases (no heartbeat within the expiry) are deleted. The order makes a concurrent driver safe: objects
 * are listed first, leases read after, and manifests and index entries listed again just before
 * deleting, so an upload that began or finished during the gc keeps everything it needs.
 */
import type { Store } from "../store.ts"
import type { RemoteManifest, RemoteStore } from "./remote-store.ts"
import type { S3Object } from "./s3.ts"
import type { Problem } from "../verify.ts"

const isHash = (s: string) => /^[0-9a-f]{64}$/.test(s)
const nameOf = (key: string, prefix: string, suffix = ""): string | undefined => {
  if (!key.startsWith(prefix) || !key.endsWith(suffix)) return undefined
  const n = key.slice(prefix.length, key.length - suffix.length)
  return isHash(n) ? n : undefined
}

const readJson = async (remote: RemoteStore, key: string): Promise<unknown> => {
  const body = await remote.s3.getBytes(key)
  if (body === undefined) return undefined
  try {
    return JSON.parse(body.toString("utf8"))
  } catch {
    return null
  }
}

const manifestProblem = (m: unknown, hash: string): string | undefined => {
  if (m === null || typeof m !== "object") return "manifest is not valid JSON"
  const r = m as Partial<RemoteManifest>
  if (r.hash !== hash) return `manifest names ${String(r.hash).slice(0, 12)}`
  if (!Array.isArray(r.files) || !r.files.every((f) => Array.isArray(f) && typeof f[0] === "string" && typeof f[1] === "number" && isHash(String(f[2])))) {
    return "manifest's file list is malformed"
  }
  return undefined
}

export interface RemoteVerifyResult {
  readonly problems: ReadonlyArray<Problem>
  readonly artifacts: number
  readonly bytes: number
  readonly keys: number
}

export const verifyRemote = async (remote: RemoteStore, options: { repair?: boolean } = {}): Promise<RemoteVerifyResult> => {
  const repair = options.repair === true
  const blobPrefix = remote.sectionPrefix("blobs")
  const artPrefix = remote.sectionPrefix("artifacts")
  const idxPrefix = remote.sectionPrefix("index")
  const [blobs, manifests, index] = await Promise.all([remote.s3.list(blobPrefix), remote.s3.list(artPrefix), remote.s3.list(idxPrefix)])
  const blobSize = new Map<string, number>()
  for (const b of blobs) {
    const h = nameOf(b.key, blobPrefix)
    if (h !== undefined) blobSize.set(h, b.size)
  }
  const { live } = await remote.leases()
  const pinned = new Set(live.flatMap((l) => l.pins))
  const problems: Array<Problem> = []
  const present = new Set<string>()
  let bytes = 0
  const fix = async (key: string, hash: string | undefined): Promise<Pick<Problem, "repaired" | "fixed">> => {
    if (!repair) return {}
    if (hash !== undefined && pinned.has(hash)) return { repaired: "left alone: a live run pins it", fixed: false }
    await remote.s3.delete(key)
    return { repaired: "deleted from the remote; the next run that builds it uploads it again", fixed: true }
  }
  for (const o of manifests) {
    const hash = nameOf(o.key, artPrefix, ".json")
    if (hash === undefined) continue
    const m = await readJson(remote, o.key)
    let problem = manifestProblem(m, hash)
    if (problem === undefined) {
      const files = (m as RemoteManifest).files
      const missing = files.filter(([, size, sha]) => blobSize.get(sha) !== size)
      if (missing.length > 0) {
        const [rel, size, sha] = missing[0]!
        const have = blobSize.get(sha)
        problem = `${missing.length} of ${files.length} files missing or wrong in the remote (${rel}: ${have === undefined ? "no blob" : `blob has ${have} bytes, not ${size}`})`
      }
    }
    if (problem === undefined) {
      present.add(hash)
      bytes += (m as RemoteManifest).bytes ?? 0
      continue
    }
    problems.push({ what: "artifact", id: hash, problem: `remote ${remote.spec.url}: ${problem}`, ...(await fix(o.key, hash)) })
  }
  for (const o of index) {
    const key = nameOf(o.key, idxPrefix, ".json")
    if (key === undefined) continue
    const e = (await readJson(remote, o.key)) as { key?: unknown; output?: unknown } | null | undefined
    if (e === undefined) continue
    const output = typeof e?.output === "string" ? e.output : undefined
    const problem = e === null || e.key !== key || output === undefined || !isHash(output) ? "index entry is malformed"
      : present.has(output) ? undefined
      : `index entry names artifact ${output.slice(0, 12)}, which the remote does not hold intact`
    if (problem !== undefined) problems.push({ what: "reference", id: key, problem: `remote ${remote.spec.url}: ${problem}`, ...(await fix(o.key, undefined)) })
  }
  return { problems, artifacts: manifests.length, bytes, keys: index.length }
}

export interface RemoteGcResult {
  readonly deletedKeys: number
  readonly deletedArtifacts: ReadonlyArray<string>
  readonly deletedBlobs: number
  readonly freedBytes: number
  readonly expiredLeases: number
  /** unreferenced artifacts kept only because a live run pins them */
  readonly pinned: number
}

export const collectRemoteGarbage = async (
  remote: RemoteStore,
  options: { maxAgeDays?: number | undefined; dryRun?: boolean; store?: Store | undefined } = {}
): Promise<RemoteGcResult> => {
  const dry = options.dryRun === true
  const blobPrefix = remote.sectionPrefix("blobs")
  const artPrefix = remote.sectionPrefix("artifacts")
  const idxPrefix = remote.sectionPrefix("index")
  // 1. what is there
  const [blobs, manifests, index] = await Promise.all([remote.s3.list(blobPrefix), remote.s3.list(artPrefix), remote.s3.list(idxPrefix)])
  // 2. who is alive (read after the listing: see the module comment)
  const { live, expired } = await remote.leases()
  const pins = new Set(live.flatMap((l) => l.pins))
  const uploading = new Set(live.flatMap((l) => l.blobs))
  const now = remote.s3.serverNow()
  const usedHere = options.store?.db.referencedOutputs() ?? new Set<string>()

  const indexed = new Set<string>()
  const outputOf = new Map<string, string | undefined>()
  const indexOutput = async (o: S3Object) => {
    if (!outputOf.has(o.key)) {
      const e = (await readJson(remote, o.key)) as { output?: unknown } | null | undefined
      outputOf.set(o.key, typeof e?.output === "string" ? e.output : undefined)
    }
    return outputOf.get(o.key)
  }
  const dropKeys: Array<S3Object> = []
  for (const o of index) {
    if (nameOf(o.key, idxPrefix, ".json") === undefined) continue
    const output = await indexOutput(o)
    // 0 means every key: S3's times are whole seconds (rounded either way by some servers), so an entry
    // written this second could otherwise look newer than "now"
    const old = options.maxAgeDays !== undefined && (options.maxAgeDays === 0 || now - o.lastModified > options.maxAgeDays * 86400_000)
    if (old && (output === undefined || !usedHere.has(output))) dropKeys.push(o)
    else if (output !== undefined) indexed.add(output)
  }
  // 3. listed again: an upload that finished during the gc keeps what its manifest and index name
  const [manifests2, index2] = await Promise.all([remote.s3.list(artPrefix), remote.s3.list(idxPrefix)])
  const firstIndex = new Set(index.map((o) => o.key))
  for (const o of index2) {
    if (firstIndex.has(o.key)) continue
    const output = await indexOutput(o)
    if (output !== undefined) indexed.add(output)
  }
  const firstManifests = new Set(manifests.map((o) => o.key))
  const dropArtifacts: Array<string> = []
  const keptBlobs = new Set<string>(uploading)
  let pinnedOnly = 0
  for (const o of [...manifests, ...manifests2.filter((m) => !firstManifests.has(m.key))]) {
    const hash = nameOf(o.key, artPrefix, ".json")
    if (hash === undefined) continue
    const fresh = !firstManifests.has(o.key)
    if (!fresh && !indexed.has(hash)) {
      if (!pins.has(hash)) {
        dropArtifacts.push(hash)
        continue
      }
      pinnedOnly++
    }
    const m = (await readJson(remote, o.key)) as RemoteManifest | null | undefined
    for (const f of Array.isArray(m?.files) ? m.files : []) keptBlobs.add(String(f[2]))
  }
  const dropBlobs = blobs.filter((b) => {
    const h = nameOf(b.key, blobPrefix)
    return h !== undefined && !keptBlobs.has(h)
  })
  if (!dry) {
    // index entries first, then manifests, then blobs: never a visible entry whose parts are gone
    for (const o of dropKeys) await remote.s3.delete(o.key)
    for (const h of dropArtifacts) await remote.s3.delete(`${artPrefix}${h}.json`)
    for (const b of dropBlobs) await remote.s3.delete(b.key)
    for (const k of expired) await remote.s3.delete(k)
  }
  return {
    deletedKeys: dropKeys.length,
    deletedArtifacts: dropArtifacts,
    deletedBlobs: dropBlobs.length,
    freedBytes: dropBlobs.reduce((s, b) => s + b.size, 0),
    expiredLeases: expired.length,
    pinned: pinnedOnly
  }
}

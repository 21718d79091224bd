/**
 * The remote store: artifacts and the key -> result index in S3-compatible object storage, shared by
 * every machine that names the same `s3://bucket/prefix`. The SQLite cache stays on each machine's disk.
 * Layout under the prefix:
 *
 *   blobs/<sha256>            one file's bytes, named by their sha256 (shared by every artifact holding them)
 *   artifacts/<hash>.json     an artifact's manifest: every file's path, size and sha256, plus its sidecar
 *   index/<key>.json          the result of a step key: { key, output, seconds }
 *   leases/<owner>.json       what a live driver pins (reads or is uploading), with a heartbeat
 *
 * Upload order is the commit protocol: blobs, then the manifest, then the index entry. An S3 PUT is
 * atomic (a torn upload is never visible) and each blob's PUT signs its sha256 (the server refuses any
 * other body), so a crash at any moment leaves at most blobs no manifest names: the artifact is absent,
 * and gc collects the blobs. Everything is content-addressed and the manifest's text is canonical, so two
 * drivers uploading the same artifact write identical objects and converge; an artifact counts as present
 * only when its manifest exists (verify checks its blobs too), and a key only when its index entry names
 * a present artifact. Restoring downloads into the local store's staging, checks every blob's sha256 as it
 * streams, and commits through the local store with those digests (Store.commitVerified: a file changed
 * after its download is rehashed), checking the tree's merkle hash against the artifact's name.
 */
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { canonicalJson } from "../hash.ts"
import type { FileEntry } from "../hash.ts"
import { CacheError } from "../errors.ts"
import { expirySeconds, HEARTBEAT_S } from "../liveness.ts"
import { parseManifest } from "../manifest.ts"
import type { Store } from "../store.ts"
import { resolveS3Settings } from "./credentials.ts"
import { S3Client, S3RequestError } from "./s3.ts"
import type { RemoteSpec } from "./url.ts"

/** [relative path, size, sha256] */
export type RemoteFile = readonly [string, number, string]

export interface RemoteManifest {
  readonly format: 1
  readonly hash: string
  readonly kind: string
  readonly bytes: number
  readonly files: ReadonlyArray<RemoteFile>
  /** the artifact's self-description (its local sidecar .json) */
  readonly sidecar: Record<string, unknown>
}

export interface RemoteResult {
  readonly key: string
  readonly output: string
  readonly seconds: number
}

export interface LeaseBody {
  readonly owner: string
  readonly host: string
  readonly pid: number
  /** artifact hashes this driver reads or is uploading */
  readonly pins: ReadonlyArray<string>
  /** blobs of artifacts being uploaded (no manifest names them yet) */
  readonly blobs: ReadonlyArray<string>
}

const PARALLEL = 8
const isHash = (s: string) => /^[0-9a-f]{64}$/.test(s)

/** Runs `f` over items, at most `n` at a time; the first failure rejects once all started ones settle. */
export const eachLimit = async <T>(items: ReadonlyArray<T>, n: number, f: (item: T) => Promise<void>): Promise<void> => {
  let next = 0
  let failure: { e: unknown } | undefined
  const worker = async () => {
    while (failure === undefined && next < items.length) {
      const item = items[next++]!
      try {
        await f(item)
      } catch (e) {
        failure ??= { e }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker))
  if (failure !== undefined) throw failure.e
}

export class RemoteStore {
  private readonly owner = randomUUID()
  private readonly pins = new Set<string>()
  private readonly uploadingBlobs = new Set<string>()
  private heartbeat: NodeJS.Timeout | undefined
  private leaseWrite: Promise<void> = Promise.resolve()
  private leaseWritten = false

  private constructor(readonly spec: RemoteSpec, readonly s3: S3Client) {}

  /**
   * Connects and checks that the remote answers and accepts the credentials (one listing request), so a
   * wrong key or an unreachable server is a one-line CacheError naming the remote before anything runs.
   */
  static async open(spec: RemoteSpec): Promise<RemoteStore> {
    const settings = resolveS3Settings({ profile: spec.profile, region: spec.region, endpoint: spec.endpoint })
    const s3 = new S3Client({ bucket: spec.bucket, region: settings.region, endpoint: settings.endpoint, credentials: settings.credentials })
    const remote = new RemoteStore(spec, s3)
    try {
      await s3.listPage(spec.prefix + "index/", 1)
    } catch (e) {
      s3.close()
      throw remote.error("cannot use the remote", e, settings.credentials === undefined ? "no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)" : undefined)
    }
    return remote
  }

  /** A one-line CacheError naming the remote (and where it is served from), never a credential. */
  error(what: string, e: unknown, hint?: string): CacheError {
    const where = this.s3.endpointName
    let why: string
    if (e instanceof S3RequestError) {
      why = e.status === 0 ? `unreachable at ${where} (${e.code}: ${e.message})`
        : ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"].includes(e.code) || e.status === 403
          ? `credentials refused by ${where} (${e.code})`
          : e.code === "NoSuchBucket" ? `no bucket "${this.spec.bucket}" at ${where}` : e.message
    } else why = e instanceof Error ? e.message : String(e)
    return new CacheError({ message: `remote ${this.spec.url}: ${what}: ${why}${hint === undefined || !(e instanceof S3RequestError && e.status === 403) ? "" : `; ${hint}`}`, path: this.spec.url, cause: e })
  }

  close() {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat)
    this.s3.close()
  }

  private key(...parts: Array<string>): string {
    return this.spec.prefix + parts.join("/")
  }

  // reading ------------------------------------------------------------------------------------

  /** The result the remote index holds for a step key, if any. */
  async lookup(key: string): Promise<RemoteResult | undefined> {
    const body = await this.s3.getBytes(this.key("index", `${key}.json`))
    if (body === undefined) return undefined
    const r = parseJson(body) as Partial<RemoteResult> | undefined
    if (r === undefined || r.key !== key || typeof r.output !== "string" || !isHash(r.output)) return undefined
    return { key, output: r.output, seconds: typeof r.seconds === "number" ? r.seconds : 0 }
  }

  /** An artifact's manifest when the remote holds it (a malformed one counts as absent). */
  async manifest(hash: string): Promise<RemoteManifest | undefined> {
    const body = await this.s3.getBytes(this.key("artifacts", `${hash}.json`))
    if (body === undefined) return undefined
    const m = parseJson(body) as RemoteManifest | undefined
    if (m === undefined || m.hash !== hash || !Array.isArray(m.files)) return undefined
    return m
  }

  /**
   * Downloads an artifact into the local store: pinned first (so a remote gc leaves it alone), each blob
   * checked against its sha256 as it streams into staging, then committed through the local store with
   * those digests (no second read): a result whose content is not what its name says is refused, and
   * nothing is kept.
   */
  async pull(store: Store, hash: string): Promise<{ bytes: number; files: number }> {
    const staging = store.newStaging(`remote-${hash}`)
    try {
      const { manifest: m, known } = await this.download(hash, staging)
      const { hash: _h, kind: _k, bytes: _b, files: _f, ...describe } = m.sidecar ?? {}
      const committed = await store.commitVerified(staging, m.kind, { ...describe, restoredFrom: this.spec.url }, known)
      if (committed.hash !== hash) {
        store.remove(committed.hash)
        throw new Error(`artifact ${hash.slice(0, 12)}: the downloaded files hash to ${committed.hash.slice(0, 12)}`)
      }
      return { bytes: committed.bytes, files: committed.files }
    } catch (e) {
      store.discard(staging)
      throw e
    }
  }

  /**
   * Downloads an artifact's files into `dir` (an empty directory), pinned first, each blob checked
   * against its sha256 as it streams. Returns the manifest and, per file, the digest taken while
   * downloading with the file's stat once read-only (what Store.commitVerified trusts).
   */
  async download(hash: string, dir: string): Promise<{ manifest: RemoteManifest; known: Array<FileEntry & { ino: number; mtimeMs: number; ctimeMs: number }> }> {
    await this.pin([hash])
    const m = await this.manifest(hash)
    if (m === undefined) throw new Error(`artifact ${hash.slice(0, 12)} is not in the remote (no manifest)`)
    const known: Array<FileEntry & { ino: number; mtimeMs: number; ctimeMs: number }> = []
    await eachLimit(m.files, PARALLEL, async ([rel, size, sha]) => {
      if (!isHash(sha) || rel.split("/").some((p) => p === "" || p === "." || p === "..") || path.isAbsolute(rel)) {
        throw new Error(`artifact ${hash.slice(0, 12)}: the remote manifest names a bad file entry "${rel}"`)
      }
      const file = path.join(dir, rel)
      fs.mkdirSync(path.dirname(file), { recursive: true })
      const got = await this.s3.getToFile(this.key("blobs", sha), file)
      if (got === undefined) {
        await this.forget(hash)
        throw new Error(`artifact ${hash.slice(0, 12)}: blob ${sha.slice(0, 12)} of ${rel} is missing from the remote (its manifest is deleted, so the next upload of it is complete again)`)
      }
      if (got.sha256 !== sha || got.size !== size) {
        // a blob whose bytes are not its name is wrong for everyone: gone, with the manifest naming it
        await this.s3.delete(this.key("blobs", sha))
        await this.forget(hash)
        throw new Error(`artifact ${hash.slice(0, 12)}: ${rel} downloaded with sha256 ${got.sha256.slice(0, 12)}, not ${sha.slice(0, 12)} (the bad blob and its manifest are deleted from the remote)`)
      }
      known.push({ rel, size: got.size, hash: got.sha256, ino: got.stat.ino, mtimeMs: got.stat.mtimeMs, ctimeMs: got.stat.ctimeMs })
    })
    return { manifest: m, known }
  }

  /** Deletes an artifact's manifest: it is absent from now on, and the next push uploads it whole. */
  private async forget(hash: string): Promise<void> {
    await this.s3.delete(this.key("artifacts", `${hash}.json`)).catch(() => {})
  }

  // writing ------------------------------------------------------------------------------------

  /**
   * Uploads a local artifact (blobs, then its manifest) unless the remote already has its manifest, then
   * writes the index entry for `key` when one is given. Idempotent; safe to race with other drivers.
   */
  async push(store: Store, hash: string, result?: { key: string; seconds: number }): Promise<{ uploaded: number; bytes: number }> {
    let uploaded = 0
    let bytes = 0
    // pinned before anything is looked at or written, so a remote gc that lists after this leaves it be
    await this.pin([hash])
    if ((await this.s3.head(this.key("artifacts", `${hash}.json`))) === undefined) {
      const rec = store.db.artifact(hash)
      if (rec === undefined) throw new Error(`artifact ${hash.slice(0, 12)} is not in the local store`)
      const check = store.check(hash, false)
      if (!check.ok) throw new Error(`artifact ${hash.slice(0, 12)} in the local store is damaged (${check.problem})`)
      const local = parseManifest(store.db.artifact(hash)?.manifest ?? "null")
      if (local === undefined) throw new Error(`artifact ${hash.slice(0, 12)} has no manifest in the local store (run cache verify --repair)`)
      const files: Array<RemoteFile> = local.map(([rel, size, sha]) => [rel, size, sha] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      const blobs = [...new Map(files.map((f) => [f[2], f] as const)).values()]
      for (const b of blobs) this.uploadingBlobs.add(b[2])
      await this.writeLease()
      try {
        await eachLimit(blobs, PARALLEL, async ([rel, size, sha]) => {
          const there = await this.s3.head(this.key("blobs", sha))
          if (there !== undefined && there.size === size) return
          await this.s3.putFile(this.key("blobs", sha), path.join(store.artifactPath(hash), rel), size, sha)
          uploaded++
          bytes += size
        })
        const manifest: RemoteManifest = { format: 1, hash, kind: rec.kind, bytes: rec.bytes, files, sidecar: readSidecar(store, hash) }
        await this.s3.putBytes(this.key("artifacts", `${hash}.json`), canonicalJson(manifest) + "\n")
      } finally {
        for (const b of blobs) this.uploadingBlobs.delete(b[2])
      }
    }
    if (result !== undefined) {
      const entry: RemoteResult = { key: result.key, output: hash, seconds: Math.round(result.seconds * 1000) / 1000 }
      await this.s3.putBytes(this.key("index", `${result.key}.json`), canonicalJson(entry) + "\n")
    }
    return { uploaded, bytes }
  }

  // leases -------------------------------------------------------------------------------------

  /**
   * Adds artifacts to this driver's lease object and waits until it is written. The lease is rewritten
   * every HEARTBEAT_S seconds while the driver lives; a remote gc ignores one not rewritten within the
   * lease expiry (ANNEAL_LEASE_EXPIRY_S, default 600 s), judged by the server's clock.
   */
  async pin(hashes: ReadonlyArray<string>): Promise<void> {
    const fresh = hashes.filter((h) => !this.pins.has(h))
    if (fresh.length === 0 && this.leaseWritten) return
    for (const h of fresh) this.pins.add(h)
    await this.writeLease()
    if (this.heartbeat === undefined) {
      this.heartbeat = setInterval(() => void this.writeLease().catch(() => {}), HEARTBEAT_S * 1000)
      this.heartbeat.unref()
    }
  }

  private writeLease(): Promise<void> {
    const body: LeaseBody = { owner: this.owner, host: os.hostname(), pid: process.pid, pins: [...this.pins], blobs: [...this.uploadingBlobs] }
    // one write at a time, each with the latest state
    this.leaseWrite = this.leaseWrite.catch(() => {}).then(() => this.s3.putBytes(this.key("leases", `${this.owner}.json`), JSON.stringify(body)))
    return this.leaseWrite.then(() => {
      this.leaseWritten = true
    })
  }

  /** Deletes this driver's lease object (the run is over). */
  async release(): Promise<void> {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat)
    this.heartbeat = undefined
    if (!this.leaseWritten) return
    await this.leaseWrite.catch(() => {})
    await this.s3.delete(this.key("leases", `${this.owner}.json`))
  }

  /** Live leases (rewritten within the expiry by the server's clock) and the expired ones' keys. */
  async leases(): Promise<{ live: Array<LeaseBody>; expired: Array<string> }> {
    const objects = await this.s3.list(this.key("leases") + "/")
    const now = this.s3.serverNow()
    const live: Array<LeaseBody> = []
    const expired: Array<string> = []
    for (const o of objects) {
      if (now - o.lastModified > expirySeconds() * 1000) {
        expired.push(o.key)
        continue
      }
      const body = await this.s3.getBytes(o.key)
      const lease = body === undefined ? undefined : (parseJson(body) as LeaseBody | undefined)
      if (lease !== undefined && Array.isArray(lease.pins)) live.push({ ...lease, blobs: Array.isArray(lease.blobs) ? lease.blobs : [] })
    }
    return { live, expired }
  }

  /** The object key prefix of a section ("blobs", "artifacts", "index", "leases"). */
  sectionPrefix(section: string): string {
    return this.key(section) + "/"
  }
}

const parseJson = (body: Buffer): unknown => {
  try {
    return JSON.parse(body.toString("utf8"))
  } catch {
    return undefined
  }
}

const readSidecar = (store: Store, hash: string): Record<string, unknown> => {
  try {
    return JSON.parse(fs.readFileSync(store.artifactPath(hash) + ".json", "utf8")) as Record<string, unknown>
  } catch {
    return {}
  }
}

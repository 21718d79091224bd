/**
 * Content hashing. Keys and artifact ids are sha256 hex. An artifact's id is a Merkle hash over its
 * files: sha256 of the sorted lines "<relative path>\0<size>\0<file sha256>", so the id depends on
 * content and names only (never on mtimes or the order files were written).
 */
import { createHash, hash as oneShotHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** One-shot (`crypto.hash`): no Hash object per call, half the cost for the short texts keys are made of. */
export const sha256 = (data: string | Uint8Array): string => oneShotHash("sha256", data, "hex")

/** JSON with object keys sorted, so equal values always give equal text (and equal keys). */
export const canonicalJson = (value: unknown): string => {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) return JSON.stringify(String(value))
    return JSON.stringify(value) ?? "null"
  }
  if (Array.isArray(value)) {
    // a list of strings (a step's input hashes) is JSON.stringify's own output, made natively
    if (value.every((v) => typeof v === "string")) return JSON.stringify(value)
    let out = "["
    for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + canonicalJson(value[i])
    return out + "]"
  }
  // keys compared by UTF-16 code units (the default sort), as before; built by concatenation, not
  // intermediate arrays: every step's key goes through here on every run
  const record = value as Record<string, unknown>
  const keys = Object.keys(record).sort()
  let out = "{"
  let first = true
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!
    const v = record[k]
    if (v === undefined) continue
    out += (first ? "" : ",") + JSON.stringify(k) + ":" + canonicalJson(v)
    first = false
  }
  return out + "}"
}

const CHUNK = 4 * 1024 * 1024

// one buffer for every call (hashFile is synchronous): allocating 4 MiB per file made hashing an
// artifact of thousands of small files several times slower than reading it
let shared: Buffer | undefined

/** sha256 of a file, read in chunks so memory stays flat for multi-GB files. */
export const hashFile = (file: string): string => {
  const h = createHash("sha256")
  const fd = fs.openSync(file, "r")
  try {
    const buf = (shared ??= Buffer.allocUnsafe(CHUNK))
    for (;;) {
      const n = fs.readSync(fd, buf, 0, CHUNK, null)
      if (n === 0) break
      h.update(n === CHUNK ? buf : buf.subarray(0, n))
    }
  } finally {
    fs.closeSync(fd)
  }
  return h.digest("hex")
}

export interface FileEntry {
  readonly rel: string
  readonly size: number
  readonly hash: string
}

/**
 * Every regular file under dir, sorted, and every directory ("" the root) with its signature [rel,
 * inode, mtimeMs, ctimeMs] taken just before it was read, so an entry added during the walk moves a
 * signature recorded here. Symlinks are refused: an artifact must be self-contained.
 */
export const listTree = (dir: string): { files: Array<string>; dirs: Array<readonly [string, number, number, number]> } => {
  const files: Array<string> = []
  const dirs: Array<readonly [string, number, number, number]> = []
  const walk = (rel: string) => {
    const abs = rel === "" ? dir : path.join(dir, rel)
    const st = fs.statSync(abs)
    dirs.push([rel, st.ino, st.mtimeMs, st.ctimeMs])
    for (const e of fs.readdirSync(abs, { withFileTypes: true })) {
      const r = rel === "" ? e.name : rel + "/" + e.name
      if (e.isDirectory()) walk(r)
      else if (e.isFile()) files.push(r)
      else throw new Error(`${path.join(dir, r)}: only regular files and directories can be part of an artifact`)
    }
  }
  walk("")
  return { files: files.sort(), dirs }
}

/** Every regular file under dir (symlinks are refused: an artifact must be self-contained). */
export const listFiles = (dir: string): Array<string> => listTree(dir).files

export const merkle = (entries: ReadonlyArray<FileEntry>): string =>
  sha256([...entries].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0))
    .map((e) => `${e.rel}\0${e.size}\0${e.hash}`)
    .join("\n"))

/** Hashes a directory (or a single file, as a one-entry tree named by its base name). */
export const hashTree = (
  target: string,
  hashOne: (file: string, stat: fs.Stats) => string = (f) => hashFile(f)
): { readonly hash: string; readonly entries: ReadonlyArray<FileEntry>; readonly bytes: number } => {
  const st = fs.statSync(target)
  const files = st.isDirectory() ? listFiles(target).map((rel) => ({ rel, abs: path.join(target, rel) })) : [
    { rel: path.basename(target), abs: target }
  ]
  let bytes = 0
  const entries = files.map(({ rel, abs }) => {
    const s = fs.statSync(abs)
    bytes += s.size
    return { rel, size: s.size, hash: hashOne(abs, s) }
  })
  return { hash: merkle(entries), entries, bytes }
}

/**
 * Hashing off the event loop. A lazily started pool of worker threads (one per core, at most 8) reads,
 * hashes and makes read-only the files of an artifact being committed, so the live view keeps ticking
 * while a multi-GB checkpoint or 100,000 small files are hashed, and every core takes part. The workers
 * compute exactly what `hashFile` computes (sha256 of the bytes; a test holds them equal). The worker
 * is plain JavaScript given as source text, so it runs the same from the TypeScript checkout (under
 * tsx) and from the compiled package, with no loader in the worker.
 */
const workerSource = `
const { parentPort } = require("node:worker_threads")
const { createHash } = require("node:crypto")
const fs = require("node:fs")
const CHUNK = ${CHUNK}
let buf
parentPort.on("message", ({ id, files, readOnly }) => {
  const out = []
  try {
    for (const file of files) {
      const h = createHash("sha256")
      const fd = fs.openSync(file, "r")
      try {
        buf ??= Buffer.allocUnsafe(CHUNK)
        for (;;) {
          const n = fs.readSync(fd, buf, 0, CHUNK, null)
          if (n === 0) break
          h.update(n === CHUNK ? buf : buf.subarray(0, n))
        }
        if (readOnly) fs.fchmodSync(fd, 0o444)
        const st = fs.fstatSync(fd)
        out.push([h.digest("hex"), st.size, st.ino, st.mtimeMs, st.ctimeMs])
      } finally {
        fs.closeSync(fd)
      }
    }
    parentPort.postMessage({ id, out })
  } catch (e) {
    parentPort.postMessage({ id, error: { message: String(e && e.message), code: e && e.code } })
  }
})
`

/** What a worker reports per file: sha256, and the stat after hashing (and chmod, when asked). */
export interface HashedFile {
  readonly hash: string
  readonly size: number
  readonly ino: number
  readonly mtimeMs: number
  readonly ctimeMs: number
}

type Job = { readonly files: ReadonlyArray<string>; readonly done: (r: Array<HashedFile> | Error) => void }

class HashPool {
  private readonly idle: Array<import("node:worker_threads").Worker> = []
  private readonly queue: Array<Job> = []
  private readonly busy = new Map<import("node:worker_threads").Worker, Job>()
  private size = 0
  private ctor: typeof import("node:worker_threads").Worker | undefined

  constructor(private readonly max: number, private readonly readOnly: boolean) {}

  run(files: ReadonlyArray<string>): Promise<Array<HashedFile>> {
    return new Promise((ok, fail) => {
      this.queue.push({ files, done: (r) => (r instanceof Error ? fail(r) : ok(r)) })
      this.pump()
    })
  }

  private async spawn() {
    this.ctor ??= (await import("node:worker_threads")).Worker
    const w = new this.ctor(workerSource, { eval: true })
    w.unref() // an idle pool never keeps a command alive
    w.on("message", (m: { out?: Array<[string, number, number, number, number]>; error?: { message: string; code?: string } }) => {
      const job = this.busy.get(w)
      this.busy.delete(w)
      this.idle.push(w)
      if (m.error !== undefined) job?.done(Object.assign(new Error(m.error.message), { code: m.error.code }))
      else job?.done(m.out!.map(([hash, size, ino, mtimeMs, ctimeMs]) => ({ hash, size, ino, mtimeMs, ctimeMs })))
      this.pump()
    })
    w.on("error", (e) => {
      const job = this.busy.get(w)
      this.busy.delete(w)
      this.size--
      job?.done(e)
      this.pump()
    })
    this.idle.push(w)
    this.pump()
  }

  private pump() {
    while (this.queue.length > 0 && this.idle.length > 0) {
      const w = this.idle.pop()!
      const job = this.queue.shift()!
      this.busy.set(w, job)
      w.ref() // while it works, the command waits for it
      w.postMessage({ id: 0, files: job.files, readOnly: this.readOnly })
    }
    for (const w of this.idle) w.unref()
    if (this.queue.length > this.idle.length && this.size < this.max) {
      this.size++
      void this.spawn().catch((e: unknown) => {
        this.size--
        for (const job of this.queue.splice(0)) job.done(e as Error)
      })
    }
  }
}

const pools = new Map<boolean, HashPool>()
const poolOf = (readOnly: boolean) => {
  let p = pools.get(readOnly)
  if (p === undefined) {
    p = new HashPool(Math.max(1, Math.min(8, os.availableParallelism())), readOnly)
    pools.set(readOnly, p)
  }
  return p
}

/** Trees of more files than this are batched by count (128 files a batch), not by size. */
const UNSIZED_FILES = 4096
/** the size assumed for a file not stat-ed before hashing: 128 of them fill a batch */
const UNSIZED = (16 * 1024 * 1024) / 128

/** Below this, hashing in place costs less than a message to a worker (a no-op step's one tiny file). */
const INLINE_BYTES = 1024 * 1024
const INLINE_FILES = 32

/**
 * Hashes files on the worker pool (inline when they are few and small), in batches sized so that every
 * worker gets a share and none holds a long tail: about 16 MiB or 256 files per batch. With `readOnly`,
 * each file is also made read-only (chmod 0444) before its stat is taken, as the store's commit needs.
 */
export const hashFilesOffThread = async (
  files: ReadonlyArray<{ readonly abs: string; readonly size: number }>,
  options: { readonly readOnly?: boolean } = {}
): Promise<Array<HashedFile>> => {
  const readOnly = options.readOnly === true
  const total = files.reduce((s, f) => s + f.size, 0)
  if (files.length <= INLINE_FILES && total <= INLINE_BYTES) {
    return files.map(({ abs }) => {
      const hash = hashFile(abs)
      if (readOnly) fs.chmodSync(abs, 0o444)
      const st = fs.statSync(abs)
      return { hash, size: st.size, ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs }
    })
  }
  const batches: Array<Array<string>> = []
  let batch: Array<string> = []
  let bytes = 0
  for (const f of files) {
    if (batch.length > 0 && (batch.length >= 256 || bytes + f.size > 16 * 1024 * 1024)) {
      batches.push(batch)
      batch = []
      bytes = 0
    }
    batch.push(f.abs)
    bytes += f.size
  }
  if (batch.length > 0) batches.push(batch)
  const pool = poolOf(readOnly)
  return (await Promise.all(batches.map((b) => pool.run(b)))).flat()
}

/**
 * `hashTree` off the event loop: the same hash and entries (the directory walk and stats stay here;
 * reading and hashing go to the pool). `stats` carries each file's stat after hashing, for a manifest.
 */
export const hashTreeOffThread = async (
  target: string,
  options: { readonly readOnly?: boolean } = {}
): Promise<{
  readonly hash: string
  readonly entries: ReadonlyArray<FileEntry>
  readonly bytes: number
  readonly stats: ReadonlyArray<HashedFile>
  /** the directories walked (relative; "" is the root), for their signatures once in place */
  readonly dirs: ReadonlyArray<string>
}> => {
  const st = fs.statSync(target)
  const tree = st.isDirectory() ? listTree(target) : undefined
  const files = tree !== undefined
    ? tree.files.map((rel) => ({ rel, abs: `${target}/${rel}` }))
    : [{ rel: path.basename(target), abs: target }]
  // sizes only balance the batches; past a few thousand files there are batches enough for every
  // worker without them, and 100,000 stats on the event loop are saved (the workers stat each file)
  const sized = files.length > UNSIZED_FILES
    ? files.map(({ abs }) => ({ abs, size: UNSIZED }))
    : files.map(({ abs }) => ({ abs, size: fs.statSync(abs).size }))
  const hashed = await hashFilesOffThread(sized, options)
  let total = 0
  const entries = files.map(({ rel }, i) => {
    total += hashed[i]!.size
    return { rel, size: hashed[i]!.size, hash: hashed[i]!.hash }
  })
  return { hash: merkle(entries), entries, bytes: total, stats: hashed, dirs: tree?.dirs.map((d) => d[0]) ?? [] }
}

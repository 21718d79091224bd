/**
 * Content hashing. Keys and artifact ids are sha256 hex. An artifact's id is a Merkle hash over its
 * files: sha256 of the sorted lines "<relative path>\0<size>\0<file sha256>", so the id depends on
 * content and names only (never on mtimes or the order files were written).
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"

export const sha256 = (data: string | Uint8Array): string => createHash("sha256").update(data).digest("hex")

/** JSON with object keys sorted, so equal values always give equal text (and equal keys). */
export const canonicalJson = (value: unknown): string => {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) return JSON.stringify(String(value))
    return JSON.stringify(value) ?? "null"
  }
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]"
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return "{" + entries.map(([k, v]) => JSON.stringify(k) + ":" + canonicalJson(v)).join(",") + "}"
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

/** Every regular file under dir (symlinks are refused: an artifact must be self-contained). */
export const listFiles = (dir: string): Array<string> => {
  const out: Array<string> = []
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel === "" ? e.name : rel + "/" + e.name
      if (e.isDirectory()) walk(r)
      else if (e.isFile()) out.push(r)
      else throw new Error(`${path.join(dir, r)}: only regular files and directories can be part of an artifact`)
    }
  }
  walk("")
  return out.sort()
}

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

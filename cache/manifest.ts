/**
 * An artifact's manifest: every file with its size, its sha256 and the stat signature (inode, mtime,
 * ctime) it had when committed. Checking it needs one directory walk and one stat per file, no reading,
 * so `has()` can afford it for multi-GB artifacts. A file whose signature changed (any write, chmod,
 * copy or replace moves ctime, which user space cannot set back) is rehashed and compared, so a flipped
 * byte is caught too; only damage that leaves the stat untouched (bit rot under the filesystem) needs
 * `cache verify` or `run --verify`, which rehash everything.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { hashFile, listFiles } from "./hash.ts"
import type { FileEntry } from "./hash.ts"

/** [relative path, size, sha256, inode, mtimeMs, ctimeMs] */
export type ManifestEntry = readonly [string, number, string, number, number, number]

const signature = (st: fs.Stats) => [st.ino, st.mtimeMs, st.ctimeMs] as const

/** The manifest of `dir` as it is now, given each file's content hash (from the commit's hashing). */
export const manifestOf = (dir: string, entries: ReadonlyArray<FileEntry>): Array<ManifestEntry> =>
  entries.map((e) => [e.rel, e.size, e.hash, ...signature(fs.statSync(path.join(dir, e.rel)))] as const)

export type Check =
  | { readonly ok: true; /** a refreshed manifest when some file's stat changed but its content did not */ readonly refreshed?: Array<ManifestEntry> }
  | { readonly ok: false; readonly problem: string }

/**
 * Checks `dir` against its manifest. `deep` rehashes every file (run --verify); otherwise only files
 * whose stat signature moved are rehashed.
 */
export const checkManifest = (dir: string, manifest: ReadonlyArray<ManifestEntry>, deep: boolean): Check => {
  let st: fs.Stats
  try {
    st = fs.statSync(dir)
  } catch {
    return { ok: false, problem: "missing from the store" }
  }
  if (!st.isDirectory()) return { ok: false, problem: "replaced by a plain file" }
  let onDisk: Array<string>
  try {
    onDisk = listFiles(dir)
  } catch (e) {
    return { ok: false, problem: `unreadable: ${(e as Error).message}` }
  }
  const expected = new Set(manifest.map((m) => m[0]))
  const extra = onDisk.find((f) => !expected.has(f))
  if (extra !== undefined) return { ok: false, problem: `unexpected file ${extra}` }
  if (onDisk.length !== manifest.length) {
    const present = new Set(onDisk)
    return { ok: false, problem: `file ${manifest.find((m) => !present.has(m[0]))?.[0]} missing` }
  }
  let refreshed: Array<ManifestEntry> | undefined
  for (let i = 0; i < manifest.length; i++) {
    const [rel, size, sha, ino, mtime, ctime] = manifest[i]!
    const fst = fs.statSync(path.join(dir, rel))
    if (fst.size !== size) return { ok: false, problem: `file ${rel} is ${fst.size} bytes, expected ${size}` }
    const moved = fst.ino !== ino || fst.mtimeMs !== mtime || fst.ctimeMs !== ctime
    if (!moved && !deep) continue
    if (hashFile(path.join(dir, rel)) !== sha) return { ok: false, problem: `file ${rel} content changed` }
    if (moved) {
      refreshed ??= [...manifest]
      refreshed[i] = [rel, size, sha, ...signature(fst)]
    }
  }
  return refreshed === undefined ? { ok: true } : { ok: true, refreshed }
}

export const parseManifest = (json: string): ReadonlyArray<ManifestEntry> | undefined => {
  try {
    const m = JSON.parse(json) as unknown
    return Array.isArray(m) ? (m as ReadonlyArray<ManifestEntry>) : undefined
  } catch {
    return undefined
  }
}

/**
 * An artifact's manifest: every file with its size, its sha256 and the stat signature (inode, mtime,
 * ctime) it had when committed, and beside it the signature of every directory of the artifact. Adding,
 * removing or renaming an entry moves its directory's mtime and ctime, so when every directory still has
 * its signature the file list cannot have changed and no directory is read: a check is one stat per
 * directory and one per file, no readdir and no reading, so `has()` can afford it for thousands of
 * cached steps and for multi-GB artifacts. A moved directory signature (or none recorded) means a walk
 * that compares names, as before. A file whose signature changed (any write, chmod,
 * copy or replace moves ctime, which user space cannot set back) is rehashed and compared, so a flipped
 * byte is caught too; only damage that leaves the stat untouched (bit rot under the filesystem) needs
 * `cache verify` or `run --verify`, which rehash everything.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { hashFile, listTree } from "./hash.ts"
import type { FileEntry } from "./hash.ts"

/** [relative path, size, sha256, inode, mtimeMs, ctimeMs] */
export type ManifestEntry = readonly [string, number, string, number, number, number]

/** [relative directory ("" is the artifact's root), inode, mtimeMs, ctimeMs] */
export type DirSignature = readonly [string, number, number, number]

const signature = (st: fs.Stats) => [st.ino, st.mtimeMs, st.ctimeMs] as const

/** The signatures of the artifact's directories as they are now (after the commit's rename). */
export const dirSignaturesOf = (dir: string, rels: ReadonlyArray<string>): Array<DirSignature> =>
  rels.map((rel) => [rel, ...signature(fs.statSync(rel === "" ? dir : path.join(dir, rel)))] as const)

/** The manifest of `dir` as it is now, given each file's content hash (from the commit's hashing). */
export const manifestOf = (dir: string, entries: ReadonlyArray<FileEntry>): Array<ManifestEntry> =>
  entries.map((e) => [e.rel, e.size, e.hash, ...signature(fs.statSync(path.join(dir, e.rel)))] as const)

export type Check =
  | {
    readonly ok: true
    /** a refreshed manifest when some file's stat changed but its content did not */
    readonly refreshed?: Array<ManifestEntry>
    /** the directories' signatures when they were missing or moved and a walk found the same files */
    readonly dirs?: Array<DirSignature>
  }
  | { readonly ok: false; readonly problem: string }

/**
 * Whether `dir` still matches its manifest by stat alone: every directory's signature and every file's
 * size and signature as recorded, so there is nothing to list or rehash (a check's common case). It is
 * written self-contained (it names nothing outside itself; `stat` returns undefined for anything it
 * cannot stat) because its source also runs on the presence scan's worker thread (presence-scan.ts).
 */
export const unchangedByStat = (
  dir: string,
  manifest: ReadonlyArray<ManifestEntry>,
  dirs: ReadonlyArray<DirSignature>,
  stat: (p: string) => fs.Stats | undefined
): boolean => {
  if (dirs.length === 0 || dirs[0]![0] !== "") return false
  // indexed, not destructured: unoptimised destructuring allocates an iterator per entry
  for (let i = 0; i < dirs.length; i++) {
    const d = dirs[i]!
    const st = stat(d[0] === "" ? dir : dir + "/" + d[0])
    if (st === undefined || !st.isDirectory() || st.ino !== d[1] || st.mtimeMs !== d[2] || st.ctimeMs !== d[3]) return false
  }
  for (let i = 0; i < manifest.length; i++) {
    const m = manifest[i]!
    const st = stat(dir + "/" + m[0])
    if (st === undefined || !st.isFile() || st.size !== m[1] || st.ino !== m[3] || st.mtimeMs !== m[4] || st.ctimeMs !== m[5]) return false
  }
  return true
}

/** fs.statSync, or undefined for anything that cannot be stat-ed (missing, not a directory, no access). */
export const statOrUndefined = (p: string): fs.Stats | undefined => {
  try {
    return fs.statSync(p, { throwIfNoEntry: false })
  } catch {
    return undefined
  }
}

const sameDir = (dir: string, [rel, ino, mtime, ctime]: DirSignature, root: fs.Stats): boolean => {
  let st: fs.Stats
  try {
    st = rel === "" ? root : fs.statSync(path.join(dir, rel))
  } catch {
    return false
  }
  return st.isDirectory() && st.ino === ino && st.mtimeMs === mtime && st.ctimeMs === ctime
}

/**
 * Checks `dir` against its manifest. `deep` rehashes every file (run --verify); otherwise only files
 * whose stat signature moved are rehashed. With `dirs` (the directories' signatures) unchanged, the
 * file list is known without reading a directory.
 */
export const checkManifest = (
  dir: string,
  manifest: ReadonlyArray<ManifestEntry>,
  deep: boolean,
  dirs?: ReadonlyArray<DirSignature>
): Check => {
  if (!deep && dirs !== undefined && unchangedByStat(dir, manifest, dirs, statOrUndefined)) return { ok: true }
  // something moved (or no signatures, or --verify): list what changed, rehash what may have
  let st: fs.Stats
  try {
    st = fs.statSync(dir)
  } catch {
    return { ok: false, problem: "missing from the store" }
  }
  if (!st.isDirectory()) return { ok: false, problem: "replaced by a plain file" }
  const listed = !deep && dirs !== undefined && dirs[0]?.[0] === "" && dirs.every((d) => sameDir(dir, d, st))
  let walked: Array<DirSignature> | undefined
  if (!listed) {
    let onDisk: Array<string>
    try {
      const tree = listTree(dir)
      onDisk = tree.files
      walked = tree.dirs
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
  }
  let refreshed: Array<ManifestEntry> | undefined
  for (let i = 0; i < manifest.length; i++) {
    const [rel, size, sha, ino, mtime, ctime] = manifest[i]!
    let fst: fs.Stats
    try {
      fst = fs.statSync(path.join(dir, rel))
    } catch {
      return { ok: false, problem: `file ${rel} missing` }
    }
    if (!fst.isFile()) return { ok: false, problem: `file ${rel} is no longer a regular file` }
    if (fst.size !== size) return { ok: false, problem: `file ${rel} is ${fst.size} bytes, expected ${size}` }
    const moved = fst.ino !== ino || fst.mtimeMs !== mtime || fst.ctimeMs !== ctime
    if (!moved && !deep) continue
    if (hashFile(path.join(dir, rel)) !== sha) return { ok: false, problem: `file ${rel} content changed` }
    if (moved) {
      refreshed ??= [...manifest]
      refreshed[i] = [rel, size, sha, ...signature(fst)]
    }
  }
  return { ok: true, ...(refreshed === undefined ? {} : { refreshed }), ...(walked === undefined ? {} : { dirs: walked }) }
}

/**
 * Directory timestamps tick at the kernel's clock granularity (a jiffy on Linux; a second or two on some
 * network and FAT file systems), so an entry added in the same tick as the signature was taken would
 * leave it unchanged (git's "racy" index entries). A signature is trusted only when its directory's
 * ctime is older than this when it was recorded; a newer one makes the next check list the directory
 * and record again, by then out of the window.
 */
export const RACY_MS = 2000

/** The `artifacts.dirs` column: the signatures and when they were recorded. */
export const dirsJson = (dirs: ReadonlyArray<DirSignature>, at = Date.now()): string => JSON.stringify({ at, dirs })

/** The recorded signatures when they can vouch for the directories' contents, else undefined (list them). */
export const parseDirs = (json: string | null | undefined): ReadonlyArray<DirSignature> | undefined => trustedDirs(json, RACY_MS)

/** `parseDirs` with the racy window given: self-contained, as `unchangedByStat`, for the presence scan. */
export const trustedDirs = (json: string | null | undefined, racyMs: number): ReadonlyArray<DirSignature> | undefined => {
  if (json === null || json === undefined) return undefined
  try {
    const d = JSON.parse(json) as { at?: unknown; dirs?: unknown }
    if (typeof d?.at !== "number" || !Array.isArray(d.dirs)) return undefined
    const at = d.at
    const dirs = d.dirs as ReadonlyArray<DirSignature>
    return dirs.every((sig) => sig[3] < at - racyMs) ? dirs : undefined
  } catch {
    return undefined
  }
}

export const parseManifest = (json: string): ReadonlyArray<ManifestEntry> | undefined => {
  try {
    const m = JSON.parse(json) as unknown
    return Array.isArray(m) ? (m as ReadonlyArray<ManifestEntry>) : undefined
  } catch {
    return undefined
  }
}

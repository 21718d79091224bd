/**
 * The store's format, recorded in `<store>/store.json` as {"format": N, "hash": "<algorithm>"}: how
 * artifacts are named (the Merkle hash of cache/hash.ts over sha256 file hashes) and laid out
 * (cache/store.ts). A store from before the marker (no store.json) is format 1, the same layout and
 * hashes, so it is read as is and gets the marker. A store of a format this anneal does not know (a
 * newer anneal's, with other hashes) is refused with one line saying what to do: its artifact names
 * could not be checked here, and writing into it would mix two namings.
 *
 * sha256 stays the artifact hash: Node's sha256 (OpenSSL) uses the CPU's SHA extensions, and the
 * BLAKE3 builds that install from npm without compiling are WASM and single-threaded: measured on the
 * 2-core dev machine (Dec 2026, under load), 256 MiB in memory: sha256 0.28-0.38 GiB/s, hash-wasm
 * BLAKE3 0.09-0.31 GiB/s, @webbuf/blake3 0.09-0.17 GiB/s; per small file, sha256 4-17 us vs BLAKE3
 * 4-21 us. The native BLAKE3 bindings (the `blake3` package) did not install from the registry.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { CacheError } from "./errors.ts"

export const STORE_FORMAT = 1
export const ARTIFACT_HASH = "sha256"
const FILE = "store.json"

/**
 * Refuses a store of an unknown format; records the format in a store that has none yet (a new store,
 * or one from before the marker). Called before anything else in the store is opened or written.
 */
export const checkStoreFormat = (root: string): void => {
  const file = path.join(root, FILE)
  let text: string | undefined
  try {
    text = fs.readFileSync(file, "utf8")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new CacheError({ message: `cannot read the store's format file ${file}: ${(e as Error).message}`, path: file, cause: e })
    }
  }
  if (text === undefined) {
    const tmp = `${file}.${process.pid}.tmp`
    try {
      fs.writeFileSync(tmp, JSON.stringify({ format: STORE_FORMAT, hash: ARTIFACT_HASH }) + "\n")
      fs.renameSync(tmp, file)
    } catch (e) {
      fs.rmSync(tmp, { force: true })
      throw new CacheError({ message: `cannot write the store's format file ${file}: ${(e as Error).message}`, path: file, cause: e })
    }
    return
  }
  let format: unknown
  let hash: unknown
  try {
    ;({ format, hash } = JSON.parse(text) as { format?: unknown; hash?: unknown })
  } catch {
    format = undefined
  }
  if (format === STORE_FORMAT && hash === ARTIFACT_HASH) return
  const what = typeof format === "number" ? `format ${format}${typeof hash === "string" ? ` (${hash} hashes)` : ""}` : "a format file anneal cannot read"
  throw new CacheError({
    message: `store ${root} has ${what}; this anneal reads format ${STORE_FORMAT} (${ARTIFACT_HASH}): ` +
      `use the anneal that wrote it, or point --store at another directory (its artifacts cannot be checked here)`,
    path: file
  })
}

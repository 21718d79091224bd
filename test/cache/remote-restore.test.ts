/**
 * A remote restore hashes each file as it downloads; the store's commit then takes those digests instead
 * of reading the files again (Store.commitVerified), but only while each file is exactly what was
 * downloaded: a file rewritten, added or removed in between makes the commit hash the tree itself, so the
 * artifact's name is always its content's.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, test } from "vitest"
import { hashTree } from "../../cache/hash.ts"
import { Store } from "../../cache/store.ts"

const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-restore-"))
afterAll(() => fs.rmSync(root, { recursive: true, force: true }))

/** A staging tree as a download leaves it: files written, made read-only, their digests and stats known. */
const downloaded = (store: Store, files: Record<string, string>) => {
  const staging = store.newStaging(`restore-${Math.random()}`)
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(staging, rel)), { recursive: true })
    fs.writeFileSync(path.join(staging, rel), text)
    fs.chmodSync(path.join(staging, rel), 0o444)
  }
  const tree = hashTree(staging)
  const known = tree.entries.map((e) => {
    const st = fs.statSync(path.join(staging, e.rel))
    return { ...e, ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs }
  })
  return { staging, known, hash: tree.hash }
}

const rewrite = (file: string, text: string) => {
  fs.chmodSync(file, 0o644)
  fs.writeFileSync(file, text)
  fs.chmodSync(file, 0o444)
}

describe("commit of a restored artifact with the digests taken while downloading", () => {
  const store = Store.open(path.join(root, "store"))

  test("an untouched download commits under its name, with a manifest that checks deep", async () => {
    const d = downloaded(store, { "a.txt": "alpha\n", "sub/b.txt": "beta\n" })
    const committed = await store.commitVerified(d.staging, "files", {}, d.known)
    expect(committed.hash).toBe(d.hash)
    expect(store.check(d.hash, true).ok).toBe(true)
  })

  test("a file rewritten between download and commit (same size) is rehashed: the artifact is named by what is there", async () => {
    const d = downloaded(store, { "a.txt": "gamma\n", "b.txt": "delta\n" })
    rewrite(path.join(d.staging, "a.txt"), "GAMMA\n")
    const actual = hashTree(d.staging).hash
    const committed = await store.commitVerified(d.staging, "files", {}, d.known)
    expect(committed.hash).not.toBe(d.hash)
    expect(committed.hash).toBe(actual)
    expect(store.check(actual, true).ok).toBe(true)
  })

  test("a file added or removed after the download is not taken on trust either", async () => {
    const added = downloaded(store, { "x.txt": "one\n" })
    fs.writeFileSync(path.join(added.staging, "extra.txt"), "planted\n")
    expect((await store.commitVerified(added.staging, "files", {}, added.known)).hash).not.toBe(added.hash)

    const removed = downloaded(store, { "y.txt": "two\n", "z.txt": "three\n" })
    fs.rmSync(path.join(removed.staging, "z.txt"), { force: true })
    const actual = hashTree(removed.staging).hash
    expect((await store.commitVerified(removed.staging, "files", {}, removed.known)).hash).toBe(actual)
  })

  test("a wrong digest with a matching stat would be trusted, so only the downloader's own stat may vouch for it", async () => {
    // the contract the remote's pull relies on, shown from the other side: the digest is not re-read
    const d = downloaded(store, { "k.txt": "kappa\n" })
    const lied = d.known.map((k) => ({ ...k, hash: "0".repeat(64) }))
    const committed = await store.commitVerified(d.staging, "files", {}, lied)
    expect(committed.hash).not.toBe(d.hash)
    // and a deep check of that artifact finds the lie
    expect(store.check(committed.hash, true).ok).toBe(false)
  })
})

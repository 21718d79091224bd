/**
 * Hashing off the event loop (cache/hash.ts's worker pool, used by the store's commit): the same hashes
 * as the single-threaded code, read-only files and a manifest the next check accepts as is, and an event
 * loop that keeps turning while a large artifact is committed (the live view's timer keeps firing; the
 * synchronous commit it replaced let no timer fire until it returned).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { hashTree, hashTreeOffThread } from "../../cache/hash.ts"
import { Store } from "../../cache/store.ts"

const dirs: Array<string> = []
afterEach(() => {
  for (const d of dirs.splice(0)) {
    fs.chmodSync(d, 0o755)
    fs.rmSync(d, { recursive: true, force: true })
  }
})
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-hash-"))
  dirs.push(d)
  return d
}

/** A tree past the inline thresholds: an empty file, one file over the 4 MiB read chunk, many small ones in subdirectories. */
const makeTree = (dir: string, small: number, bigBytes: number) => {
  fs.mkdirSync(path.join(dir, "a", "b"), { recursive: true })
  fs.writeFileSync(path.join(dir, "empty"), "")
  const big = Buffer.alloc(bigBytes)
  for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) % 251
  fs.writeFileSync(path.join(dir, "a", "big.bin"), big)
  for (let i = 0; i < small; i++) fs.writeFileSync(path.join(dir, i % 2 === 0 ? "a" : "a/b", `f${i}.txt`), `row ${i}\n`.repeat(i % 7))
}

describe("hashing on worker threads", () => {
  it("gives the same tree hash and file hashes as the single-threaded hashing", async () => {
    const dir = tmp()
    makeTree(dir, 700, 9 * 1024 * 1024 + 17)
    const single = hashTree(dir)
    const threaded = await hashTreeOffThread(dir)
    expect(threaded.hash).toBe(single.hash)
    expect(threaded.entries).toEqual(single.entries)
    expect(threaded.bytes).toBe(single.bytes)
    // a single file (a source) and a small tree (hashed inline) agree too
    const file = path.join(dir, "a", "big.bin")
    expect((await hashTreeOffThread(file)).hash).toBe(hashTree(file).hash)
    const smallDir = tmp()
    makeTree(smallDir, 3, 10)
    expect((await hashTreeOffThread(smallDir)).hash).toBe(hashTree(smallDir).hash)
  })

  it("commits the artifact single-threaded hashing names, read-only, with a manifest that checks clean", async () => {
    const root = tmp()
    const store = Store.open(path.join(root, "store"))
    try {
      const a = store.newStaging("a".repeat(64))
      makeTree(a, 300, 5 * 1024 * 1024)
      const b = path.join(root, "copy")
      fs.cpSync(a, b, { recursive: true })
      const viaThreads = await store.commit(a, "dataset", {})
      expect(viaThreads.created).toBe(true)
      expect(viaThreads.files).toBe(302)
      expect(viaThreads.hash).toBe(hashTree(b).hash)
      expect(fs.statSync(path.join(viaThreads.path, "a", "big.bin")).mode & 0o222).toBe(0)
      const c = store.check(viaThreads.hash, false)
      // no file rehashed: the workers' stats are the committed files' stats (the directories may be
      // listed once: their signatures were taken in the same clock tick as the commit)
      expect(c.ok).toBe(true)
      expect("refreshed" in c).toBe(false)
      expect(store.check(viaThreads.hash, true).ok).toBe(true)
      // the same content committed again is recognised as already stored
      const again = await store.commit(b, "dataset", {})
      expect(again).toMatchObject({ hash: viaThreads.hash, created: false })
    } finally {
      store.close()
    }
  })

  it("hashes sources on the workers to the same hashes as hashSource, and fills the stat cache", async () => {
    const root = tmp()
    const src = path.join(root, "src")
    makeTree(src, 400, 5 * 1024 * 1024 + 3)
    for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(root, `shard-${i}.jsonl`), `{"i":${i}}\n`.repeat(1000 * (i + 1)))
    const threaded = Store.open(path.join(root, "store-a"))
    const single = Store.open(path.join(root, "store-b"))
    try {
      for (const p of [src, path.join(src, "a", "big.bin"), path.join(root, "shard-*.jsonl")]) {
        expect(await threaded.hashSourceOffThread(p)).toEqual(single.hashSource(p))
      }
      const big = path.join(src, "a", "big.bin")
      const st = fs.statSync(big)
      expect(threaded.db.fileStat(big, st.size, String(st.mtimeMs), String(st.ino))).toBe(hashTree(big).entries[0]!.hash)
      await expect(threaded.hashSourceOffThread(path.join(root, "missing.jsonl"))).rejects.toThrow(/source not found/)
    } finally {
      threaded.close()
      single.close()
    }
  })

  it("keeps the event loop turning while a large artifact is committed", async () => {
    const root = tmp()
    const store = Store.open(path.join(root, "store"))
    let timer: ReturnType<typeof setInterval> | undefined
    try {
      const staging = store.newStaging("b".repeat(64))
      makeTree(staging, 2000, 96 * 1024 * 1024)
      let ticks = 0
      timer = setInterval(() => ticks++, 1)
      let committed = false
      const commit = store.commit(staging, "model", {}).then((c) => {
        committed = true
        return c
      })
      // the live view's refresh is a timer like this one: it fires while the commit is under way
      while (!committed && ticks < 3) await new Promise((ok) => setTimeout(ok, 1))
      const ticksBeforeDone = ticks
      const c = await commit
      expect(ticksBeforeDone).toBeGreaterThanOrEqual(3)
      expect(committed).toBe(true)
      expect(c.hash).toBe(hashTree(c.path).hash)
    } finally {
      clearInterval(timer)
      store.close()
    }
  })
})

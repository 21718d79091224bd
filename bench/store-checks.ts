/**
 * What the store's checks cost (README, "What anneal guarantees"): committing, the stat-only manifest
 * check behind every cached result (`has()`), and the rehash behind `run --verify` and `cache verify`,
 * on a 512 MiB artifact of 4 files and on one of 5,000 small files. Prints one line per figure.
 *
 *   npx tsx bench/store-checks.ts
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Store } from "../cache/store.ts"
import { verifyStore } from "../cache/verify.ts"

const root = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-bench-store-"))
const store = Store.open(root)
const time = async (label: string, f: () => unknown, n = 1): Promise<number> => {
  const t0 = performance.now()
  for (let i = 0; i < n; i++) await f()
  const ms = (performance.now() - t0) / n
  console.log(`${label}: ${ms.toFixed(3)} ms`)
  return ms
}
try {
  const big = store.newStaging("b".repeat(64))
  const chunk = Buffer.alloc(128 * 2 ** 20, 7)
  for (let i = 0; i < 4; i++) {
    chunk[0] = i
    fs.writeFileSync(path.join(big, `shard-${i}.bin`), chunk)
  }
  let bigHash = ""
  await time("commit 512 MiB (4 files)", async () => (bigHash = (await store.commit(big, "model", {})).hash))
  const many = store.newStaging("m".repeat(64))
  for (let i = 0; i < 5000; i++) {
    const d = path.join(many, `d${i % 50}`)
    fs.mkdirSync(d, { recursive: true })
    fs.writeFileSync(path.join(d, `f${i}.txt`), `row ${i}\n`.repeat(20))
  }
  let manyHash = ""
  await time("commit 5000 files", async () => (manyHash = (await store.commit(many, "dataset", {})).hash))
  await time("has() 512 MiB / 4 files (stat check)", () => store.has(bigHash), 200)
  await time("has() 5000 files (stat check)", () => store.has(manyHash), 20)
  const deep = await time("rehash 512 MiB (run --verify)", () => store.check(bigHash, true), 2)
  console.log(`rehash throughput: ${(0.5 / (deep / 1000)).toFixed(2)} GiB/s`)
  await time("rehash 5000 files (run --verify)", () => store.check(manyHash, true), 3)
  await time("cache verify (both artifacts)", () => verifyStore(store), 2)
  console.log(`load average while measuring: ${os.loadavg().map((l) => l.toFixed(1)).join(" ")} on ${os.availableParallelism()} cores`)
} finally {
  store.close()
  fs.rmSync(root, { recursive: true, force: true })
}

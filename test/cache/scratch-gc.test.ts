/**
 * The collection of a node's scratch store (cache/remote/scratch-gc.ts), as node-job.ts runs it when a
 * job ends. Two jobs' worth of inputs and outputs are in the store: one job finished, the other still
 * runs, in a process of its own that leases its inputs and holds its key's lock, as a node job does.
 * The collection keeps what the live job uses (even an input unused for longer than the age limit, and
 * beyond the cap), then the most recently used rest within the cap, an older one that still fits, and
 * removes the others, the stale checkpoints and what dead jobs left (staging, job directories, a lease).
 * Once the live job is killed its input is collected like any other.
 */
import { spawn, spawnSync } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { afterEach, describe, expect, it } from "vitest"
import { collectScratch, describeScratch, scratchPolicy, DEFAULT_SCRATCH_MAX_AGE_DAYS } from "../../cache/remote/scratch-gc.ts"
import { Store } from "../../cache/store.ts"
import { projectRoot } from "../../engine/python.ts"
import { withCacheDb } from "./cache-db.ts"

const KiB = 1024
const DAY = 86400
const host = os.hostname()

const children: Array<ChildProcess> = []
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL")
})

/** Commits an artifact of `bytes` bytes (distinct content per name) and returns its hash. */
const artifact = async (store: Store, name: string, bytes: number): Promise<string> => {
  const staging = store.newStaging("f".repeat(64))
  fs.writeFileSync(path.join(staging, `${name}.bin`), Buffer.alloc(bytes, name.charCodeAt(0) + name.length))
  return (await store.commit(staging, "dataset", { step: name })).hash
}

/** Sets when an artifact was last used, as if a job had used it `ago` seconds before now. */
const usedAgo = (root: string, hash: string, ago: number) =>
  withCacheDb(root, (db) => db.prepare("UPDATE artifacts SET used_at = ? WHERE hash = ?").run(Date.now() / 1000 - ago, hash))

const checkpoint = (store: Store, key: string, daysOld: number) => {
  const dir = store.resumeDir(key)
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, "step-10.pt"), "x".repeat(100))
  const t = Date.now() / 1000 - daysOld * DAY
  fs.utimesSync(path.join(dir, "step-10.pt"), t, t)
  fs.utimesSync(dir, t, t)
}

/** A pid that was this host's and is no longer running. */
const deadPid = (): number => spawnSync(process.execPath, ["-e", ""]).pid!

/**
 * A running node job in its own process: opens the scratch store as a live run, leases its inputs by
 * checking them (Store.has, as stageInputs does), holds its key's lock; resolves once it has.
 */
const liveJob = async (root: string, key: string, inputs: ReadonlyArray<string>): Promise<ChildProcess> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-live-job-"))
  const script = path.join(dir, "job.mts")
  fs.writeFileSync(script, [
    `import { Store } from ${JSON.stringify(pathToFileURL(path.join(projectRoot, "cache", "store.ts")).href)}`,
    `const store = Store.open(${JSON.stringify(root)})`,
    `store.beginRun()`,
    `store.db.tryLock(${JSON.stringify(key)}, "use", "node-job")`,
    `for (const h of ${JSON.stringify(inputs)}) if (!store.has(h)) throw new Error("input missing: " + h)`,
    `process.stdout.write("ready\\n")`,
    `setInterval(() => {}, 1000)`
  ].join("\n"))
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx/esm")).href
  const child = spawn(process.execPath, ["--import", tsx, script], { stdio: ["ignore", "pipe", "pipe"] })
  children.push(child)
  let out = ""
  let err = ""
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()))
  await new Promise<void>((ok, fail) => {
    child.stdout!.on("data", (b: Buffer) => {
      out += b.toString()
      if (out.includes("ready")) ok()
    })
    child.on("exit", (code) => fail(new Error(`the live job exited (${code}) before it was ready: ${err}`)))
  })
  return child
}

describe("the node's scratch store collection", () => {
  it("keeps what a live job uses and the recently used within the cap; removes the rest and dead jobs' leftovers", async () => {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-scratch-gc-"))
    const root = path.join(scratch, "store")
    const jobsDir = path.join(scratch, "jobs")
    const store = Store.open(root)
    try {
      // the finished job: two inputs and its output; the running job: its input, and one it shares with
      // the finished job; and older leftovers: a small one, one past the age limit, one a dead job leased
      const done1 = await artifact(store, "done-input-1", 40 * KiB)
      const done2 = await artifact(store, "done-input-2", 40 * KiB)
      const doneOut = await artifact(store, "done-output", 40 * KiB)
      const liveIn = await artifact(store, "live-input", 60 * KiB)
      const shared = await artifact(store, "shared-input", 20 * KiB)
      const small = await artifact(store, "small-old", 1 * KiB)
      const stale = await artifact(store, "stale", 1 * KiB)
      const deadLeased = await artifact(store, "dead-leased", 30 * KiB)
      store.close()
      // the order of last use: the finished job's output most recently, then its inputs
      usedAgo(root, doneOut, 60)
      usedAgo(root, done2, 120)
      usedAgo(root, done1, 180)
      usedAgo(root, shared, 240)
      usedAgo(root, deadLeased, 300)
      usedAgo(root, small, 3600)
      usedAgo(root, stale, (DEFAULT_SCRATCH_MAX_AGE_DAYS + 1) * DAY)
      // the live job's own input was last used long ago: in use, it stays whatever its age
      usedAgo(root, liveIn, 30 * DAY)
      const gone = deadPid()
      withCacheDb(root, (db) => db.prepare("INSERT INTO leases (hash, owner, pid, host, acquired_at) VALUES (?, 'dead-job', ?, ?, ?)").run(deadLeased, gone, host, Date.now() / 1000))

      const liveKey = "1".repeat(64)
      const job = await liveJob(root, liveKey, [liveIn, shared])
      // leftovers: checkpoints (the live job's key, a stale one, a recent one), job directories and staging
      const gc = Store.open(root)
      checkpoint(gc, liveKey, 30)
      checkpoint(gc, "2".repeat(64), DEFAULT_SCRATCH_MAX_AGE_DAYS + 1)
      checkpoint(gc, "3".repeat(64), 1)
      const jobDir = (pid: number, h = host) => path.join(jobsDir, `abcdef0123456789-attempt-1-${pid}@${h}`)
      for (const d of [jobDir(job.pid!), jobDir(gone), jobDir(gone, "another-node")]) fs.mkdirSync(d, { recursive: true })
      const staging = (pid: number) => path.join(root, "staging", `remote-${"a".repeat(9)}-${pid}-1@${host}`)
      for (const d of [staging(job.pid!), staging(gone)]) fs.mkdirSync(d, { recursive: true })

      // the cap: the live job's 80 KiB, then 40 + 40 KiB most recently used, then no room for 40 more
      const policy = { maxBytes: 165 * KiB, maxAgeDays: DEFAULT_SCRATCH_MAX_AGE_DAYS }
      const r = collectScratch(gc, policy, { jobsDir })
      const present = (h: string) => gc.has(h)
      expect({ liveIn: present(liveIn), shared: present(shared), doneOut: present(doneOut), done2: present(done2), small: present(small) })
        .toEqual({ liveIn: true, shared: true, doneOut: true, done2: true, small: true })
      expect({ done1: present(done1), deadLeased: present(deadLeased), stale: present(stale) })
        .toEqual({ done1: false, deadLeased: false, stale: false })
      expect(fs.existsSync(gc.artifactPath(done1))).toBe(false)
      expect(Object.fromEntries(r.removed.map((x) => [x.hash, x.why]))).toEqual({ [done1]: "over the cap", [deadLeased]: "over the cap", [stale]: "unused too long" })
      expect({ inUse: r.inUse, inUseBytes: r.inUseBytes, kept: r.kept }).toEqual({ inUse: 2, inUseBytes: 80 * KiB, kept: 3 })
      expect(r.inUseBytes + r.keptBytes).toBeLessThanOrEqual(policy.maxBytes)
      expect(fs.readdirSync(gc.resumeRoot).sort()).toEqual([liveKey, "3".repeat(64)])
      expect(fs.readdirSync(jobsDir).sort()).toEqual([jobDir(job.pid!), jobDir(gone, "another-node")].map((d) => path.basename(d)).sort())
      expect(fs.readdirSync(path.join(root, "staging"))).toEqual([path.basename(staging(job.pid!))])
      expect(describeScratch(r, policy)).toMatch(/^scratch store: removed 3 artifacts and 1 checkpoint .*kept 3 .*2 in use by live jobs/)

      // the live job dies (kill -9: no cleanup of its own): its input, unused for 30 days, goes next time
      job.kill("SIGKILL")
      await new Promise((ok) => job.once("exit", ok))
      const after = collectScratch(gc, policy, { jobsDir })
      expect(after.removed.map((x) => x.hash)).toEqual([liveIn])
      expect(present(shared)).toBe(true)
      expect(fs.readdirSync(gc.resumeRoot)).toEqual(["3".repeat(64)])
      expect(fs.readdirSync(jobsDir)).toEqual([path.basename(jobDir(gone, "another-node"))])
      gc.close()
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true })
    }
  }, 60_000)

  it("the default cap is the smaller of 50 GiB and half the scratch filesystem; settings override it", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-scratch-policy-"))
    try {
      const st = fs.statfsSync(dir)
      expect(scratchPolicy(dir, {})).toEqual({ maxBytes: Math.min(50 * 1024 ** 3, (st.blocks * st.bsize) / 2), maxAgeDays: 7 })
      expect(scratchPolicy(dir, { maxGb: 2, maxAgeDays: 0.5 })).toEqual({ maxBytes: 2 * 1024 ** 3, maxAgeDays: 0.5 })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

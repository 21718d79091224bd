/**
 * Locks and crash recovery know the host. A pid recorded by another host means nothing here: such a
 * holder is alive while its heartbeat is fresh and dead once it is older than the expiry, whatever this
 * host's process table says. (The other host is simulated by writing its rows into the database.)
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterEach, describe, expect, it } from "vitest"
import { cli, spawnCli } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"
import { withCacheDb } from "./cache-db.ts"
import { storeProject } from "./store-recipe.ts"

const live: Array<ReturnType<typeof spawnCli>> = []
afterEach(() => {
  for (const c of live.splice(0)) c.kill("SIGKILL")
})

const OTHER = "some-other-host.example"
// a pid that is alive on this host: if anything judged the other host's pid locally, it would see it alive
const LOCAL_LIVE_PID = process.pid
const now = () => Date.now() / 1000

const withDb = <A>(p: TempProject, f: Parameters<typeof withCacheDb<A>>[1]): A => withCacheDb(p.store, f)

const built = async () => {
  const p = storeProject()
  const r = await cli(["run", p.file("recipe.ts"), "--json"])
  expect(r.exitCode, r.stderr).toBe(0)
  return p
}

const heartbeat = (p: TempProject, pid: number, at: number) =>
  withDb(p, (db) => db.prepare("INSERT OR REPLACE INTO processes (pid, host, started_at, heartbeat_at) VALUES (?, ?, ?, ?)").run(pid, OTHER, at, at))

describe("other hosts", () => {
  it("a build lock held on another host is waited for while its heartbeat is fresh, and broken once it expires", async () => {
    const p = await built()
    const plan = await cli(["plan", p.file("recipe.ts"), "--json", "--force", "join"])
    const key = plan.stdout.split("\n").map((l) => (l.startsWith("{") ? JSON.parse(l) : {})).find((l) => l.step === "join").key as string
    heartbeat(p, 4242, now())
    withDb(p, (db) => db.prepare("INSERT INTO locks (key, pid, host, step, recipe, acquired_at) VALUES (?, ?, ?, 'join', 'recipe.ts', ?)").run(key, 4242, OTHER, now()))
    const run = spawnCli(["run", p.file("recipe.ts"), "--json", "--force", "join"])
    live.push(run)
    let text = ""
    run.stdout!.on("data", (b: Buffer) => (text += b.toString()))
    let exited = false
    void run.finally(() => (exited = true))
    while (!text.includes('"event":"waiting"') && !exited) await new Promise((ok) => setTimeout(ok, 20))
    expect(text).toContain(`waiting for pid 4242`)
    heartbeat(p, 4242, now() - 100_000) // the other driver stopped beating long ago
    const r = await run
    expect(r.exitCode, String(r.stderr)).toBe(0)
    expect(String(r.stdout)).toContain('"step":"join","kind":"join-all","status":"ran"')
  }, 300_000)

  it("staging and running rows of another host are judged by heartbeat, never by a local pid", async () => {
    const p = await built()
    const foreign = path.join(p.store, "staging", `abcd-${LOCAL_LIVE_PID}-1@${OTHER}`)
    const stale = path.join(p.store, "staging", `abcd-${LOCAL_LIVE_PID + 2}-1@${OTHER}`)
    const deadHere = path.join(p.store, "staging", `abcd-999999-1@${os.hostname()}`)
    for (const d of [foreign, stale, deadHere]) fs.mkdirSync(d, { recursive: true })
    heartbeat(p, LOCAL_LIVE_PID, now())
    withDb(p, (db) => {
      db.prepare("INSERT INTO processes (pid, host, started_at, heartbeat_at) VALUES (?, ?, ?, ?)").run(LOCAL_LIVE_PID + 1, OTHER, 0, 0)
      const session = db.prepare("SELECT MAX(id) AS id FROM sessions").get() as unknown as { id: number }
      const ins = db.prepare(`INSERT INTO runs (session_id, recipe, step, kind, key, status, started_at, trace, pid, gpus, host)
        VALUES (?, 'recipe.ts', ?, 'split', 'k', 'running', ?, '{}', ?, '[]', ?)`)
      ins.run(session.id, "remote-live", now(), LOCAL_LIVE_PID, OTHER)
      ins.run(session.id, "remote-dead", 0, LOCAL_LIVE_PID + 1, OTHER)
    })
    // an old mtime for the staging of a holder that never beat: judged by its age
    fs.utimesSync(stale, 0, 0)
    const r = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(fs.existsSync(foreign)).toBe(true)
    expect(fs.existsSync(stale)).toBe(false)
    expect(fs.existsSync(deadHere)).toBe(false)
    const status = (step: string) => withDb(p, (db) => (db.prepare("SELECT status FROM runs WHERE step = ?").get(step) as unknown as { status: string }).status)
    expect(status("remote-live")).toBe("running")
    expect(status("remote-dead")).toBe("interrupted")
  }, 300_000)
})

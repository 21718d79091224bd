/**
 * Several processes opening one new cache database at the same moment (two `anneal run`s started
 * together on a fresh store, a cluster's jobs): each must find it migrated once, none may fail with
 * "table already exists" from migrating it a second time.
 */
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { afterEach, describe, expect, it } from "vitest"
import { projectRoot } from "../../engine/python.ts"

const children: Array<ChildProcess> = []
const dirs: Array<string> = []
afterEach(() => {
  for (const c of children.splice(0)) c.kill("SIGKILL")
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

describe("opening a new cache database", () => {
  it("from six processes at once: every one opens it, migrated once", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-db-open-"))
    dirs.push(dir)
    const file = path.join(dir, "cache.db")
    const go = path.join(dir, "go")
    const script = path.join(dir, "open.mts")
    fs.writeFileSync(script, [
      `import * as fs from "node:fs"`,
      `import { CacheDb } from ${JSON.stringify(pathToFileURL(path.join(projectRoot, "cache", "db.ts")).href)}`,
      `process.stdout.write("waiting\\n")`,
      // released together: each polls for the same file
      `while (!fs.existsSync(${JSON.stringify(go)})) await new Promise((ok) => setTimeout(ok, 2))`,
      `try { new CacheDb(${JSON.stringify(file)}).close(); process.stdout.write("opened\\n") }`,
      `catch (e) { process.stdout.write("failed: " + (e instanceof Error ? e.message : String(e)) + "\\n") }`
    ].join("\n"))
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx/esm")).href
    const outputs = Array.from({ length: 6 }, () => {
      const child = spawn(process.execPath, ["--import", tsx, script], { stdio: ["ignore", "pipe", "pipe"] })
      children.push(child)
      let out = ""
      child.stdout!.on("data", (b: Buffer) => (out += b.toString()))
      const waiting = new Promise<void>((ok, fail) => {
        child.stdout!.on("data", () => out.includes("waiting") && ok())
        child.on("exit", (code) => fail(new Error(`a child exited (${code}) before waiting: ${out}`)))
      })
      const exited = new Promise<string>((ok) => child.on("exit", () => ok(out)))
      return { waiting, exited }
    })
    await Promise.all(outputs.map((o) => o.waiting))
    fs.writeFileSync(go, "")
    const said = await Promise.all(outputs.map((o) => o.exited))
    expect(said.map((s) => s.trim().split("\n").at(-1))).toEqual(Array(6).fill("opened"))
  }, 120_000)
})

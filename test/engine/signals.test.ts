/**
 * Command-step processes never outlive anneal: a second Ctrl-C kills a child that ignores SIGTERM, and
 * kill -9 of anneal takes the step's whole process group with it. The recipe's command names its program
 * by a path relative to the recipe, and the CLI runs from another directory, so this also checks that
 * argv resolves against the recipe's directory.
 */
import * as fs from "node:fs"
import { afterEach, describe, expect, it } from "vitest"
import { annealIndex, spawnCli, tempProject } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"

/** The step's program: writes its pid and its grandchild's, ignores SIGTERM if asked, runs until killed. */
const childProgram = `
import * as fs from "node:fs"
import { spawn } from "node:child_process"
const [pidFile, mode] = process.argv.slice(2)
if (mode === "ignore-term") process.on("SIGTERM", () => fs.writeFileSync(pidFile + ".term", "got SIGTERM"))
const grandchild = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" })
fs.writeFileSync(pidFile + ".tmp", JSON.stringify({ child: process.pid, grandchild: grandchild.pid }))
fs.renameSync(pidFile + ".tmp", pidFile)
setInterval(() => {}, 1000)
`

const recipe = (mode: string) => `
import { defineStep, Port, recipe, source, Text, Schema } from ${JSON.stringify(annealIndex)}

const linger = defineStep({
  kind: "linger", version: 1, params: Schema.Struct({}),
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  sourceFiles: ["tools/child.mjs"],
  command: () => ({ argv: [process.execPath, "tools/child.mjs", "pids.json", ${JSON.stringify(mode)}] })
})

export default recipe("linger", () => {
  linger({ data: source.dataset("data.txt", Text) })
})
`

/** A process is alive when /proc lists it and it is not a zombie waiting to be reaped. */
const procStat = (pid: number): { state: string; pgrp: number } | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { state: state!, pgrp: Number(pgrp) }
  } catch {
    return undefined
  }
}
const alive = (pid: number) => {
  const s = procStat(pid)
  return s !== undefined && s.state !== "Z"
}
const groupMembers = (pgrp: number): Array<number> =>
  fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    const s = procStat(pid)
    return s !== undefined && s.pgrp === pgrp && s.state !== "Z"
  })

const waitUntil = async <A>(what: string, check: () => A | undefined, timeoutMs = 60_000): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = check()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((ok) => setTimeout(ok, 50))
  }
}

const cleanups: Array<() => void> = []
afterEach(() => {
  // whatever a failed test left running: anneal itself, and the members of the step's group
  for (const clean of cleanups.splice(0)) clean()
})
const killGroup = (group: number) => {
  for (const pid of groupMembers(group)) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone
    }
  }
}

const startRun = async (p: TempProject, mode: string) => {
  p.write("data.txt", "alpha\n")
  p.write("tools/child.mjs", childProgram)
  p.write("recipe.ts", recipe(mode))
  // from the repository root, not the recipe's directory: the relative argv must still find tools/child.mjs
  const run = spawnCli(["run", p.file("recipe.ts"), "--json"])
  cleanups.push(() => run.kill("SIGKILL"))
  const pids = await waitUntil("the step's pids", () => {
    try {
      return JSON.parse(p.read("pids.json")) as { child: number; grandchild: number }
    } catch {
      return undefined
    }
  })
  const group = procStat(pids.child)!.pgrp
  cleanups.push(() => killGroup(group))
  expect(group).not.toBe(procStat(process.pid)!.pgrp)
  expect(procStat(pids.grandchild)!.pgrp).toBe(group)
  return { run, pids, group }
}

describe("command-step processes never outlive anneal", () => {
  it("a second Ctrl-C kills a child that ignores SIGTERM, and its process group", async () => {
    const p = tempProject()
    const { run, pids, group } = await startRun(p, "ignore-term")
    run.kill("SIGINT")
    await waitUntil("the child to be sent SIGTERM", () => (fs.existsSync(p.file("pids.json.term")) ? true : undefined))
    expect(alive(pids.child)).toBe(true) // it ignored SIGTERM
    run.kill("SIGINT")
    const r = await run
    expect(r.exitCode).toBe(130)
    await waitUntil("the step's process group to be gone", () => (groupMembers(group).length === 0 ? true : undefined))
    expect(alive(pids.child) || alive(pids.grandchild)).toBe(false)
  })

  it("kill -9 of anneal mid-step: the step's process group dies with it", async () => {
    const p = tempProject()
    const { run, pids, group } = await startRun(p, "plain")
    run.kill("SIGKILL")
    await run
    await waitUntil("the step's process group to be gone", () => (groupMembers(group).length === 0 ? true : undefined))
    expect(alive(pids.child) || alive(pids.grandchild)).toBe(false)
  })
})

/**
 * The live view in a real terminal: `anneal run` under tmux (a pseudo-terminal of fixed size), driven
 * with send-keys and read with capture-pane. The progress bar must advance, `q` must interrupt, the
 * process must exit 1, and the store must be consistent afterwards.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, expect, it } from "vitest"
import { execa } from "execa"
import { annealBin, makeRecipeDir } from "./recipe-dir.ts"
import { slowRecipe } from "./slow-recipe.ts"

const d = makeRecipeDir("tmux")
const socket = `anneal-test-${process.pid}`
const tmux = (...args: Array<string>) => execa("tmux", ["-L", socket, ...args], { reject: false })
const screen = async () => String((await tmux("capture-pane", "-p", "-t", "run")).stdout)
// tmux's #{pane_dead_status} is sometimes empty for a process that did exit, so a tiny wrapper runs
// anneal on the terminal and records its exit code in a file
const wrapper = `
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
const [exitFile, ...args] = process.argv.slice(2)
const r = spawnSync(process.execPath, args, { stdio: "inherit" })
fs.writeFileSync(exitFile, String(r.status ?? "signal " + r.signal))
`
const exitCode = async () => (fs.existsSync(d.file("exit-code")) ? d.read("exit-code") : undefined)
const until = async <A>(what: string, f: () => Promise<A | undefined>, timeoutMs = 60_000): Promise<A> => {
  const start = Date.now()
  for (;;) {
    const v = await f()
    if (v !== undefined) return v
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}; screen:\n${await screen()}`)
    await new Promise((r) => setTimeout(r, 150))
  }
}
const percentOf = (s: string) => {
  const m = /█*[▏▎▍▌▋▊▉]?░+\s+(\d+)%/.exec(s)
  return m === null ? undefined : Number(m[1])
}

afterAll(async () => {
  await tmux("kill-server")
  d.remove()
})

it("shows the progress bar advancing, q interrupts, exit code 1, the store stays consistent", async () => {
  d.write("recipe.ts", slowRecipe({ steps: 400, ms: 50 }))
  // keep the pane after the process exits, so its exit status can be read
  d.write("tmux.conf", "set -g remain-on-exit on\n")
  d.write("record-exit.mjs", wrapper)
  await tmux("-f", d.file("tmux.conf"), "new-session", "-d", "-s", "run", "-x", "100", "-y", "30",
    "-e", "CI=", "-e", "NO_COLOR=1", "-c", d.dir,
    "--", process.execPath, d.file("record-exit.mjs"), d.file("exit-code"),
    annealBin, "run", d.file("recipe.ts"), "--store", d.store)

  const first = await until("the progress bar", async () => percentOf(await screen()))
  const running = await screen()
  expect(running).toContain("▶ train  toy-train  cpu")
  expect(running).toMatch(/ETA \d/)
  expect(running).toContain("2048 tok/s")
  expect(running).toMatch(/loss \d/)
  expect(running).toMatch(/◷ eval {2}toy-eval {2}waiting for train/)
  expect(running).toContain("q quit")
  const later = await until("the bar to advance", async () => {
    const p = percentOf(await screen())
    return p !== undefined && p > first ? p : undefined
  })
  expect(later).toBeGreaterThan(first)

  await tmux("send-keys", "-t", "run", "q")
  const status = await until("the process to exit", exitCode, 30_000)
  expect(status).toBe("1")
  const final = await screen()
  expect(final).toMatch(/⊘ train {2}toy-train {2}interrupted/)
  expect(final).toMatch(/– eval {2}toy-eval {2}skipped/)
  expect(final).toMatch(/ran 0 · cached 0 · failed 0 · interrupted 1 · skipped 1/)

  // nothing half-written reached the store, and the interrupted step is still to run
  const verify = await execa(process.execPath, [annealBin, "cache", "verify", "--store", d.store], { reject: false })
  expect(verify.exitCode).toBe(0)
  const plan = await execa(process.execPath, [annealBin, "plan", d.file("recipe.ts"), "--json", "--store", d.store], { reject: false })
  const train = String(plan.stdout).split("\n").map((l) => JSON.parse(l) as { event: string; step?: string; status?: string }).find((e) => e.step === "train")
  expect(train?.status).toBe("stale")
  expect(fs.readdirSync(path.join(d.store, "artifacts")).filter((f) => !f.endsWith(".json"))).toEqual([])
})

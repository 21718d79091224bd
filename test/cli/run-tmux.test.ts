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
import { openTerminal } from "./tmux.ts"
import type { Terminal } from "./tmux.ts"

const d = makeRecipeDir("tmux")
let term: Terminal | undefined
afterAll(async () => {
  await term?.close()
  d.remove()
})

const percentOf = (s: string) => {
  const m = /█*[▏▎▍▌▋▊▉]?░+\s+(\d+)%/.exec(s)
  return m === null ? undefined : Number(m[1])
}

it("shows the progress bar advancing, q interrupts, exit code 1, the store stays consistent", async () => {
  d.write("recipe.ts", slowRecipe({ steps: 400, ms: 50 }))
  const t = await openTerminal(d.dir, [annealBin, "run", d.file("recipe.ts"), "--store", d.store])
  term = t

  const first = await t.until("the progress bar", async () => percentOf(await t.screen()))
  const running = await t.screen()
  expect(running).toContain("▶ train  toy-train  cpu")
  expect(running).toMatch(/ETA \d/)
  expect(running).toContain("2048 tok/s")
  expect(running).toMatch(/loss \d/)
  expect(running).toMatch(/◷ eval {2}toy-eval {2}waiting for train/)
  expect(running).toContain("q quit")
  const later = await t.until("the bar to advance", async () => {
    const p = percentOf(await t.screen())
    return p !== undefined && p > first ? p : undefined
  })
  expect(later).toBeGreaterThan(first)

  await t.keys("q")
  expect(await t.until("the process to exit", t.exitCode, 30_000)).toBe("1")
  const final = await t.screen()
  expect(final).toMatch(/⊘ train {2}toy-train {2}interrupted/)
  expect(final).toMatch(/– eval +toy-eval +skipped/) // a static line or the summary table's row
  expect(final).toMatch(/ran 0 · cached 0 · failed 0 · interrupted 1 · skipped 1/)

  // nothing half-written reached the store, and the interrupted step is still to run
  const verify = await execa(process.execPath, [annealBin, "cache", "verify", "--store", d.store], { reject: false })
  expect(verify.exitCode).toBe(0)
  const plan = await execa(process.execPath, [annealBin, "plan", d.file("recipe.ts"), "--json", "--store", d.store], { reject: false })
  const train = String(plan.stdout).split("\n").map((l) => JSON.parse(l) as { event: string; step?: string; status?: string }).find((e) => e.step === "train")
  expect(train?.status).toBe("stale")
  expect(fs.readdirSync(path.join(d.store, "artifacts")).filter((f) => !f.endsWith(".json"))).toEqual([])
})

/** `anneal run` with stdout piped (CI, log files): plain lines and a summary, no escape codes. */
import { afterAll, expect, it } from "vitest"
import { execa } from "execa"
import { annealBin, makeRecipeDir } from "./recipe-dir.ts"
import { slowRecipe } from "./slow-recipe.ts"

const d = makeRecipeDir("plain")
afterAll(() => d.remove())

it("prints one line per state change, throttled progress and a final summary, without escape codes", async () => {
  d.write("recipe.ts", slowRecipe({ steps: 20, ms: 20 }))
  const r = await execa(process.execPath, [annealBin, "run", d.file("recipe.ts"), "--store", d.store], {
    reject: false,
    stdin: "ignore",
    // as in a CI job: no terminal, colour forced on, which the plain reporter must still not use
    env: { FORCE_COLOR: "1", CI: "true" }
  })
  expect(r.exitCode).toBe(0)
  const out = String(r.stdout)
  expect(out).not.toMatch(/\x1b/)
  const lines = out.split("\n")
  const body = (l: string) => l.replace(/^\d\d:\d\d /, "")
  expect(lines.map(body)).toEqual(expect.arrayContaining([
    "queued      train  never run",
    "waiting     eval  for train",
    expect.stringMatching(/^started     train  toy-train  cpu  log \/.*train\.log$/),
    expect.stringMatching(/^progress    train  50%  10\/20 steps .*2048 tok\/s  loss 1\.265$/),
    expect.stringMatching(/^done        train  \d\.\ds  loss 0\.8944$/),
    expect.stringMatching(/^done        eval  \d\.\ds  accuracy 0\.75$/)
  ]))
  // ten progress lines at most for twenty reports: every 10%
  expect(lines.filter((l) => l.includes("progress    train")).length).toBeLessThanOrEqual(10)
  expect(out).toMatch(/step +kind +status +time +metrics\n✔ train +toy-train +ran +\d\.\ds +loss 0\.8944\n✔ eval +toy-eval +ran +\d\.\ds +accuracy 0\.75\n/)
  expect(out).toMatch(/ran 2 · cached 0 · failed 0 │ cache saved 0\.0s │ store \d+ B │ took /)
  // the run trained: its report is written next to its logs
  expect(out).toMatch(/report: \/.*\/logs\/1\/summary\.md/)
})

/**
 * `anneal watch` in a real terminal: each cycle draws the live view, a save reruns what changed, and
 * Ctrl-C (a key in the live view's raw mode, a signal between cycles) exits cleanly with code 0.
 */
import { afterAll, expect, it } from "vitest"
import { annealBin, makeRecipeDir } from "../recipe-dir.ts"
import { slowRecipe } from "../slow-recipe.ts"
import { openTerminal } from "../tmux.ts"
import type { Terminal } from "../tmux.ts"

const d = makeRecipeDir("watch-tmux")
let term: Terminal | undefined
afterAll(async () => {
  await term?.close()
  d.remove()
})

it("draws each cycle live, reruns on save, and exits 0 on Ctrl-C", async () => {
  d.write("recipe.ts", slowRecipe({ steps: 10, ms: 20 }))
  const t = await openTerminal(d.dir, [annealBin, "watch", d.file("recipe.ts"), "--store", d.store])
  term = t
  const seen = (re: RegExp) => async () => (re.test(await t.screen()) ? true : undefined)
  await t.until("the first cycle", seen(/watching recipe\.ts, 0 local modules and 0 sources/))
  expect(await t.screen()).toMatch(/✔ train {2}toy-train {2}done/)

  d.write("recipe.ts", slowRecipe({ steps: 300, ms: 50 }))
  await t.until("the second cycle to draw its progress bar", seen(/changed: recipe\.ts[\s\S]*▶ train[\s\S]*░+\s+\d+%/))
  await t.keys("C-c")
  expect(await t.until("watch to exit", t.exitCode, 30_000)).toBe("0")
  expect(await t.screen()).toMatch(/⊘ train {2}toy-train {2}interrupted/)
})

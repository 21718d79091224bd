/**
 * kill -9 at random moments while `cache gc` deletes large artifacts (thousands of files each) and while
 * a run commits a many-file output. Afterwards `run` never restores a partial artifact: every output it
 * reports hashes to its name and equals a clean build, and the store verifies once the run is done.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, beforeAll, describe, expect, it } from "vitest"
import { cli, spawnCli } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"
import { cleanOutputs, storeProject, storeRecipe, wrongOutputs } from "./store-recipe.ts"

const PARTS = 2000
const live: Array<ReturnType<typeof spawnCli>> = []
afterEach(() => {
  for (const c of live.splice(0)) c.kill("SIGKILL")
})

/** Resolves once `ready()` holds (checked every few milliseconds) or the child has exited. */
const until = async (child: ReturnType<typeof spawnCli>, ready: () => boolean) => {
  let exited = false
  void child.finally(() => (exited = true))
  while (!exited && !ready()) await new Promise((ok) => setTimeout(ok, 5))
}

const randomPause = (maxMs: number) => new Promise((ok) => setTimeout(ok, Math.floor(Math.random() * maxMs)))

const nonEmpty = (dir: string) => fs.existsSync(dir) && fs.readdirSync(dir).length > 0

const runClean = async (p: TempProject, clean: Record<string, string>) => {
  const r = await cli(["run", p.file("recipe.ts"), "--json"])
  expect(r.exitCode, r.stderr).toBe(0)
  expect(wrongOutputs(p.store, r.events, clean)).toEqual([])
}

describe("kill -9 during cache gc", () => {
  let p: TempProject
  const clean = new Map<number, Record<string, string>>()

  beforeAll(async () => {
    p = storeProject({ parts: PARTS, salt: 1 })
    for (const salt of [1, 2, 3]) {
      p.write("recipe.ts", storeRecipe({ parts: PARTS, salt }))
      clean.set(salt, await cleanOutputs(p))
    }
  }, 600_000)

  for (const [i, moment] of ["while trash/ fills", "at a random moment", "at a random moment"].entries()) {
    it(`killed ${moment}: plan and run never use a partial artifact`, async () => {
      // three variants built, so two of them are garbage whichever is current
      const keep = 1 + (i % 3)
      for (const salt of [1, 2, 3].filter((s) => s !== keep).concat(keep)) {
        p.write("recipe.ts", storeRecipe({ parts: PARTS, salt }))
        expect((await cli(["run", p.file("recipe.ts"), "--json"])).exitCode).toBe(0)
      }
      const gc = spawnCli(["cache", "gc", "--store", p.store])
      live.push(gc)
      // mid-deletion: something in trash/, or (a deletion that is not crash-safe) a garbage copy losing files
      const garbage = [1, 2, 3].filter((s) => s !== keep).map((s) => path.join(p.store, "artifacts", clean.get(s)!.split!, "d0"))
      const deleting = () => nonEmpty(path.join(p.store, "trash")) || garbage.some((d) => !fs.existsSync(d) || fs.readdirSync(d).length < PARTS / 10)
      if (i === 0) await until(gc, deleting)
      else await randomPause(2500)
      gc.kill("SIGKILL")
      await gc

      // whatever gc got to, each variant either restores intact or rebuilds
      for (const salt of [1, 2, 3]) {
        p.write("recipe.ts", storeRecipe({ parts: PARTS, salt }))
        const plan = await cli(["plan", p.file("recipe.ts"), "--json"])
        expect(plan.exitCode, plan.stderr).toBe(0)
        await runClean(p, clean.get(salt)!)
      }
      const verify = await cli(["cache", "verify", "--repair", "--store", p.store])
      expect(verify.exitCode, verify.stdout).toBe(0)
      expect((await cli(["cache", "verify", "--store", p.store])).exitCode).toBe(0)
    }, 600_000)
  }
})

describe("kill -9 during the commit of a many-file output", () => {
  for (const attempt of [0, 1, 2]) {
    it(`attempt ${attempt}: the rerun gives the clean build and the store verifies`, async () => {
      const p = storeProject({ parts: 3000 })
      const clean = await cleanOutputs(p)
      const run = spawnCli(["run", p.file("recipe.ts"), "--json"])
      live.push(run)
      // the step has written its files once staging holds all ten sub-directories of parts; commit follows
      const staging = path.join(p.store, "staging")
      const full = () => nonEmpty(staging) && fs.readdirSync(staging).some((d) => fs.readdirSync(path.join(staging, d)).length >= 10)
      await until(run, () => full() || nonEmpty(path.join(p.store, "artifacts")))
      await randomPause(attempt * 400)
      run.kill("SIGKILL")
      await run
      await runClean(p, clean)
      expect(fs.readdirSync(staging)).toEqual([])
      const verify = await cli(["cache", "verify", "--store", p.store])
      expect(verify.exitCode, verify.stdout).toBe(0)
    }, 600_000)
  }
})

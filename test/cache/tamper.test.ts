/**
 * The tamper matrix: each way an artifact can be damaged, then each thing a user may do next (plan and
 * run; run --force; cache verify --repair then run). Whatever they do, no command exits 0 while a step
 * reports an output that differs from a clean build or whose content does not match its name.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { beforeAll, describe, expect, it } from "vitest"
import { cli, tempProject } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"
import { cleanOutputs, outputsOf, storeProject, tamper, tamperKinds, wrongOutputs } from "./store-recipe.ts"

let golden: TempProject
let clean: Record<string, string>

beforeAll(async () => {
  golden = storeProject()
  const first = await cli(["run", golden.file("recipe.ts"), "--json"])
  expect(first.exitCode, first.stderr).toBe(0)
  clean = await cleanOutputs(golden)
  expect(outputsOf(first.events)).toEqual(clean)
}, 120_000)

/** A copy of the built project (the store included), so each case starts from the same state. */
const copy = (): TempProject => {
  const p = tempProject("anneal-tamper-")
  fs.cpSync(golden.dir, p.dir, { recursive: true, filter: (src) => path.basename(src) !== "node_modules" })
  return p
}

const planOf = async (p: TempProject) => {
  const r = await cli(["plan", p.file("recipe.ts"), "--json"])
  expect(r.exitCode, r.stderr).toBe(0)
  const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as { event: string; step: string; status: string; reasons: Array<string> })
  return Object.fromEntries(lines.filter((l) => l.event === "plan").map((l) => [l.step, l]))
}

const expectCorrect = (p: TempProject, r: Awaited<ReturnType<typeof cli>>) => {
  expect(r.exitCode, r.stderr).toBe(0)
  expect(wrongOutputs(p.store, r.events, clean)).toEqual([])
}

describe("tamper matrix", () => {
  for (const kind of tamperKinds) {
    const contentDamaged = kind !== "sidecar damaged"

    it(`${kind}: plan says why, run rebuilds, the store verifies afterwards`, async () => {
      const p = copy()
      tamper(p.store, clean.split!, kind)
      const plan = await planOf(p)
      if (contentDamaged) {
        expect(plan.split!.status).toBe("stale")
        expect(plan.split!.reasons.join(" ")).toMatch(/output artifact damaged|output missing/)
      } else expect(plan.split!.status).toBe("cached")
      const run = await cli(["run", p.file("recipe.ts"), "--json"])
      expectCorrect(p, run)
      const verify = await cli(["cache", "verify", "--store", p.store])
      // a damaged sidecar is not used by a run; verify reports it until --repair rewrites it
      expect(verify.exitCode, verify.stdout).toBe(contentDamaged ? 0 : 1)
    }, 120_000)

    it(`${kind}: run --force replaces the damaged copy with a correct one`, async () => {
      const p = copy()
      tamper(p.store, clean.split!, kind)
      const run = await cli(["run", p.file("recipe.ts"), "--json", "--force", "split"])
      expectCorrect(p, run)
      if (contentDamaged) expect(fs.readdirSync(path.join(p.store, "quarantine")).length).toBe(1)
    }, 120_000)

    it(`${kind}: cache verify --repair, then run gives the clean build`, async () => {
      const p = copy()
      tamper(p.store, clean.split!, kind)
      const before = await cli(["cache", "verify", "--store", p.store])
      expect(before.exitCode).toBe(1)
      expect(before.stdout).toContain(clean.split!)
      const repair = await cli(["cache", "verify", "--repair", "--store", p.store])
      expect(repair.exitCode, repair.stdout).toBe(0)
      expect(repair.stdout).toContain("REPAIRED")
      expect((await cli(["cache", "verify", "--store", p.store])).exitCode).toBe(0)
      const run = await cli(["run", p.file("recipe.ts"), "--json"])
      expectCorrect(p, run)
    }, 120_000)
  }

  it("a flipped byte in the final output: run rebuilds it instead of calling it cached", async () => {
    const p = copy()
    tamper(p.store, clean.join!, "flipped byte")
    const plan = await planOf(p)
    expect(plan.join!.status).toBe("stale")
    expect(plan.join!.reasons.join(" ")).toContain("content changed")
    expectCorrect(p, await cli(["run", p.file("recipe.ts"), "--json"]))
  }, 120_000)
})

/**
 * The store's and the database's failures travel in Effect's error channel as tagged errors, up to the
 * run's own Effect (runRecipeEffect): a failure there is a typed Fail (not a defect), with the same
 * one-line message the CLI prints.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { describe, expect, it } from "vitest"
import { CacheError, SourceError } from "../../cache/errors.ts"
import { Store } from "../../cache/store.ts"
import type { EngineEvent } from "../../engine/events.ts"
import { runRecipeEffect } from "../../engine/run.ts"
import { chainData, chainRecipe } from "../helpers/chain-recipe.ts"
import { tempProject } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"

/** The typed error of a failed exit, or undefined when it failed by a defect or succeeded. */
const typedFailure = (exit: Exit.Exit<unknown, unknown>): unknown => {
  if (!Exit.isFailure(exit)) return undefined
  const fail = exit.cause.reasons.find(Cause.isFailReason)
  return fail?.error
}

describe("errors in Effect's error channel", () => {
  let p: TempProject

  const run = (events: Array<EngineEvent> = []) =>
    Effect.runPromiseExit(runRecipeEffect({ recipe: p.file("recipe.ts"), reporter: { emit: (e) => events.push(e) }, fresh: true, jobs: 1 }))

  it("a corrupt cache database is a CacheError in the channel, naming the file; a missing source a SourceError", async () => {
    p = tempProject()
    p.write("data.txt", chainData)
    p.write("recipe.ts", chainRecipe())
    const db = path.join(p.dir, ".anneal", "cache.db")
    fs.mkdirSync(path.dirname(db), { recursive: true })
    fs.writeFileSync(db, "this is not a database, just text long enough to look like a header of one".repeat(20))
    const corrupt = typedFailure(await run())
    expect(corrupt).toBeInstanceOf(CacheError)
    expect((corrupt as CacheError).message).toMatch(/cache database .*cache\.db is corrupt/)

    fs.rmSync(path.join(p.dir, ".anneal"), { recursive: true, force: true })
    fs.rmSync(p.file("data.txt"))
    const missing = typedFailure(await run())
    expect(missing).toBeInstanceOf(SourceError)
    expect((missing as SourceError).message).toMatch(/source not found: .*data\.txt/)
  })

  it("Store.make and store.attempt put a CacheError in the channel; store.commitEffect a file-system error as a CacheError", async () => {
    p = tempProject()
    const file = p.file("plain-file")
    fs.writeFileSync(file, "x")
    // a store under a plain file cannot be created
    const opened = await Effect.runPromiseExit(Store.make(path.join(file, "store")))
    expect(typedFailure(opened)).toBeInstanceOf(CacheError)

    const store = Store.open(path.join(p.dir, "store"))
    try {
      const staging = store.newStaging("a".repeat(64))
      fs.writeFileSync(path.join(staging, "f"), "data")
      fs.symlinkSync("/etc/hostname", path.join(staging, "link"))
      const committed = await Effect.runPromiseExit(store.commitEffect(staging, "file", {}))
      const e = typedFailure(committed)
      expect(e).toBeInstanceOf(CacheError)
      expect((e as CacheError).message).toMatch(/link/)
    } finally {
      store.close()
    }
    // a closed database: its CacheError, in the channel
    const closed = await Effect.runPromiseExit(store.attempt((s) => s.db.artifacts()))
    expect(typedFailure(closed)).toBeInstanceOf(CacheError)
  })
})

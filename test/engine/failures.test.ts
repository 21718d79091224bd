/**
 * Every failure reaches the user as a failed step with its message: a TS step that throws (at once or
 * later), an output the store cannot commit, a database error while committing, an error while the step
 * is being prepared, a dataset step that writes nothing. Never "interrupted", never a run row left
 * `running`, never staging left behind.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { Database } from "../../cache/sqlite.ts"
import { annealIndex, cli, stepEvents, tempProject } from "../helpers/project.ts"
import type { TempProject } from "../helpers/project.ts"

/** One TS step, `broken`, whose `mode` param picks how it goes wrong. */
const recipe = (mode: string) => `
import * as fs from "node:fs"
import * as path from "node:path"
import { createRequire } from "node:module"
import { defineStep, Port, recipe, source, Text, Schema } from ${JSON.stringify(annealIndex)}

const broken = defineStep({
  kind: "broken", version: 1, params: Schema.Struct({ mode: Schema.String }),
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  run: (ctx) => {
    const write = () => fs.writeFileSync(path.join(ctx.output, "data.jsonl"), '{"text":"x"}\\n')
    switch (ctx.params.mode) {
      case "sync": throw new Error("sync boom")
      case "async": return Promise.resolve().then(() => { throw new Error("async boom") })
      case "symlink":
        write()
        fs.symlinkSync("/etc/hostname", path.join(ctx.output, "link"))
        return
      case "db": {
        // a trigger makes the engine's own commit transaction fail with a real SQLite error
        const { DatabaseSync } = createRequire(import.meta.url)("node:sqlite")
        const db = new DatabaseSync(path.join(ctx.output, "..", "..", "cache.db"), { timeout: 5000 })
        db.exec("CREATE TRIGGER boom BEFORE INSERT ON artifacts BEGIN SELECT RAISE(ABORT, 'db boom'); END")
        db.close()
        write()
        return
      }
      case "db-lock": {
        // the next step's build lock cannot be taken: a database error outside any executor
        const { DatabaseSync } = createRequire(import.meta.url)("node:sqlite")
        const db = new DatabaseSync(path.join(ctx.output, "..", "..", "cache.db"), { timeout: 5000 })
        db.exec("CREATE TRIGGER boom BEFORE INSERT ON locks BEGIN SELECT RAISE(ABORT, 'lock boom'); END")
        db.close()
        write()
        return
      }
      case "empty": return
      default: write()
    }
  }
})

const copy = defineStep({
  kind: "copy", version: 1, params: Schema.Struct({}),
  inputs: { data: Port.dataset(Text) }, output: Port.dataset(Text),
  run: (ctx) => fs.cpSync(ctx.inputs.data, ctx.output, { recursive: true })
})

export default recipe("failures", () => {
  const out = broken({ data: source.dataset("data.txt", Text) }, { mode: ${JSON.stringify(mode)} })
  if (${JSON.stringify(mode)} === "db-lock") copy({ data: out })
})
`

const runRows = (store: string): Array<{ status: string; error: string | null }> => {
  const db = new Database(path.join(store, "cache.db"), { readonly: true })
  try {
    return db.prepare("SELECT status, error FROM runs ORDER BY id").all() as Array<{ status: string; error: string | null }>
  } finally {
    db.close()
  }
}

const project = (mode: string): TempProject => {
  const p = tempProject()
  p.write("data.txt", "alpha\n")
  p.write("recipe.ts", recipe(mode))
  return p
}

/** Runs the recipe and checks what every failure must look like; returns the step's message. */
const expectFailed = async (p: TempProject, args: ReadonlyArray<string> = []): Promise<string> => {
  const r = await cli(["run", p.file("recipe.ts"), "--json", ...args])
  expect(r.exitCode, r.stderr).toBe(1)
  expect(r.stderr).not.toMatch(/internal error/)
  const failed = stepEvents(r.events).filter((e) => e.step === "broken")
  expect(failed.map((e) => e.status)).toEqual(["failed"])
  expect(r.events.at(-1)).toMatchObject({ event: "run", failed: 1, interrupted: 0 })
  const rows = runRows(p.store)
  expect(rows.at(-1)).toMatchObject({ status: "failed", error: failed[0]!.error })
  expect(rows.filter((row) => row.status === "running")).toEqual([])
  expect(fs.readdirSync(path.join(p.store, "staging"))).toEqual([])
  return failed[0]!.error ?? ""
}

describe("every failure is a failed step with its message", () => {
  it("a TS step that throws synchronously", async () => {
    expect(await expectFailed(project("sync"))).toBe("sync boom")
  })

  it("a TS step whose promise rejects", async () => {
    expect(await expectFailed(project("async"))).toBe("async boom")
  })

  it("an output the store refuses to commit (a symlink)", async () => {
    expect(await expectFailed(project("symlink"))).toMatch(/^could not commit the output: .*link/)
  })

  it("a database error while committing", async () => {
    expect(await expectFailed(project("db"))).toMatch(/^could not commit the output: .*db boom/)
  })

  it("a database error outside the executor (taking the next step's build lock)", async () => {
    const p = project("db-lock")
    const r = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(r.exitCode, r.stderr).toBe(1)
    expect(stepEvents(r.events).map((e) => [e.step, e.status, e.error])).toEqual([
      ["broken", "ran", undefined],
      ["copy", "failed", expect.stringContaining("lock boom")]
    ])
    expect(stepEvents(r.events).find((e) => e.step === "copy")?.key).toMatch(/^[0-9a-f]{16,}$/)
    expect(r.events.at(-1)).toMatchObject({ event: "run", ran: 1, failed: 1, interrupted: 0 })
    expect(runRows(p.store).filter((row) => row.status === "running")).toEqual([])
  })

  it("a dataset step that leaves its output empty", async () => {
    expect(await expectFailed(project("empty"))).toMatch(/step "broken" finished but left its output empty/)
  })

  it("an error while preparing the step (its log cannot be opened)", async () => {
    const p = project("ok")
    const first = await cli(["run", p.file("recipe.ts"), "--json"])
    expect(first.exitCode, first.stderr).toBe(0)
    const runDir = (first.events.at(-1) as { runDir: string }).runDir
    // the next session's log directory holds a directory where the step's log file must go
    const next = path.join(path.dirname(runDir), String(Number(path.basename(runDir)) + 1))
    fs.mkdirSync(path.join(next, "broken.log"), { recursive: true })
    expect(await expectFailed(p, ["--force", "broken"])).toMatch(/^could not prepare the step: .*broken\.log/)
  })
})

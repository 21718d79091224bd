/**
 * Inside this repository `import ... from "anneal"` (recipes, test projects) resolves to the TypeScript
 * sources through the package's "anneal-dev" export condition, never to a stale or missing dist/: here
 * under vitest (vitest.config.ts), and in the CLI (bin/anneal.js adds the condition in a checkout).
 */
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import * as anneal from "anneal"
import { recipe } from "../../index.ts"
import { cli, tempProject } from "../helpers/project.ts"

describe("the anneal self-reference", () => {
  it("is the sources' index.ts under vitest", () => {
    expect(anneal.recipe).toBe(recipe)
    expect(typeof anneal.clean).toBe("function")
  })

  it("is the sources' index.ts for a recipe the CLI loads from a project outside the repository", async () => {
    const p = tempProject()
    const file = p.write("recipe.ts", [
      `import { defineStep, Port, recipe, Schema } from "anneal"`,
      `import * as fs from "node:fs"`,
      `const hello = defineStep({ kind: "self-ref-hello", version: 1, params: Schema.Struct({}), inputs: {}, output: Port.files(), run: (ctx) => fs.writeFileSync(ctx.output + "/a.txt", "a") })`,
      `export default recipe("self-ref", () => { hello({}) })`
    ].join("\n"))
    const r = await cli(["plan", path.basename(file)], { cwd: p.dir })
    expect(r.stderr).toBe("")
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain("hello")
  })
})

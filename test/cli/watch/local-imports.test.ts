import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { localModules, relativeSpecifiers } from "../../../cli/watch/local-imports.ts"

describe("local imports of a recipe", () => {
  it("finds relative specifiers in every import and export form, and no packages", () => {
    const src = [
      `import { a } from "./a.ts"`,
      `import type { T } from '../types'`,
      `import "./side-effect.js"`,
      `export { b } from "./b"`,
      `export * from "./c/index.ts"`,
      `const d = await import("./d.ts")`,
      `import { Schema } from "effect"`,
      `import { sft } from "anneal"`
    ].join("\n")
    expect(relativeSpecifiers(src)).toEqual(["./a.ts", "../types", "./side-effect.js", "./b", "./c/index.ts", "./d.ts"])
  })

  it("follows them recursively, resolving .js to .ts, extensionless names and index files", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "anneal-imports-"))
    const w = (f: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true })
      fs.writeFileSync(path.join(dir, f), text)
    }
    w("recipe.ts", `import { steps } from "./lib/steps.js"\nimport cfg from "./config"\nimport "effect"`)
    w("lib/steps.ts", `export * from "./util"\nexport const steps = 1`)
    w("lib/util/index.ts", `import "../steps.js" // a cycle is fine\nexport const u = 1`)
    w("config.ts", `export default { broken syntax is fine here`)
    w("unused.ts", `export const x = 1`)
    expect(localModules(path.join(dir, "recipe.ts")).map((f) => path.relative(dir, f))).toEqual([
      "recipe.ts",
      "lib/steps.ts",
      "lib/util/index.ts",
      "config.ts"
    ])
  })
})

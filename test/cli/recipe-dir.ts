/**
 * A throwaway project for tests that run the real CLI: a temp directory with a package.json (ESM, so
 * recipes load as modules), and node_modules/anneal linked to this repository, so recipes import from
 * "anneal" as a user's do.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
export const annealBin = path.join(repoRoot, "bin", "anneal.js")
/** The module specifier test recipes import anneal by, as users' recipes do. */
export const annealIndex = "anneal"

export interface RecipeDir {
  readonly dir: string
  readonly store: string
  readonly file: (name: string) => string
  readonly write: (name: string, text: string) => void
  readonly read: (name: string) => string
  readonly remove: () => void
}

export const makeRecipeDir = (prefix: string): RecipeDir => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `anneal-${prefix}-`))
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ type: "module", private: true }))
  fs.mkdirSync(path.join(dir, "node_modules"))
  fs.symlinkSync(repoRoot, path.join(dir, "node_modules", "anneal"))
  const file = (name: string) => path.join(dir, name)
  return {
    dir,
    store: file("store"),
    file,
    write: (name, text) => fs.writeFileSync(file(name), text),
    read: (name) => fs.readFileSync(file(name), "utf8"),
    remove: () => fs.rmSync(dir, { recursive: true, force: true })
  }
}

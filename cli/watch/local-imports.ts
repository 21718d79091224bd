/**
 * The local modules a recipe imports, found by scanning source text for relative specifiers
 * (`import ... from "./x"`, `export ... from "../y"`, `import("./z")`), recursively.
 *
 * A scan, not a module graph: it does not evaluate code, so it works on a file that does not compile
 * (which is exactly when watch mode must keep watching). Limitations: specifiers built at run time
 * (`import(name)`), path aliases (tsconfig `paths`) and bare package names are not followed; a
 * commented-out import is followed anyway (harmless: one more file watched).
 */
import * as fs from "node:fs"
import * as path from "node:path"

const specifierPattern =
  /(?:\bimport\s*(?:type\s+)?(?:[\w*${}\s,]+?\s*from\s*)?|\bexport\s*(?:type\s+)?[\w*${}\s,]*?\s*from\s*|\bimport\s*\(\s*|\brequire\s*\(\s*)["'](\.{1,2}\/[^"']+)["']/g

export const relativeSpecifiers = (source: string): Array<string> => [...source.matchAll(specifierPattern)].map((m) => m[1]!)

const extensions = [".ts", ".tsx", ".mts", ".cts", ".js", ".mjs", ".cjs", ".json"]

/** Node/TS resolution for a relative specifier: as written, `.js` written for `.ts`, extensionless, index. */
export const resolveLocal = (fromFile: string, specifier: string): string | undefined => {
  const base = path.resolve(path.dirname(fromFile), specifier)
  const candidates = [
    base,
    base.replace(/\.(m|c)?js$/, ".$1ts"),
    base.replace(/\.jsx$/, ".tsx"),
    ...extensions.map((e) => base + e),
    ...extensions.map((e) => path.join(base, "index" + e))
  ]
  return candidates.find((c) => {
    try {
      return fs.statSync(c).isFile()
    } catch {
      return false
    }
  })
}

/** The recipe file and every local module reachable from it (absolute paths, recipe first). */
export const localModules = (recipe: string): Array<string> => {
  const seen = new Set<string>()
  const visit = (file: string) => {
    if (seen.has(file)) return
    seen.add(file)
    let text: string
    try {
      text = fs.readFileSync(file, "utf8")
    } catch {
      return // deleted mid-edit: still watched, so its return is noticed
    }
    if (file.endsWith(".json")) return
    for (const s of relativeSpecifiers(text)) {
      const r = resolveLocal(file, s)
      if (r !== undefined && !r.includes(`${path.sep}node_modules${path.sep}`)) visit(r)
    }
  }
  visit(path.resolve(recipe))
  return [...seen]
}

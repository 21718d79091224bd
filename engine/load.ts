/**
 * Loading a recipe: import the module (TypeScript, through tsx's loader), run its build function inside
 * a GraphBuilder, and validate the graph. Anything that goes wrong is a RecipeError naming the file.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { GraphBuilder, validateGraph, withBuilder } from "./graph.ts"
import type { Graph, Recipe } from "./graph.ts"
import { RecipeError } from "./errors.ts"

const isRecipe = (u: unknown): u is Recipe =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "Recipe"

let generation = 0
const loading = new Set<string>()

/**
 * The recipe whose module is being imported right now, if any. When the event loop empties while this
 * is set, the recipe's top-level await can never settle: the CLI names the recipe instead of reporting
 * an internal error.
 */
export const recipeStillLoading = (): string | undefined => {
  const [first] = loading
  return first === undefined ? undefined : path.relative(process.cwd(), first) || first
}

/** The recipe's location in a stack trace, if the error came from it. */
const locate = (e: unknown, file: string): string => {
  const stack = e instanceof Error ? e.stack ?? "" : ""
  const m = stack.split("\n").map((l) => /((?:file:\/\/)?\/[^():]+):(\d+):\d+/.exec(l)).find((x) => x !== null && x[1]!.replace("file://", "") === file)
  return m ? `${path.relative(process.cwd(), file)}:${m[2]}` : path.relative(process.cwd(), file) || file
}

const firstLine = (e: unknown): string => {
  const msg = e instanceof Error ? e.message : String(e)
  return msg.split("\n").map((l) => l.trim()).filter(Boolean).slice(0, 2).join(": ")
}

export const loadRecipe = async (recipePath: string, options: { fresh?: boolean } = {}): Promise<Graph> => {
  const file = path.resolve(recipePath)
  if (!fs.existsSync(file)) throw new RecipeError({ message: `recipe not found: ${recipePath}`, file })
  let mod: { default?: unknown }
  try {
    const url = pathToFileURL(file).href + (options.fresh === true ? `?anneal=${Date.now()}-${++generation}` : "")
    loading.add(file)
    mod = await import(url)
  } catch (e) {
    // esbuild (through tsx) reports syntax errors as "<file>:<line>:<col>: ERROR: <what>"
    const syntax = /(\/[^\s:]+):(\d+):(\d+): ERROR: (.*)/.exec(e instanceof Error ? e.message : String(e))
    if (syntax !== null) {
      const where = `${path.relative(process.cwd(), syntax[1]!)}:${syntax[2]}:${syntax[3]}`
      throw new RecipeError({ message: `recipe ${where} does not compile: ${syntax[4]}`, file, cause: e })
    }
    throw new RecipeError({ message: `recipe ${locate(e, file)} failed to load: ${firstLine(e)}`, file, cause: e })
  } finally {
    loading.delete(file)
  }
  // A recipe in a project without "type": "module" is compiled to CommonJS: its import is then
  // `{ default: module.exports }`, and the recipe is that object's own `default` (esModule interop).
  const interop = mod.default as { readonly __esModule?: unknown; readonly default?: unknown } | undefined
  const exported = interop !== null && typeof interop === "object" && interop.__esModule === true && "default" in interop ? interop.default : mod.default
  let name: string
  let build: () => void
  if (isRecipe(exported)) {
    name = exported.name
    build = exported.build
  } else if (typeof exported === "function") {
    name = path.basename(file).replace(/\.[cm]?[jt]sx?$/, "")
    build = exported as () => void
  } else {
    throw new RecipeError({
      message: `recipe ${path.relative(process.cwd(), file)} must have a default export: export default recipe("name", () => { ... })`,
      file
    })
  }
  const nodesOf = (callSites: boolean) => {
    const builder = new GraphBuilder(file, callSites)
    try {
      withBuilder(builder, build)
    } catch (e) {
      if (e instanceof RecipeError) throw e
      throw new RecipeError({ message: `recipe ${locate(e, file)} threw while building: ${firstLine(e)}`, file, cause: e })
    }
    if (builder.nodes.every((n) => n._tag === "source")) {
      throw new RecipeError({ message: `recipe ${path.relative(process.cwd(), file)} defines no steps`, file })
    }
    return builder.nodes
  }
  const nodes = nodesOf(false)
  try {
    return validateGraph(file, name, nodes)
  } catch (e) {
    if (!(e instanceof RecipeError)) throw e
    // the message names the step's line: build once more, each call's stack captured this time (a recipe
    // that builds differently the second time keeps its first error, without a line)
    try {
      validateGraph(file, name, nodesOf(true))
    } catch (located) {
      if (located instanceof RecipeError) throw located
    }
    throw e
  }
}

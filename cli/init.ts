/**
 * `anneal init [dir]`: scaffolds a recipe project that runs at once. The files come from
 * templates/init/ in the anneal package (a recipe with built-in steps and one custom step, sample data,
 * a tsconfig that type-checks recipes, a README); package.json is written here because its anneal
 * dependency names the anneal that ran init: the tarball, path or git URL it was installed from, else a
 * semver range of its version (`--anneal SPEC` overrides).
 *
 * Template files that npm would drop or rename when packing (`.gitignore`) are stored without their dot.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { UsageError } from "../engine/errors.ts"

interface PackageJson {
  readonly name?: string
  readonly version?: string
  readonly dependencies?: Record<string, string>
  readonly devDependencies?: Record<string, string>
  readonly optionalDependencies?: Record<string, string>
  readonly allowScripts?: Record<string, boolean>
}

const readJson = (file: string): PackageJson | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as PackageJson
  } catch {
    return undefined
  }
}

/** The root of the anneal package this module belongs to (a checkout, or node_modules/anneal). */
export const annealPackageRoot = (): string => {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (readJson(path.join(dir, "package.json"))?.name === "anneal") return dir
    const up = path.dirname(dir)
    if (up === dir) throw new Error(`anneal init: cannot find anneal's package.json above ${fileURLToPath(import.meta.url)}`)
    dir = up
  }
}

/** npm specs that name a local file or directory, relative to the package.json holding them. */
const localSpec = (spec: string): string | undefined => {
  if (spec.startsWith("file:")) return spec.slice("file:".length)
  if (/^[a-z][a-z0-9+.-]*:/i.test(spec)) return undefined // a URL, git+ssh:, github:, npm: alias
  if (/^\.{0,2}\//.test(spec) || /\.(tgz|tar\.gz)$/.test(spec)) return spec
  return undefined
}

/**
 * The dependency spec that installs this same anneal into a new project. Installed under
 * `<project>/node_modules/anneal` (npx installs into a project of its own too), it is the spec that
 * project's package.json gave, with a local path made absolute; a registry range becomes `^version`. Run
 * from a checkout, it is the checkout's path.
 */
export const annealDependencySpec = (root: string, version: string): string => {
  const parts = root.split(path.sep)
  const nm = parts.lastIndexOf("node_modules")
  if (nm === -1) return `file:${root}`
  const installer = parts.slice(0, nm).join(path.sep) || path.sep
  const pkg = readJson(path.join(installer, "package.json"))
  const spec = pkg?.dependencies?.anneal ?? pkg?.devDependencies?.anneal ?? pkg?.optionalDependencies?.anneal
  if (spec === undefined) return `^${version}`
  const local = localSpec(spec)
  if (local !== undefined) return `file:${path.resolve(installer, local)}`
  // a git URL, tarball URL or alias installs the same way from anywhere; a range or tag means the registry
  if (/^[~^<>=]|^\d|^latest$|^\*$/.test(spec.trim())) return `^${version}`
  return spec
}

/**
 * The project's `allowScripts` (npm 11 warns at every install about each dependency's install script it
 * does not cover): the ones anneal's own package.json allows (the `node` package's preinstall fetches
 * the Node binary anneal re-runs under; esbuild's, tsx's), and anneal's own `prepare` (it builds dist/)
 * when anneal comes from a tarball, path or git URL, which npm counts and keys by that exact spec.
 */
export const installScripts = (spec: string, self: PackageJson): Record<string, boolean> => {
  const fromRegistry = /^[~^<>=]|^\d|^latest$|^\*$/.test(spec.trim())
  return { ...(fromRegistry ? {} : { [spec]: true }), ...self.allowScripts }
}

const projectName = (dir: string): string => {
  const name = path.basename(dir).toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[._-]+/, "")
  return name === "" ? "recipes" : name
}

const copyTemplate = (from: string, to: string, vars: Record<string, string>, written: Array<string>, rel = ""): void => {
  fs.mkdirSync(to, { recursive: true })
  for (const entry of fs.readdirSync(from, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const target = entry.name === "gitignore" ? ".gitignore" : entry.name
    const relTarget = rel === "" ? target : `${rel}/${target}`
    if (entry.isDirectory()) {
      copyTemplate(path.join(from, entry.name), path.join(to, target), vars, written, relTarget)
      continue
    }
    const text = fs.readFileSync(path.join(from, entry.name), "utf8").replace(/\{\{(\w+)\}\}/g, (m, k: string) => vars[k] ?? m)
    fs.writeFileSync(path.join(to, target), text, { flag: "wx" })
    written.push(relTarget)
  }
}

export interface InitOptions {
  /** the anneal dependency spec to write; default: the anneal running this */
  readonly anneal?: string | undefined
}

/** Writes the project into dir (created if missing; it must be empty) and returns the files written. */
export const initProject = (dir: string, options: InitOptions = {}): Array<string> => {
  const target = path.resolve(dir)
  if (fs.existsSync(target)) {
    if (!fs.statSync(target).isDirectory()) throw new UsageError({ message: `init: ${dir} exists and is not a directory` })
    if (fs.readdirSync(target).length > 0) {
      throw new UsageError({ message: `init: ${dir} is not empty; give a new or empty directory (anneal init my-recipes)` })
    }
  }
  const root = annealPackageRoot()
  const templates = path.join(root, "templates", "init")
  if (!fs.existsSync(templates)) throw new Error(`anneal init: the project template is missing from this anneal (${templates})`)
  const self = readJson(path.join(root, "package.json"))!
  const version = self.version ?? "0.0.0"
  const name = projectName(target)
  const written: Array<string> = []
  copyTemplate(templates, target, { name }, written)
  const spec = options.anneal ?? annealDependencySpec(root, version)
  const pkg = {
    name,
    version: "0.1.0",
    private: true,
    type: "module",
    scripts: { start: "anneal run recipe.ts", plan: "anneal plan recipe.ts", typecheck: "tsc" },
    dependencies: { anneal: spec },
    allowScripts: installScripts(spec, self),
    // the compiler and Node types anneal itself is checked with
    devDependencies: {
      "@types/node": self.devDependencies?.["@types/node"] ?? "^24",
      typescript: self.devDependencies?.typescript ?? "^5.9"
    }
  }
  fs.writeFileSync(path.join(target, "package.json"), JSON.stringify(pkg, null, 2) + "\n", { flag: "wx" })
  written.push("package.json")
  return written.sort()
}

/** The CLI's `init` command: scaffold, then say what to type next. */
export const initCommand = (values: Record<string, unknown>, positionals: ReadonlyArray<string>): number => {
  if (positionals.length > 1) throw new UsageError({ message: `init: give one directory, got ${positionals.length}` })
  const anneal = values.anneal
  if (anneal !== undefined && (typeof anneal !== "string" || anneal.trim() === "")) {
    throw new UsageError({ message: "init: --anneal takes an npm dependency spec, e.g. --anneal ^0.1.0 or --anneal file:../anneal-0.1.0.tgz" })
  }
  const dir = positionals[0] ?? "."
  const files = initProject(dir, { anneal: typeof anneal === "string" ? anneal : undefined })
  const cd = path.resolve(dir) === process.cwd() ? [] : [`  cd ${dir}`]
  process.stdout.write(
    [
      `Created a recipe project in ${path.resolve(dir)}: ${files.join(", ")}`,
      "",
      "Next:",
      ...cd,
      "  npm install",
      "  npx anneal run recipe.ts",
      ""
    ].join("\n")
  )
  return 0
}

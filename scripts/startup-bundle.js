/**
 * The start-up bundle (dist/startup.js, with dist/startup.json), part of `npm run build`.
 *
 * Every command but --help loads the same ~250 modules before it reads a recipe: anneal's compiled
 * engine, store, steps and CLI (~110) and the Effect modules they import (~140). Node loads each one on
 * its own (resolve, read, code-cache lookup, link, evaluate); one file with all of them loads in about a
 * third of the time. But the modules must stay one instance each: a recipe imports `anneal` (dist/index.js)
 * and may import `effect` itself, and both must be the very modules the CLI runs (Schema classes, step
 * registries, tagged errors).
 *
 * So the bundle does not replace the files; it stands in for them. Each module in it (a "member") keeps
 * its own file in dist/ or in node_modules/effect, unchanged, and the bundle exports every member's
 * exports under numbered names. The launcher (bin/anneal.js) registers a load hook that answers a
 * member's URL, however it was reached (`anneal`, `effect/Schema`, a relative import, a dynamic
 * import), with a one-line facade re-exporting that member's names from the bundle: live bindings, one
 * instance. Everything else loads as before, and its imports of members meet the same facades: a module
 * loaded later (`import()` of a command's code, a recipe, Effect modules anneal does not use) shares the
 * bundle's instances. Without the hook (a program importing `anneal` as a library, a worker thread, a
 * child process) the bundle is never loaded and the files load as they always did.
 *
 * In the bundle:
 * - dynamic imports stay imports of the original files (loaded only when a command needs them);
 * - `import.meta.url` is each member's own file's URL, so what a module finds beside itself (Python
 *   workers, the supervisor, worker-thread scripts) is where it was;
 * - names are kept (`keepNames`): error classes and functions keep their `.name`.
 *
 * dist/startup.json records the Effect version bundled; the launcher uses the bundle only when the
 * Effect that dist/ resolves to is that version (a user's project may hoist another).
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"

/**
 * What a command loads before it reads a recipe: the public API, the commands, the recipe loader, the
 * errors it reports, the run and its reporters, with every module they import statically.
 * `cli/main.js` (which runs the command when imported) and `cli/help.js` (all that `--help` loads)
 * stay out.
 */
const entries = ["index.js", "cli/commands.js", "engine/load.js", "engine/errors.js", "engine/run.js", "cli/reporters/json.js", "cli/reporters/pick.js"]
const isIdentifier = (name) => /^[A-Za-z_$][\w$]*$/.test(name)
const nameOf = (name) => (isIdentifier(name) ? name : JSON.stringify(name))
/** Member i's export `name` under its bundle name: `m<i>$<name>` (the bundle's export and the facade's import). */
const bundledName = (i, name) => nameOf(`m${i}$${name}`)

/**
 * Builds dist/startup.js and dist/startup.json. `external`: the packages the published package keeps as
 * dependencies (all but effect stay outside the bundle). Returns the number of members.
 */
export const buildStartupBundle = async ({ root, dist, esbuild, external }) => {
  // resolved the way dist/ resolves it at run time (real paths, as esbuild and Node's loader give them)
  const effectPackage = fs.realpathSync(path.dirname(createRequire(path.join(dist, "index.js")).resolve("effect/package.json")))
  const effectVersion = JSON.parse(fs.readFileSync(path.join(effectPackage, "package.json"), "utf8")).version
  const kept = external.filter((e) => e !== "effect")
  const outside = [...kept, ...kept.map((e) => `${e}/*`), "tsx", "tsx/*", "esbuild"]
  const entrySource = entries.map((f) => `import ${JSON.stringify("./" + f)}`).join("\n")

  // 1. the members, each with its exports (each member an entry point of one analysis build)
  const reach = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [writeEntry(dist, entrySource)],
    bundle: true,
    write: false,
    metafile: true,
    format: "esm",
    platform: "node",
    outdir: path.join(dist, ".startup-analysis"),
    external: outside,
    plugins: [keepDynamicImports(dist, dist)],
    logLevel: "silent"
  })
  const members = Object.keys(reach.metafile.inputs)
    .filter((input) => /\.m?js$/.test(input) && path.resolve(root, input) !== entryFile(dist))
    .map((input) => path.resolve(root, input))
    .filter((file) => file.startsWith(dist + path.sep) || file.startsWith(effectPackage + path.sep))
    .sort()
  if (members.some((file) => file.endsWith(`${path.sep}cli${path.sep}help.js`))) throw new Error("the start-up bundle would hold cli/help.js: --help would load all of it")
  // a facade re-exports an ES module's names; a CommonJS member would have none to give
  const commonjs = members.filter((file) => reach.metafile.inputs[path.relative(root, file)]?.format === "cjs")
  if (commonjs.length > 0) throw new Error(`the start-up bundle would hold CommonJS modules: ${commonjs.join(", ")}`)
  const exportsOf = new Map()
  const analysis = await esbuild.build({
    absWorkingDir: root,
    entryPoints: members,
    bundle: true,
    splitting: true,
    write: false,
    metafile: true,
    format: "esm",
    platform: "node",
    outdir: path.join(dist, ".startup-analysis"),
    outbase: root,
    external: outside,
    plugins: [keepDynamicImports(dist, dist)],
    logLevel: "silent"
  })
  for (const output of Object.values(analysis.metafile.outputs)) {
    if (output.entryPoint !== undefined) exportsOf.set(path.resolve(root, output.entryPoint), output.exports)
  }

  // 2. the bundle: member i's export `x` is the bundle's `m<i>$x`
  const namesOf = members.map((file) => exportsOf.get(file) ?? [])
  const reexports = members.map((file, i) => {
    if (namesOf[i].length === 0) return `import ${JSON.stringify(file)}`
    return `export { ${namesOf[i].map((n) => `${nameOf(n)} as ${bundledName(i, n)}`).join(", ")} } from ${JSON.stringify(file)}`
  })
  const bundleFile = path.join(dist, "startup.js")
  const built = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [writeEntry(dist, reexports.join("\n"))],
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node22",
    outfile: bundleFile,
    external: outside,
    legalComments: "eof",
    banner: { js: `// anneal's start-up bundle: see scripts/startup-bundle.js. Includes effect@${effectVersion} (MIT, node_modules/effect/LICENSE).` },
    plugins: [keepDynamicImports(dist, path.dirname(bundleFile)), ownUrls(bundleFile)],
    logLevel: "warning"
  })
  if (built.errors.length > 0) throw new Error("the start-up bundle did not build")

  // 3. the facades the launcher serves for the members' URLs
  const facades = members.map((file, i) => {
    const where = file.startsWith(dist + path.sep) ? "anneal" : "effect"
    const rel = path.relative(where === "anneal" ? path.dirname(dist) : effectPackage, file).split(path.sep).join("/")
    const body = namesOf[i].length === 0 ? "" : `export { ${namesOf[i].map((n) => `${bundledName(i, n)} as ${nameOf(n)}`).join(", ")} } from `
    return [where, rel, body]
  })
  fs.rmSync(entryFile(dist))
  fs.writeFileSync(path.join(dist, "startup.json"), JSON.stringify({ effect: effectVersion, bundle: "dist/startup.js", members: facades }))
  return members.length
}

/** The generated entry of a build (removed once the bundle is written). */
const entryFile = (dist) => path.join(dist, ".startup-entry.js")
const writeEntry = (dist, text) => {
  fs.writeFileSync(entryFile(dist), text + "\n")
  return entryFile(dist)
}

/** Dynamic imports stay imports of the original files, written relative to the output's directory. */
const keepDynamicImports = (dist, outDir) => ({
  name: "keep-dynamic-imports",
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      if (args.kind !== "dynamic-import") return undefined
      if (!/^\.\.?\//.test(args.path)) return { path: args.path, external: true }
      let rel = path.relative(outDir, path.resolve(args.resolveDir, args.path)).split(path.sep).join("/")
      if (!rel.startsWith(".")) rel = `./${rel}`
      return { path: rel, external: true }
    })
  }
})

/** `import.meta.url` in a member is its own file's URL (what it finds beside itself stays where it was). */
const ownUrls = (bundleFile) => ({
  name: "own-urls",
  setup(build) {
    build.onLoad({ filter: /\.m?js$/ }, (args) => {
      const text = fs.readFileSync(args.path, "utf8")
      if (!text.includes("import.meta.url")) return undefined
      const rel = path.relative(path.dirname(bundleFile), args.path).split(path.sep).join("/")
      return { contents: text.replaceAll("import.meta.url", `new URL(${JSON.stringify(rel.startsWith(".") ? rel : `./${rel}`)}, import.meta.url).href`), loader: "js" }
    })
  }
})

#!/usr/bin/env node
// The `anneal` command. This launcher is plain JavaScript that parses under Node 20, so that on a
// machine whose Node is older than 22.15 (the first with every node:sqlite API the cache database uses:
// unflagged in 22.13, StatementSync#setAllowUnknownNamedParameters in 22.15; Node 23, end-of-life, is
// treated as old) it can still start: it re-runs itself under the Node 24 binary that the package brings
// (the `node` npm package, a dependency). Under Node 22.15+ or >= 24 it registers tsx's
// loader (recipes are TypeScript) and starts the CLI: the compiled dist/cli/main.js in an installed
// package, or cli/main.ts in a checkout of anneal's own repository (sources present, no build needed).
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

/**
 * A resolve hook that answers an import it has answered before. tsx's hook (and Node's behind it) runs
 * for every import statement, before Node's own cache: `plan` makes ~500 calls for the ~150 modules it
 * loads, each a few file lookups. A relative path resolves to the same module from every importer, and a
 * package name to the same module from every file of one directory, under the same conditions; an
 * import with attributes (JSON), a query or a fragment, or from something other than a file, is passed on
 * untouched, as is every failure (never remembered, so the error stays the one Node gives).
 */
const rememberResolutions = () => {
  const known = new Map()
  return (specifier, context, next) => {
    const parent = context.parentURL
    const plain = parent?.startsWith("file:") === true && !/[?#]/.test(parent) && !/[?#]/.test(specifier) &&
      Object.keys(context.importAttributes ?? {}).length === 0
    const relative = specifier.startsWith("./") || specifier.startsWith("../")
    const bare = !relative && !specifier.startsWith("/") && !specifier.includes(":")
    if (!plain || (!relative && !bare)) return next(specifier, context)
    const conditions = (context.conditions ?? []).join(",")
    const key = relative ? `${conditions} ${new URL(specifier, parent).href}` : `${conditions} ${new URL(".", parent).href} ${specifier}`
    let found = known.get(key)
    if (found === undefined) {
      found = next(specifier, context)
      known.set(key, found)
    }
    return { ...found, shortCircuit: true }
  }
}

/**
 * Serves the start-up bundle (dist/startup.js, built by scripts/startup-bundle.js: see there): a load
 * hook answers the URL of each module the bundle holds with a facade re-exporting that module's names
 * from it, so a command loads one file instead of ~250 and every importer, a recipe included, shares its
 * instances. Used only when the Effect that dist/ resolves to is the version bundled; otherwise (or
 * with ANNEAL_NO_STARTUP_BUNDLE=1) every module loads from its own file as before. Returns the
 * facades (URL -> source), or undefined when the bundle is not used.
 */
const serveStartupBundle = (nodeModule, dist) => {
  if (typeof nodeModule.registerHooks !== "function" || process.env.ANNEAL_NO_STARTUP_BUNDLE === "1") return
  let manifest
  let effectDir
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(dist, "startup.json"), "utf8"))
    effectDir = fs.realpathSync(path.dirname(nodeModule.createRequire(path.join(dist, "index.js")).resolve("effect/package.json")))
    if (JSON.parse(fs.readFileSync(path.join(effectDir, "package.json"), "utf8")).version !== manifest.effect) return
  } catch {
    return
  }
  const bases = { anneal: pathToFileURL(fs.realpathSync(path.dirname(dist)) + path.sep).href, effect: pathToFileURL(effectDir + path.sep).href }
  const bundle = JSON.stringify(new URL(manifest.bundle, bases.anneal).href)
  const facades = new Map()
  for (const [where, rel, reexport] of manifest.members) {
    facades.set(new URL(rel, bases[where]).href, reexport === "" ? `import ${bundle}` : reexport + bundle)
  }
  nodeModule.registerHooks({
    load: (url, context, next) => {
      const source = facades.get(url)
      return source === undefined ? next(url, context) : { format: "module", source, shortCircuit: true }
    }
  })
  return facades
}

/**
 * A load hook, registered after tsx's, that hands anneal's own compiled modules (dist/**.js) to Node as
 * they are: tsx's load hook rewrites the dynamic `import()`s of every JavaScript module it loads and
 * builds a source map of the whole file for it, which for the vendored Ink (650 kB, loaded by the live
 * view) was ~150 ms of every run in a terminal. A facade of the start-up bundle is answered as the
 * bundle's own hook would; anything else, and a file that cannot be read, goes down the chain.
 */
const loadCompiledAsIs = (dist, facades) => {
  const prefix = pathToFileURL(fs.realpathSync(dist) + path.sep).href
  return (url, context, next) => {
    const facade = facades.get(url)
    if (facade !== undefined) return { format: "module", source: facade, shortCircuit: true }
    if (!url.startsWith(prefix) || !url.endsWith(".js") || url.includes("?") || url.includes("#")) return next(url, context)
    let source
    try {
      source = fs.readFileSync(new URL(url))
    } catch {
      return next(url, context)
    }
    return { format: "module", source, shortCircuit: true }
  }
}

const self = fileURLToPath(import.meta.url)
const packageRoot = path.resolve(path.dirname(self), "..")
const [major, minor] = process.versions.node.split(".").map(Number)

if (major < 22 || (major === 22 && minor < 15) || major === 23) {
  const { createRequire } = await import("node:module")
  let node
  try {
    node = path.join(path.dirname(createRequire(self).resolve("node/package.json")), "bin", "node")
  } catch {
    node = undefined
  }
  if (node === undefined || !fs.existsSync(node) || process.env.ANNEAL_REEXEC === "1") {
    process.stderr.write(
      `anneal: this Node is ${process.version} and anneal needs Node 22.15+ or >= 24; the Node 24 it brings (the "node" package) ` +
        `is not installed${node === undefined ? "" : ` at ${node}`}: reinstall anneal without --ignore-scripts, or run it with Node 22.15+ or >= 24\n`
    )
    process.exit(2)
  }
  const { spawn } = await import("node:child_process")
  const child = spawn(node, [...process.execArgv, self, ...process.argv.slice(2)], {
    stdio: "inherit",
    env: { ...process.env, ANNEAL_REEXEC: "1" }
  })
  // Ctrl-C reaches both processes (the terminal signals the whole process group): let the child
  // decide; a SIGTERM or SIGHUP sent to this launcher alone (scancel, `anneal watch`) is passed on.
  process.on("SIGINT", () => {})
  for (const signal of ["SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal))
  child.on("error", (e) => {
    process.stderr.write(`anneal: cannot start ${node}: ${e.message}\n`)
    process.exit(2)
  })
  child.on("exit", (code, signal) => {
    if (signal !== null) {
      process.removeAllListeners(signal)
      process.kill(process.pid, signal)
    }
    process.exit(code ?? 1)
  })
} else {
  // Node 22 and 24 print an ExperimentalWarning the first time node:sqlite loads (the cache database),
  // on every command: that one warning, and only it, is dropped; every other warning prints as usual.
  const emitWarning = process.emitWarning
  process.emitWarning = function (warning, ...rest) {
    const text = typeof warning === "string" ? warning : warning?.message
    const type = typeof rest[0] === "string" ? rest[0] : (rest[0]?.type ?? warning?.name)
    if (type === "ExperimentalWarning" && /^SQLite is an experimental feature/.test(text ?? "")) return
    return emitWarning.call(process, warning, ...rest)
  }
  // V8's code cache of every module anneal loads (Node's compile cache, under the temp directory, keyed
  // by content): later starts skip compiling them again
  const nodeModule = await import("node:module")
  if (typeof nodeModule.enableCompileCache === "function" && process.env.NODE_DISABLE_COMPILE_CACHE === undefined) nodeModule.enableCompileCache()
  const sources = path.join(packageRoot, "cli", "main.ts")
  const develop = fs.existsSync(sources)
  // Effect, which every command but --help needs, loads through Node's own loader first: once in the
  // module map, tsx's hooks only resolve it (tsx's load hook costs about twice the module itself). It is
  // preloaded by the submodules the engine imports (142 modules): its root module loads 247. execa (~140
  // modules, bundled into dist/vendor/ in an installed package) is not preloaded: it loads when a
  // command first starts a process, and `plan`, `steps` or a fully cached run never do.
  const effectModules = ["Effect", "Schema", "SchemaAST", "Cause", "Exit", "Data", "Deferred", "Context", "Layer"]
  const helpOnly = [undefined, "help", "--help", "-h", "--version", "-v"].includes(process.argv[2])
  const facades = (!develop && !helpOnly ? serveStartupBundle(nodeModule, path.join(packageRoot, "dist")) : undefined) ?? new Map()
  if (!helpOnly) await Promise.all(effectModules.map((m) => import(`effect/${m}`)))
  if (develop) {
    // In anneal's own repository, `import ... from "anneal"` (recipes, test projects) resolves to the
    // TypeScript sources through the package's "anneal-dev" export condition, the same module instances
    // the CLI runs, with no build.
    const module = nodeModule
    const withDev = (context) => ({ ...context, conditions: [...(context.conditions ?? []), "anneal-dev"] })
    if (typeof module.registerHooks === "function") {
      module.registerHooks({ resolve: (specifier, context, next) => next(specifier, withDev(context)) })
    } else {
      const hook = `export const resolve = (s, c, next) => next(s, { ...c, conditions: [...(c.conditions ?? []), "anneal-dev"] })`
      module.register(`data:text/javascript,${encodeURIComponent(hook)}`)
    }
  } else {
    // The compiled CLI (and the package entry it imports) loads the same way: only recipes need tsx.
    if (!helpOnly) await import("../dist/cli/commands.js")
  }
  const { register } = await import("tsx/esm/api")
  register()
  if (typeof nodeModule.registerHooks === "function") {
    nodeModule.registerHooks({ resolve: rememberResolutions() })
    if (!develop) nodeModule.registerHooks({ load: loadCompiledAsIs(path.join(packageRoot, "dist"), facades) })
  }
  // tsx turns source maps on for every module, and Node then reads the map of each dependency that
  // ships one (Effect's ~150 modules: tens of ms at every start). Stack traces and recipe call sites
  // need only the maps of TypeScript compiled here, which live outside node_modules.
  if (typeof nodeModule.setSourceMapsSupport === "function") nodeModule.setSourceMapsSupport(true, { nodeModules: false, generatedCode: false })
  await import(develop ? "../cli/main.ts" : "../dist/cli/main.js")
}

/**
 * `npm run build` (and `prepare`, so `npm pack`, `npm install <path>` and git URLs get it): compiles the
 * library and the CLI into dist/ (JavaScript + .d.ts, tsconfig.build.json), then copies every file the
 * code finds beside itself (Python workers, JSON) to the same relative place under dist/. Plain JS that
 * parses under any Node npm may run it with.
 *
 * Then it vendors: every third-party package the compiled JavaScript imports, other than the few the
 * published package.json keeps as dependencies (`external` below), is bundled by esbuild into
 * dist/vendor/ (one entry per imported specifier, shared code split into chunks), and the compiled
 * files' imports of it are rewritten to that file. Those packages (execa, ink, chokidar and their
 * dependencies) declare `engines` that exclude the Node npm may run under (20 on many machines), and npm
 * warns at install for each (EBADENGINE) although anneal itself runs them under its own Node >= 22.
 * anneal's own modules stay one file each, so what they find beside themselves through import.meta.url
 * (Python workers, supervise.mjs, the MinHash worker thread, cluster-runner) is where it was. The
 * declarations must not name a vendored package (a user's tsc could not resolve it): checked below.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { builtinModules, createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const dist = path.join(root, "dist")
const sourceDirs = ["engine", "cache", "steps", "cli"]
const isSource = (f) => /\.tsx?$/.test(f)
const skipped = new Set(["__pycache__", ".pytest_cache", "node_modules"])

// `prepare` also runs when this checkout installs its own dependencies (npm install, npm ci) and on
// `npx anneal` inside it (npx links the package into its cache). A checkout runs from its TypeScript
// sources, so those need no build; packing it, or installing it into another project (a path, or a git
// URL, which npm packs from its clone), does.
const ownCheckout = process.env.npm_lifecycle_event === "prepare" &&
  ["install", "ci", "exec"].includes(process.env.npm_command ?? "") &&
  path.resolve(process.env.npm_config_local_prefix ?? "") === root
if (ownCheckout) process.exit(0)

fs.rmSync(dist, { recursive: true, force: true })
let tsc
try {
  tsc = path.join(path.dirname(createRequire(import.meta.url).resolve("typescript/package.json")), "bin", "tsc")
} catch {
  // `npm install /path/to/anneal` links a checkout and installs only its runtime dependencies
  process.stderr.write(`anneal build: TypeScript (a dev dependency) is not installed in ${root}: run \`npm install\` there first\n`)
  process.exit(1)
}
const compiled = spawnSync(process.execPath, [tsc, "-p", path.join(root, "tsconfig.build.json")], { cwd: root, stdio: "inherit" })
if (compiled.status !== 0) {
  process.stderr.write("anneal build: tsc failed (see above); dist/ is incomplete\n")
  process.exit(compiled.status ?? 1)
}

const copyAssets = (dir) => {
  for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    if (skipped.has(entry.name)) continue
    const rel = path.join(dir, entry.name)
    if (entry.isDirectory()) copyAssets(rel)
    else if (entry.isFile() && !isSource(entry.name)) {
      fs.mkdirSync(path.dirname(path.join(dist, rel)), { recursive: true })
      fs.copyFileSync(path.join(root, rel), path.join(dist, rel))
    }
  }
}
for (const dir of sourceDirs) copyAssets(dir)

// ---- vendoring ----------------------------------------------------------------------------------
/** Packages that stay real dependencies: effect (one instance shared with recipes, and the .d.ts
 * reference its types), react (one instance shared by ink's reconciler and the compiled JSX), and the
 * Parquet reader/writer of the data steps (plain ESM with no `engines` limit: nothing to gain by copying). */
const external = ["effect", "react", "hyparquet", "hyparquet-writer", "hyparquet-compressors"]
/** what ink imports only with DEV=true (React devtools), not installed and never loaded otherwise */
const optionalExternal = ["react-devtools-core"]
const packageOf = (spec) => spec.split("/").slice(0, spec.startsWith("@") ? 2 : 1).join("/")
const isBuiltin = (spec) => spec.startsWith("node:") || builtinModules.includes(spec.split("/")[0])
const importRe = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\bexport\s*\*\s*from\s*)(["'])([^"'.\/][^"']*)\2/g

const walk = (dir, out = []) => {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name)
    if (entry.isDirectory()) walk(p, out)
    else out.push(p)
  }
  return out
}
let esbuild
try {
  esbuild = createRequire(import.meta.url)("esbuild")
} catch {
  process.stderr.write(`anneal build: esbuild (a dev dependency) is not installed in ${root}: run \`npm install\` there first\n`)
  process.exit(1)
}
const outputs = walk(dist).filter((f) => /\.m?js$/.test(f))
// the bare specifiers each compiled file really imports (esbuild parses them; comments and strings that
// merely look like imports do not count)
const analysis = esbuild.buildSync({
  absWorkingDir: root,
  entryPoints: outputs,
  bundle: true,
  write: false,
  metafile: true,
  packages: "external",
  platform: "node",
  format: "esm",
  outdir: path.join(dist, ".analysis"),
  logLevel: "silent"
})
const importsOf = new Map()
for (const [input, info] of Object.entries(analysis.metafile.inputs)) {
  const specs = info.imports.filter((i) => i.external && !isBuiltin(i.path) && !/^[./]/.test(i.path)).map((i) => i.path)
  importsOf.set(path.resolve(root, input), new Set(specs))
}
const vendored = new Set()
for (const specs of importsOf.values()) for (const spec of specs) if (!external.includes(packageOf(spec))) vendored.add(spec)
const vendorDir = path.join(dist, "vendor")
const vendorFile = (spec) => path.join(vendorDir, spec.replace(/^@/, "").replace(/\//g, "__") + ".js")
if (vendored.size > 0) {
  const entries = [...vendored].sort()
  const result = esbuild.buildSync({
    absWorkingDir: root,
    entryPoints: entries.map((spec) => ({ in: spec, out: path.relative(vendorDir, vendorFile(spec)).replace(/\.js$/, "") })),
    outdir: vendorDir,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node22",
    external: [...external, ...external.map((e) => `${e}/*`), ...optionalExternal],
    chunkNames: "chunks/[name]-[hash]",
    minify: true,
    legalComments: "eof",
    metafile: true,
    logLevel: "warning",
    // yoga (Ink's layout, WebAssembly embedded as a data: URL) loads its module with `fetch` when there is
    // one: touching Node's global fetch loads undici (~20 ms of every live view) to decode a string that
    // yoga's other path decodes itself. No vendored package fetches anything else.
    define: { fetch: "undefined" },
    // CommonJS inside the bundles (react-reconciler, scheduler) requires the external react: give esbuild's
    // require shim a real require
    banner: { js: `import { createRequire as __annealCreateRequire } from "node:module";\nconst require = __annealCreateRequire(import.meta.url);` }
  })
  if (result.errors.length > 0) process.exit(1)
  // what was bundled, with each package's license text (MIT and the like ask for it to travel along)
  const bundledPackages = new Map()
  for (const input of Object.keys(result.metafile.inputs)) {
    const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input.slice(input.lastIndexOf("node_modules/")))
    if (m === null) continue
    const dir = path.resolve(root, input.slice(0, input.lastIndexOf("node_modules/")), "node_modules", m[1])
    if (!bundledPackages.has(dir)) bundledPackages.set(dir, m[1])
  }
  const notices = new Map()
  for (const [dir, name] of bundledPackages) {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"))
    const file = fs.readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f))
    const text = file === undefined ? `(no license file; package.json says ${pkg.license ?? "nothing"})` : fs.readFileSync(path.join(dir, file), "utf8").trim()
    notices.set(`${name}@${pkg.version}`, `${name}@${pkg.version} (${pkg.license ?? "?"})\n\n${text}\n`)
  }
  fs.writeFileSync(path.join(vendorDir, "LICENSES.txt"), `Packages bundled into this directory by anneal's build (scripts/build.js):\n\n${[...notices.keys()].sort().map((k) => notices.get(k)).join("\n" + "-".repeat(72) + "\n\n")}`)
  for (const file of outputs) {
    const mine = importsOf.get(file) ?? new Set()
    if (![...mine].some((spec) => vendored.has(spec))) continue
    const text = fs.readFileSync(file, "utf8")
    const rewritten = text.replace(importRe, (whole, lead, quote, spec) => {
      if (!vendored.has(spec) || !mine.has(spec)) return whole
      let rel = path.relative(path.dirname(file), vendorFile(spec)).split(path.sep).join("/")
      if (!rel.startsWith(".")) rel = `./${rel}`
      return `${lead}${quote}${rel}${quote}`
    })
    if (rewritten !== text) fs.writeFileSync(file, rewritten)
  }
}

// The declarations a user's tsc reads may name only packages the published package depends on.
const declared = new Set([...Object.keys(JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).dependencies ?? {})])
const strays = []
for (const file of walk(dist).filter((f) => f.endsWith(".d.ts"))) {
  for (const m of fs.readFileSync(file, "utf8").matchAll(importRe)) {
    const spec = m[3]
    if (!isBuiltin(spec) && spec !== "anneal" && !declared.has(packageOf(spec))) strays.push(`${path.relative(root, file)}: ${spec}`)
  }
}
if (strays.length > 0) {
  process.stderr.write(`anneal build: declarations name packages that are not dependencies of the published package:\n  ${strays.join("\n  ")}\n`)
  process.exit(1)
}

// ---- the start-up bundle (scripts/startup-bundle.js) --------------------------------------------------
const { buildStartupBundle } = await import("./startup-bundle.js")
// (silent: `npm pack --json` prints its JSON on the same stdout)
await buildStartupBundle({ root, dist, esbuild, external })

/**
 * `npm run build` (and `prepare`, so `npm pack`, `npm install <path>` and git URLs get it): compiles the
 * library and the CLI into dist/ (JavaScript + .d.ts, tsconfig.build.json), then copies every file the
 * code finds beside itself (Python workers, JSON) to the same relative place under dist/. Plain JS that
 * parses under any Node npm may run it with.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
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

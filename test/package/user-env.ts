/**
 * Running npm, npx and tsc the way a user at a shell would: with the machine's own Node and npm, none of
 * the environment `npm test` gives its children (npm_* variables would point npm at this repository,
 * and this repository's node_modules/.bin on PATH would put its Node 24 first), and argument arrays.
 * One difference: npm prefers its cache to the registry (npm_config_prefer_offline, below).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa } from "execa"

export const repoRoot = path.resolve(import.meta.dirname, "..", "..")

/** The variables npm sets for scripts, minus the cache location (the machine's cache makes installs quick). */
export const userEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue
    if (/^npm_/i.test(k) && !/^npm_config_(cache|registry|userconfig)$/i.test(k)) continue
    if (k === "INIT_CWD" || k === "NODE" || k === "NODE_OPTIONS" || k.startsWith("VITEST") || k === "TEST") continue
    env[k] = v
  }
  env.PATH = (process.env.PATH ?? "")
    .split(path.delimiter)
    .filter((p) => p !== "" && !p.includes(`${path.sep}node_modules${path.sep}`) && !p.endsWith(`${path.sep}node_modules`) && !p.startsWith(repoRoot))
    .join(path.delimiter)
  env.NO_COLOR = "1"
  // Packages already in the machine's npm cache are used without asking the registry again (halves
  // an install here: ~40 s instead of ~95 s under load); what gets installed is the same.
  env.npm_config_prefer_offline = "true"
  return env
}

export interface Ran {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
  readonly seconds: number
}

/** Runs argv in cwd as a user would; never throws on a non-zero exit (tests assert on it). */
export const sh = async (argv: ReadonlyArray<string>, cwd: string, env: Record<string, string> = {}): Promise<Ran> => {
  const started = performance.now()
  const r = await execa(argv[0]!, argv.slice(1), { cwd, env: { ...userEnv(), ...env }, extendEnv: false, reject: false, stdin: "ignore", timeout: 600_000 })
  return {
    exitCode: r.exitCode ?? -1,
    stdout: String(r.stdout),
    stderr: String(r.stderr),
    seconds: (performance.now() - started) / 1000
  }
}

/** A one-line-per-stream account of a command, for assertion messages. */
export const explain = (argv: ReadonlyArray<string>, r: Ran): string =>
  `$ ${argv.join(" ")} -> exit ${r.exitCode}\n--- stdout\n${r.stdout.slice(-4000)}\n--- stderr\n${r.stderr.slice(-4000)}`

export const tempDir = (prefix: string): string => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

/** npm's cache directory, where `npx` keeps the packages it installed for a command (_npx/). */
export const npmCacheDir = (): string => process.env.npm_config_cache ?? path.join(os.homedir(), ".npm")

/**
 * `npm pack` (whose `prepare` builds dist/) of a copy of this checkout: the working tree as git sees it
 * (tracked and untracked, not ignored), with node_modules linked, so the build never races with
 * anything else using the checkout's dist/. Returns the tarball's path.
 */
export const packCheckout = async (into: string): Promise<{ readonly ran: Ran; readonly tarball: string | undefined }> => {
  const listed = await sh(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], repoRoot)
  if (listed.exitCode !== 0) return { ran: listed, tarball: undefined }
  const copy = path.join(into, "checkout")
  for (const rel of listed.stdout.split("\0")) {
    if (rel === "" || !fs.existsSync(path.join(repoRoot, rel))) continue // deleted but not yet committed
    fs.mkdirSync(path.dirname(path.join(copy, rel)), { recursive: true })
    fs.copyFileSync(path.join(repoRoot, rel), path.join(copy, rel))
  }
  fs.symlinkSync(path.join(repoRoot, "node_modules"), path.join(copy, "node_modules"))
  const ran = await sh(["npm", "pack", "--json", "--pack-destination", into], copy)
  if (ran.exitCode !== 0) return { ran, tarball: undefined }
  const [info] = JSON.parse(ran.stdout.slice(ran.stdout.indexOf("["))) as Array<{ filename: string }>
  return { ran, tarball: path.join(into, info!.filename) }
}

/**
 * Builds the locked Python environment (see python.ts for where it lives). Idempotent: an environment
 * whose ready marker exists is left alone; a half-built one (no marker) is removed and rebuilt.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { lockFile, pythonEnvDir, readyMarker, uvVersion } from "./python.ts"

const run = async (argv: ReadonlyArray<string>, log: (line: string) => void): Promise<void> => {
  log(`$ ${argv.join(" ")}`)
  const { execa } = await import("execa")
  const r = await execa(argv[0]!, argv.slice(1), { reject: false, all: true, env: { UV_NO_PROGRESS: "1" } })
  if (r.exitCode !== 0) {
    const tail = (r.all ?? "").split("\n").slice(-15).join("\n")
    throw new Error(`${path.basename(argv[0]!)} failed (exit ${r.exitCode}):\n${tail}`)
  }
}

const findPython = async (): Promise<string> => {
  const { execa } = await import("execa")
  for (const candidate of [process.env.ANNEAL_BASE_PYTHON, "python3.11", "python3.12", "python3"]) {
    if (candidate === undefined) continue
    const r = await execa(candidate, ["-c", "import sys; print(sys.executable, *sys.version_info[:2])"], { reject: false })
    if (r.exitCode === 0) {
      const [exe, major, minor] = r.stdout.trim().split(" ")
      if (Number(major) === 3 && Number(minor) >= 10) return exe!
    }
  }
  throw new Error("no Python >= 3.10 found: install python3 (or set ANNEAL_BASE_PYTHON)")
}

/**
 * Set when the environment's site-packages are compiled to bytecode. uv installs without .pyc files,
 * and a worker then compiles torch, transformers and lm-eval from source on every start (or cannot cache
 * them where PYTHONDONTWRITEBYTECODE is set): 47 s of a 160 s eval of 12 questions was `compile`.
 */
const bytecodeMarker = (): string => path.join(pythonEnvDir(), ".anneal-bytecode")

const uvPath = (): string => path.join(path.dirname(pythonEnvDir()), `uv-${uvVersion}`, "bin", "uv")

export const setupPythonEnv = async (log: (line: string) => void, options: { force?: boolean } = {}): Promise<string> => {
  const envDir = pythonEnvDir()
  if (fs.existsSync(readyMarker()) && options.force !== true) {
    if (!fs.existsSync(bytecodeMarker()) && fs.existsSync(uvPath())) {
      // an environment built before bytecode was compiled at install: compile it once now
      log("compiling the Python environment's bytecode (once)")
      await run([uvPath(), "pip", "sync", "-q", "--compile-bytecode", "--python", path.join(envDir, "bin", "python"), lockFile], log)
      fs.writeFileSync(bytecodeMarker(), new Date().toISOString() + "\n")
    }
    log(`Python environment ready: ${envDir}`)
    return envDir
  }
  const base = await findPython()
  const cache = path.dirname(envDir)
  fs.mkdirSync(cache, { recursive: true })
  const uvDir = path.join(cache, `uv-${uvVersion}`)
  const uv = path.join(uvDir, "bin", "uv")
  if (!fs.existsSync(uv)) {
    fs.rmSync(uvDir, { recursive: true, force: true })
    await run([base, "-m", "venv", uvDir], log)
    await run([path.join(uvDir, "bin", "python"), "-m", "pip", "install", "-q", `uv==${uvVersion}`], log)
  }
  fs.rmSync(envDir, { recursive: true, force: true })
  await run([uv, "venv", "-q", "--python", base, envDir], log)
  await run([uv, "pip", "sync", "-q", "--compile-bytecode", "--python", path.join(envDir, "bin", "python"), lockFile], log)
  fs.writeFileSync(bytecodeMarker(), new Date().toISOString() + "\n")
  fs.writeFileSync(readyMarker(), new Date().toISOString() + "\n")
  log(`Python environment ready: ${envDir}`)
  return envDir
}

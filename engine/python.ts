/**
 * The Python environment GPU and ML steps run in. It lives outside the clone, in a cache directory
 * keyed by the hash of python/requirements.lock, so it is built once per machine (torch is a 3-4 GB
 * download) and a lock change builds a fresh one beside it. `anneal setup` builds it; `ANNEAL_PYTHON`
 * points at another interpreter instead.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { CommandSpec } from "./step.ts"

/** The directory holding package.json: `python/` and `bin/` live there (above engine/, or above dist/engine/ once built). */
const packageRootFrom = (dir: string): string =>
  fs.existsSync(path.join(dir, "package.json")) || path.dirname(dir) === dir ? dir : packageRootFrom(path.dirname(dir))
export const projectRoot = packageRootFrom(path.resolve(path.dirname(fileURLToPath(import.meta.url)), ".."))
export const lockFile = path.join(projectRoot, "python", "requirements.lock")
/** uv, the installer, pinned; it is installed into a small bootstrap venv beside the environments */
export const uvVersion = "0.13.9"

const cacheRoot = (): string =>
  process.env.ANNEAL_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "anneal")

export const lockHash = (): string =>
  createHash("sha256").update(fs.readFileSync(lockFile)).digest("hex").slice(0, 16)

export const pythonEnvDir = (): string => path.join(cacheRoot(), `python-${lockHash()}`)

export const pythonExecutable = (): string => process.env.ANNEAL_PYTHON ?? path.join(pythonEnvDir(), "bin", "python")

/** The marker written last by `anneal setup`: an environment without it is incomplete. */
export const readyMarker = (): string => path.join(pythonEnvDir(), ".anneal-ready")

export class PythonEnvMissing extends Error {
  readonly _tag = "PythonEnvMissing"
}

export const checkPythonEnv = (): string => {
  const python = pythonExecutable()
  if (process.env.ANNEAL_PYTHON !== undefined) {
    if (!fs.existsSync(python)) throw new PythonEnvMissing(`ANNEAL_PYTHON=${python} does not exist`)
    return python
  }
  if (!fs.existsSync(python) || !fs.existsSync(readyMarker())) {
    throw new PythonEnvMissing(
      `the Python environment for this lock file is not installed (${pythonEnvDir()}): run \`npx anneal setup\``
    )
  }
  return python
}

/** Where the project's Python packages live (anneal_worker), for PYTHONPATH. */
export const pythonPath = (): string => path.join(projectRoot, "python")

/**
 * A command implementation for a Python worker script: `python SCRIPT SPEC.json`, with the project's
 * worker runtime on PYTHONPATH and the Hugging Face hub kept offline (nothing is ever downloaded).
 */
export const pythonWorker = (script: string) => (ctx: { readonly specPath: string }): CommandSpec => ({
  argv: [checkPythonEnv(), script, ctx.specPath],
  env: pythonEnvVars()
})

/**
 * PYTHONHASHSEED is fixed so that set and dict-of-set orders are the same in every worker process:
 * PEFT writes its target modules from a set, so with a random hash seed two runs of one sft-lora step
 * gave adapter_config.json files that differed in order (and artifacts that never cut off early), and
 * a worker forked from the warm process would differ from a cold one.
 */
export const pythonEnvVars = (): Record<string, string> => ({
  PYTHONHASHSEED: "0",
  PYTHONPATH: [pythonPath(), process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
  PYTHONUNBUFFERED: "1",
  HF_HUB_OFFLINE: "1",
  HF_DATASETS_OFFLINE: "1",
  TRANSFORMERS_OFFLINE: "1",
  TOKENIZERS_PARALLELISM: "false",
  HF_HUB_DISABLE_TELEMETRY: "1"
})

/**
 * llama.cpp, built from source once per machine: the converter (convert_hf_to_gguf.py with its own
 * gguf-py) and the tools the quantize and eval steps and the tests run (llama-quantize, llama-server,
 * llama-perplexity, llama-simple, llama-completion).
 *
 * The source comes from PyPI: the sdist of llama-cpp-python vendors llama.cpp at a pinned commit under
 * vendor/llama.cpp, and PyPI is a registry every machine here reaches (GitHub is not). pip downloads
 * it (its ordinary client), its sha256 is checked against the pin, and cmake builds the tools into
 * `${ANNEAL_CACHE_DIR:-~/.cache/anneal}/llama-cpp-<version>/`, outside the clone and keyed by version,
 * so a clone, a rerun or a second checkout reuses it and a version bump builds beside it.
 *
 * `anneal setup --with llama-cpp` builds it (npm test does); a step that needs it and finds it missing
 * fails at once with that command in its message rather than compiling for 20+ minutes inside a step
 * (see steps/quantize). The build is native (-march=native: 2-4x faster k-quant kernels than a portable
 * build); the marker records the CPU flags it was built for, and a machine with other flags rebuilds.
 * Concurrent setups take a lock (a directory holding the builder's pid): one builds, the others wait.
 *
 * One more tool is anneal's own: `llama-loglik` (llama-loglik.cpp beside this file), which the eval
 * step uses to score GGUF models with llama.cpp. It is compiled against the build's static libraries
 * (libllama.a, libggml*.a) into the same bin/, in seconds, and keyed by its source, the llama.cpp commit
 * and the CPU flags (bin/llama-loglik.key): editing the .cpp rebuilds this one tool, never llama.cpp.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The llama-cpp-python sdist that carries llama.cpp; bump both together (and the quantize step's version). */
export const llamaCppPythonVersion = "0.3.36"
const sdistSha256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
/** The llama.cpp commit vendored by that sdist (from its .git/modules/vendor/llama.cpp/HEAD). */
export const llamaCppCommit = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"

export const llamaCppTools = ["llama-quantize", "llama-server", "llama-perplexity", "llama-simple", "llama-completion"] as const
export type LlamaCppTool = (typeof llamaCppTools)[number]

export interface LlamaCpp {
  readonly dir: string
  readonly version: string
  readonly commit: string
  /** absolute paths of the built tools */
  readonly bin: Readonly<Record<LlamaCppTool, string>>
  /** llama.cpp's own HF -> GGUF converter; run it with the anneal Python (torch, transformers) */
  readonly convertScript: string
  /** the gguf-py package matching this converter (the converter puts it on sys.path itself) */
  readonly ggufPy: string
}

export class LlamaCppMissing extends Error {
  readonly _tag = "LlamaCppMissing"
}

const cacheRoot = (): string =>
  process.env.ANNEAL_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "anneal")

export const llamaCppDir = (): string => path.join(cacheRoot(), `llama-cpp-${llamaCppPythonVersion}`)
const readyMarker = (dir: string): string => path.join(dir, ".anneal-ready")

/** The CPU flags a -march=native build depends on (x86 `flags`, arm `Features`); "" where unknown. */
const cpuFlags = (): string => {
  try {
    const info = fs.readFileSync("/proc/cpuinfo", "utf8")
    const line = info.split("\n").find((l) => /^(flags|Features)\s*:/.test(l)) ?? ""
    return createHash("sha256").update(line.split(":")[1]?.trim().split(/\s+/).sort().join(" ") ?? "").digest("hex").slice(0, 16)
  } catch {
    return ""
  }
}

const layout = (dir: string): LlamaCpp => ({
  dir,
  version: llamaCppPythonVersion,
  commit: llamaCppCommit,
  bin: Object.fromEntries(llamaCppTools.map((t) => [t, path.join(dir, "bin", t)])) as Record<LlamaCppTool, string>,
  convertScript: path.join(dir, "src", "convert_hf_to_gguf.py"),
  ggufPy: path.join(dir, "src", "gguf-py")
})

/** The installed build, or undefined when it is missing, half-built, or built for another CPU. */
export const findLlamaCpp = (): LlamaCpp | undefined => {
  const dir = llamaCppDir()
  let marker: { cpu?: string; commit?: string }
  try {
    marker = JSON.parse(fs.readFileSync(readyMarker(dir), "utf8")) as { cpu?: string; commit?: string }
  } catch {
    return undefined
  }
  const found = layout(dir)
  if (marker.commit !== llamaCppCommit || marker.cpu !== cpuFlags()) return undefined
  if (!Object.values(found.bin).every((f) => fs.existsSync(f)) || !fs.existsSync(found.convertScript)) return undefined
  return found
}

/** The installed build, or a LlamaCppMissing naming the command that installs it. */
export const requireLlamaCpp = (who: string): LlamaCpp => {
  const found = findLlamaCpp()
  if (found === undefined) {
    throw new LlamaCppMissing(
      `${who} needs llama.cpp ${llamaCppCommit.slice(0, 8)} (from llama-cpp-python ${llamaCppPythonVersion}), which is not built on this machine (${llamaCppDir()}): run \`npx anneal setup --with llama-cpp\` (a one-time build, 20-60 minutes on 2 cores)`
    )
  }
  return found
}

const run = async (argv: ReadonlyArray<string>, log: (line: string) => void, cwd?: string): Promise<void> => {
  log(`$ ${argv.join(" ")}`)
  const { execa } = await import("execa")
  const r = await execa(argv[0]!, argv.slice(1), { reject: false, all: true, cwd, env: { PIP_DISABLE_PIP_VERSION_CHECK: "1" } })
  if (r.exitCode !== 0) {
    const tail = (r.all ?? "").split("\n").slice(-20).join("\n")
    throw new Error(`llama.cpp setup: ${path.basename(argv[0]!)} failed (exit ${r.exitCode ?? r.signal}):\n${tail}`)
  }
}

/** The anneal-owned scorer's source, compiled into bin/llama-loglik by ensureLlamaLoglik. */
export const llamaLoglikSource = path.join(path.dirname(fileURLToPath(import.meta.url)), "llama-loglik.cpp")

const loglikKey = (): string =>
  createHash("sha256").update(fs.readFileSync(llamaLoglikSource)).update(`\0${llamaCppCommit}\0${cpuFlags()}`).digest("hex")

/** bin/llama-loglik when it is built from the current source against this build, else undefined. */
export const findLlamaLoglik = (llama: LlamaCpp | undefined = findLlamaCpp()): string | undefined => {
  if (llama === undefined) return undefined
  const bin = path.join(llama.dir, "bin", "llama-loglik")
  try {
    return fs.readFileSync(`${bin}.key`, "utf8").trim() === loglikKey() && fs.existsSync(bin) ? bin : undefined
  } catch {
    return undefined
  }
}

/** bin/llama-loglik built from the current source, or a LlamaCppMissing naming the command that builds it. */
export const requireLlamaLoglik = (who: string, llama: LlamaCpp = requireLlamaCpp(who)): string => {
  const found = findLlamaLoglik(llama)
  if (found === undefined) {
    throw new LlamaCppMissing(`${who} needs llama-loglik built from ${path.basename(llamaLoglikSource)} against llama.cpp on this machine: run \`npx anneal setup --with llama-cpp\` (seconds, once llama.cpp is built)`)
  }
  return found
}

/**
 * Compiles llama-loglik.cpp against the static libraries of an existing llama.cpp build (seconds), unless
 * the binary there is already built from this source. Never rebuilds llama.cpp itself.
 */
export const ensureLlamaLoglik = async (llama: LlamaCpp, log: (line: string) => void = () => {}): Promise<string> => {
  const ready = findLlamaLoglik(llama)
  if (ready !== undefined) return ready
  const bin = path.join(llama.dir, "bin", "llama-loglik")
  return withLock(bin, log, async () => {
    const again = findLlamaLoglik(llama)
    if (again !== undefined) return again
    const build = path.join(llama.dir, "build")
    const src = path.join(llama.dir, "src")
    const libs = [
      path.join(build, "src", "libllama.a"),
      ...["libggml.a", "libggml-cpu.a", "libggml-base.a"].map((l) => path.join(build, "ggml", "src", l))
    ]
    const missing = libs.filter((l) => !fs.existsSync(l))
    if (missing.length > 0) {
      throw new Error(`llama.cpp setup: llama-loglik needs the static libraries of the llama.cpp build, missing: ${missing.join(", ")} (rebuild with \`npx anneal setup --with llama-cpp --force\`)`)
    }
    const tmp = `${bin}.partial`
    const nice = (await which("nice")) ? ["nice", "-n", "10"] : []
    await run([
      ...nice, "c++", "-std=c++17", "-O2",
      "-I", path.join(src, "include"), "-I", path.join(src, "ggml", "include"), "-I", path.join(src, "vendor"),
      llamaLoglikSource, "-o", tmp, ...libs, "-fopenmp", "-lpthread", "-ldl", "-lm"
    ], log)
    fs.chmodSync(tmp, 0o755)
    fs.renameSync(tmp, bin)
    fs.writeFileSync(`${bin}.key`, loglikKey() + "\n")
    log(`llama-loglik ready: ${bin}`)
    return bin
  })
}

const which = async (cmd: string): Promise<boolean> =>
  (await (await import("execa")).execa("sh", ["-c", 'command -v "$1"', "sh", cmd], { reject: false })).exitCode === 0

/** A Python with pip: the uv bootstrap venv `anneal setup` made, else the system's. */
const pipPython = async (): Promise<string> => {
  const { execa } = await import("execa")
  const candidates = [path.join(cacheRoot(), "uv-0.13.9", "bin", "python"), "python3", "python"]
  for (const c of candidates) {
    if (c.includes(path.sep) && !fs.existsSync(c)) continue
    if ((await execa(c, ["-m", "pip", "--version"], { reject: false })).exitCode === 0) return c
  }
  throw new Error("llama.cpp setup: no Python with pip found to download the llama-cpp-python sdist (install python3-pip)")
}

const sha256File = (file: string): string => createHash("sha256").update(fs.readFileSync(file)).digest("hex")

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Holds `dir.lock` (mkdir is atomic) while `f` runs; a lock whose pid is gone is taken over. */
const withLock = async <A>(dir: string, log: (line: string) => void, f: () => Promise<A>): Promise<A> => {
  const lock = `${dir}.lock`
  fs.mkdirSync(path.dirname(dir), { recursive: true })
  let told = false
  for (;;) {
    try {
      fs.mkdirSync(lock)
      fs.writeFileSync(path.join(lock, "pid"), String(process.pid))
      break
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
      const pid = Number(fs.readFileSync(path.join(lock, "pid"), { encoding: "utf8", flag: "a+" }))
      if (pid > 0 && !pidAlive(pid)) {
        fs.rmSync(lock, { recursive: true, force: true })
        continue
      }
      if (!told) log(`llama.cpp: another process (pid ${pid || "?"}) is building it; waiting`)
      told = true
      await sleep(2000)
    }
  }
  try {
    return await f()
  } finally {
    fs.rmSync(lock, { recursive: true, force: true })
  }
}

/**
 * Builds llama.cpp unless a matching build is there (idempotent); returns where everything is.
 * A half-done build (no marker) is resumed: cmake rebuilds only what is missing.
 */
export const ensureLlamaCpp = async (log: (line: string) => void = () => {}, options: { force?: boolean } = {}): Promise<LlamaCpp> => {
  const ready = options.force === true ? undefined : findLlamaCpp()
  if (ready !== undefined) {
    log(`llama.cpp ready: ${ready.dir}`)
    await ensureLlamaLoglik(ready, log)
    return ready
  }
  const dir = llamaCppDir()
  const built = await withLock(dir, log, async () => {
    const again = options.force === true ? undefined : findLlamaCpp()
    if (again !== undefined) return again
    for (const tool of ["cmake", "c++"]) {
      if (!(await which(tool))) throw new Error(`llama.cpp setup: \`${tool}\` is not installed (apt-get install cmake g++)`)
    }
    fs.rmSync(readyMarker(dir), { force: true })
    const src = path.join(dir, "src")
    if (!fs.existsSync(path.join(src, "CMakeLists.txt")) || options.force === true) {
      const download = path.join(dir, "download")
      fs.rmSync(download, { recursive: true, force: true })
      fs.mkdirSync(download, { recursive: true })
      await run([
        await pipPython(), "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
        `llama-cpp-python==${llamaCppPythonVersion}`, "-d", download
      ], log)
      const sdist = path.join(download, `llama_cpp_python-${llamaCppPythonVersion}.tar.gz`)
      if (!fs.existsSync(sdist)) throw new Error(`llama.cpp setup: pip did not leave ${sdist}`)
      const got = sha256File(sdist)
      if (got !== sdistSha256) throw new Error(`llama.cpp setup: ${sdist} has sha256 ${got}, expected ${sdistSha256}`)
      fs.rmSync(src, { recursive: true, force: true })
      const staging = path.join(dir, "src.partial")
      fs.rmSync(staging, { recursive: true, force: true })
      fs.mkdirSync(staging)
      await run(["tar", "-xzf", sdist, "-C", staging, "--strip-components=3", `llama_cpp_python-${llamaCppPythonVersion}/vendor/llama.cpp`], log)
      fs.renameSync(staging, src)
      fs.rmSync(download, { recursive: true, force: true })
    }
    const build = path.join(dir, "build")
    const nice = (await which("nice")) ? ["nice", "-n", "10"] : []
    const generator = (await which("ninja")) ? ["-G", "Ninja"] : []
    await run([
      ...nice, "cmake", "-S", src, "-B", build, ...generator, "-DCMAKE_BUILD_TYPE=Release",
      // no network at build time: no prebuilt web UI download, no HTTPS/curl model fetching
      "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
      "-DLLAMA_BUILD_TESTS=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DGGML_NATIVE=ON"
    ], log)
    const jobs = String(Math.max(1, os.availableParallelism()))
    await run([...nice, "cmake", "--build", build, "-j", jobs, "--target", ...llamaCppTools], log)
    const found = layout(dir)
    fs.mkdirSync(path.join(dir, "bin"), { recursive: true })
    for (const tool of llamaCppTools) {
      const tmp = `${found.bin[tool]}.partial`
      fs.copyFileSync(path.join(build, "bin", tool), tmp)
      fs.chmodSync(tmp, 0o755)
      fs.renameSync(tmp, found.bin[tool])
    }
    fs.writeFileSync(readyMarker(dir), JSON.stringify({
      version: llamaCppPythonVersion, commit: llamaCppCommit, cpu: cpuFlags(), builtAt: new Date().toISOString()
    }) + "\n")
    log(`llama.cpp ready: ${dir}`)
    return found
  })
  await ensureLlamaLoglik(built, log)
  return built
}

/**
 * Running training workers by hand, the way the local executor does: params decoded by the step's
 * Schema and encoded back (defaults filled in), a spec JSON in a temp dir, the step's own command
 * (so the torchrun path is the real one), protocol lines parsed from stdout.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { execa, type ResultPromise } from "execa"
import { Schema } from "effect"
import { checkPythonEnv, projectRoot, pythonEnvVars } from "../../../engine/python.ts"
import type { StepDefinition } from "../../../engine/step.ts"

export const here = path.join(projectRoot, "test", "steps", "train")
export const tempDir = (prefix = "anneal-train-"): string => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

/**
 * A directory built once per test run (under the suite's temp dir) and shared by the test files that need
 * it: the first file to take the lock (a directory holding its pid) builds a staging copy and renames it
 * into place; the others wait for it to appear; a holder that died leaves the lock to the next.
 */
export const buildOnce = async (dir: string, build: (staging: string) => Promise<void>): Promise<string> => {
  const lock = `${dir}.lock`
  for (;;) {
    if (fs.existsSync(dir)) return dir
    try {
      fs.mkdirSync(lock)
    } catch {
      let holder = 0
      try {
        holder = Number(fs.readFileSync(path.join(lock, "pid"), "utf8"))
      } catch {
        // the holder has not written its pid yet
      }
      let alive = true
      if (holder > 0) {
        try {
          process.kill(holder, 0)
        } catch {
          alive = false
        }
      }
      if (!alive) fs.rmSync(lock, { recursive: true, force: true })
      else await new Promise((r) => setTimeout(r, 250))
      continue
    }
    try {
      fs.writeFileSync(path.join(lock, "pid"), String(process.pid))
      if (fs.existsSync(dir)) return dir
      const staging = tempDir(`${path.basename(dir)}-staging-`)
      try {
        await build(staging)
        fs.renameSync(staging, dir)
      } catch (e) {
        fs.rmSync(staging, { recursive: true, force: true })
        throw e
      }
      return dir
    } finally {
      fs.rmSync(lock, { recursive: true, force: true })
    }
  }
}

export interface WorkerRun {
  readonly exitCode: number | undefined
  readonly signal: string | undefined
  readonly lines: ReadonlyArray<Record<string, any>>
  readonly metrics: Record<string, number | string>
  readonly stderr: string
  readonly output: string
  /** the error line the worker reported with `fail`, if any */
  readonly error: string | undefined
}

export interface WorkerOptions {
  readonly inputs: Record<string, string | ReadonlyArray<string>>
  readonly params?: Record<string, unknown>
  /** params written into the spec as they are, bypassing the Schema (to test the worker's own checks) */
  readonly rawParams?: Record<string, unknown>
  readonly output?: string
  readonly resumeDir?: string
  /** called with each protocol line as it arrives; may kill the child */
  readonly onLine?: (line: Record<string, any>, child: ResultPromise) => void
  /** polled every 200 ms while the worker runs */
  readonly poll?: (child: ResultPromise) => void
}

/** Encodes params the way the engine writes them into a spec: decoded (defaults filled), encoded back. */
export const specParams = (step: { readonly definition: unknown }, raw: unknown): Record<string, unknown> => {
  const def = step.definition as StepDefinition
  const codec = def.params as Schema.Codec<unknown, unknown>
  const decoded = Schema.decodeUnknownSync(codec, { onExcessProperty: "error" })(raw)
  return Schema.encodeSync(codec)(decoded) as Record<string, unknown>
}

export const runWorker = async (step: { readonly definition: unknown }, opts: WorkerOptions): Promise<WorkerRun> => {
  const def = step.definition as StepDefinition
  const dir = tempDir()
  const output = opts.output ?? path.join(dir, "output")
  fs.mkdirSync(output, { recursive: true })
  const params = opts.rawParams ?? specParams(step, opts.params ?? {})
  // the CPU slots the scheduler would grant (one per process for multi-process training)
  const resources = typeof def.resources === "function" ? def.resources(params) : def.resources
  const cpus = resources?.cpus ?? 1
  const spec = {
    specVersion: 1, runId: 1, step: def.kind, kind: def.kind, version: def.version, key: "test", params,
    inputs: opts.inputs, inputHashes: {}, output, resumeDir: opts.resumeDir ?? path.join(dir, "resume"),
    logPath: path.join(dir, "log"), devices: { gpus: [], cpus }, seed: params.seed, recipe: "",
    implementation: { type: "ts" }
  }
  fs.mkdirSync(spec.resumeDir, { recursive: true })
  const specPath = path.join(dir, "spec.json")
  fs.writeFileSync(specPath, JSON.stringify(spec))
  const impl = def.implementation
  if (impl.command === undefined) throw new Error(`${def.kind} is not a command step`)
  const cmd = impl.command({ params, specPath, step: def.kind, gpus: [], cpus })
  const child = execa(cmd.argv[0]!, cmd.argv.slice(1), {
    env: { ...cmd.env, CUDA_VISIBLE_DEVICES: "" }, reject: false, buffer: { stdout: false, stderr: true },
    stdout: "pipe", stdin: "ignore"
  })
  const lines: Array<Record<string, any>> = []
  let pending = ""
  child.stdout!.on("data", (chunk: Buffer) => {
    pending += chunk.toString("utf8")
    let nl: number
    while ((nl = pending.indexOf("\n")) >= 0) {
      const text = pending.slice(0, nl)
      pending = pending.slice(nl + 1)
      try {
        const line = JSON.parse(text) as Record<string, any>
        lines.push(line)
        opts.onLine?.(line, child)
      } catch {
        // not a protocol line
      }
    }
  })
  const timer = opts.poll ? setInterval(() => opts.poll!(child), 200) : undefined
  const r = await child
  if (timer) clearInterval(timer)
  const metrics: Record<string, number | string> = {}
  for (const l of lines) if (l.type === "metric") metrics[l.name] = l.value
  const error = lines.find((l) => l.type === "log" && l.level === "error")?.message as string | undefined
  return {
    exitCode: r.exitCode, signal: r.signal ?? undefined, lines, metrics, stderr: String(r.stderr ?? ""), output, error
  }
}

/** Runs a Python snippet file or module in the project's environment; returns stdout, throws on failure. */
export const python = async (args: ReadonlyArray<string>): Promise<string> => {
  const r = await execa(checkPythonEnv(), args, { env: pythonEnvVars(), reject: false })
  if (r.exitCode !== 0) throw new Error(`python ${args.join(" ")} failed:\n${String(r.stderr).slice(-3000)}`)
  return String(r.stdout)
}

/**
 * Tiny fixtures (datasets, tokenizer, 2-layer Llama), built once per test run and version of
 * make_fixtures.py: test files share them (they only read them), which saves a Python start-up each;
 * a file that asks while another builds them waits for that build (buildOnce).
 */
export const makeFixtures = async (): Promise<string> => {
  const script = path.join(here, "make_fixtures.py")
  const hash = createHash("sha256").update(fs.readFileSync(script)).digest("hex").slice(0, 12)
  return buildOnce(path.join(os.tmpdir(), `anneal-train-fixtures-${hash}`), async (staging) => {
    await python([script, staging])
  })
}

/**
 * A training step's 1-process run with microBatchSize 4 (the global batch the 2-process tests split as
 * 2 x 2), made once per test run and shared by the files that compare a distributed run with it:
 * distributed.test.ts, and ray.test.ts and slurm.test.ts (test/executors/dist-training.ts) ask for the
 * same sft-lora reference, often at the same time.
 */
export const singleProcessReference = (
  step: { readonly definition: unknown },
  inputs: Record<string, string>,
  params: Record<string, unknown>
): Promise<string> => {
  const label = JSON.stringify([(step.definition as StepDefinition).kind, inputs, params])
  return buildOnce(path.join(os.tmpdir(), `anneal-dist-reference-${createHash("sha256").update(label).digest("hex").slice(0, 16)}`), async (staging) => {
    const r = await runWorker(step, { inputs, params: { ...params, microBatchSize: 4 } })
    if (r.exitCode !== 0) throw new Error(`the 1-process reference failed: ${r.error ?? r.stderr.slice(-2000)}`)
    fs.cpSync(r.output, staging, { recursive: true })
  })
}

/** Model inspection helpers (model_tools.py): tensor diffs, generation, preference margins. */
export const modelTools = async (...args: ReadonlyArray<string>): Promise<any> =>
  JSON.parse((await python([path.join(here, "model_tools.py"), ...args])).trim().split("\n").at(-1)!)

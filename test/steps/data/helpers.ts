/** Running a data step by hand: params decoded as the engine does, temp dirs for inputs and output. */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Schema } from "effect"
import { runImplementation, type StepDefinition } from "../../../engine/step.ts"

export const tempDir = (prefix = "anneal-data-"): string => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

/** A digest of every file below dir (names and bytes): equal digests, equal artifact hashes. */
export const treeDigest = (dir: string): string => {
  const h = createHash("sha256")
  const walk = (rel: string): void => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = path.join(rel, name)
      if (fs.statSync(path.join(dir, r)).isDirectory()) walk(r)
      else h.update(`${r}\0`).update(fs.readFileSync(path.join(dir, r))).update("\0")
    }
  }
  walk("")
  return h.digest("hex")
}

/** Six instruction rows, two of them paraphrases of others: the smallest data the semantic steps remove from. */
export const paraphraseRows = [
  { instruction: "How do I reverse a list in Python?", output: "Use reversed()." },
  { instruction: "What is the capital of France?", output: "Paris." },
  { instruction: "What is the way to reverse a Python list?", output: "Call my_list.reverse() to reverse it in place, or use slicing: my_list[::-1]." },
  { instruction: "How many legs does a spider have?", output: "Eight." },
  { instruction: "Which city is the capital of France?", output: "The capital of France is Paris." },
  { instruction: "How do I sort a list in Python?", output: "Use sorted()." }
]

export const writeJsonl = (file: string, rows: ReadonlyArray<unknown>): string => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, rows.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n")
  return file
}

export const readJsonlFile = (file: string): Array<any> =>
  fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim().length > 0).map((l) => JSON.parse(l))

export interface StepRun {
  readonly output: string
  readonly metrics: Record<string, number | string>
  readonly logs: Array<string>
  readonly rows: Array<any>
  readonly report: any
}

/** Runs a TS step's implementation the way the local executor does. */
/** What a finished step left: its rows, its report.json, and what it reported while running. */
const stepOutcome = (output: string, metrics: Record<string, number | string>, logs: Array<string>, readRows = true) => {
  const data = path.join(output, "data.jsonl")
  const reportFile = path.join(output, "report.json")
  return {
    output,
    metrics,
    logs,
    rows: readRows && fs.existsSync(data) ? readJsonlFile(data) : [],
    report: fs.existsSync(reportFile) ? JSON.parse(fs.readFileSync(reportFile, "utf8")) : undefined
  }
}

export const runStep = async (
  step: { readonly definition: unknown },
  inputs: Record<string, string | ReadonlyArray<string>>,
  rawParams: unknown = {},
  /** rows: false leaves `rows` empty (a benchmark on a big corpus must not hold it in memory) */
  options: { readonly cpus?: number; readonly seed?: number; readonly rows?: boolean } = {}
): Promise<StepRun> => {
  const def = step.definition as StepDefinition
  const params = Schema.decodeUnknownSync(def.params as Schema.Codec<unknown, unknown>, { onExcessProperty: "error" })(
    rawParams
  )
  const output = tempDir("anneal-out-")
  const metrics: Record<string, number | string> = {}
  const logs: Array<string> = []
  const ctx = {
    step: def.kind,
    key: "test",
    params,
    inputs,
    output,
    resumeDir: tempDir("anneal-resume-"),
    gpus: [],
    cpus: options.cpus ?? 1,
    seed: options.seed ?? 0,
    signal: new AbortController().signal,
    progress: () => {},
    metric: (name: string, value: number | string) => {
      metrics[name] = value
    },
    log: (m: string) => {
      logs.push(m)
    }
  }
  await Effect.runPromise(runImplementation(def, ctx as never))
  return stepOutcome(output, metrics, logs, options.rows !== false)
}

/** The message of the error a promise rejects with (Effect wraps thrown errors; this digs them out). */
export const errorOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p
  } catch (e) {
    return messageOf(e)
  }
  throw new Error("expected an error, but the step succeeded")
}

const messageOf = (e: unknown): string => {
  let cur: any = e
  for (let i = 0; i < 5 && cur !== undefined; i++) {
    if (cur?._tag === "DatasetError" || (cur instanceof Error && !/^An error has occurred|UnknownError/.test(cur.message))) {
      return cur.message
    }
    cur = cur.cause ?? cur.error
  }
  return String(e instanceof Error ? e.message : e)
}

/**
 * Runs a command step (a Python worker) the way the local executor does: writes the spec JSON, runs
 * the argument array with the step's env, collects metric lines; a non-zero exit throws the worker's
 * last error line.
 */
export const runCommandStep = async (
  step: { readonly definition: unknown },
  inputs: Record<string, string | ReadonlyArray<string>>,
  rawParams: unknown = {},
  options: { readonly cpus?: number } = {}
): Promise<StepRun> => {
  const { execa } = await import("execa")
  const cpus = options.cpus ?? 1
  const def = step.definition as StepDefinition
  const codec = def.params as Schema.Codec<unknown, unknown>
  const decoded = Schema.decodeUnknownSync(codec, { onExcessProperty: "error" })(rawParams)
  const params = Schema.encodeSync(codec)(decoded) as Record<string, unknown>
  const work = tempDir("anneal-cmd-")
  const output = path.join(work, "out")
  fs.mkdirSync(output)
  const specPath = path.join(work, "spec.json")
  const spec = {
    specVersion: 1, runId: 1, step: def.kind, kind: def.kind, version: def.version, key: "test", params, inputs,
    inputHashes: {}, output, resumeDir: path.join(work, "resume"), logPath: path.join(work, "log"),
    devices: { gpus: [], cpus }, seed: 0, recipe: "", implementation: { type: "command" }
  }
  fs.writeFileSync(specPath, JSON.stringify(spec))
  const impl = def.implementation
  if (impl.command === undefined) throw new Error(`${def.kind} is not a command step`)
  const cmd = impl.command({ params: decoded, specPath, step: def.kind, gpus: [], cpus })
  const res = await execa(cmd.argv[0]!, cmd.argv.slice(1), { env: { ...process.env, ...cmd.env }, reject: false, all: false })
  const metrics: Record<string, number | string> = {}
  const logs: Array<string> = []
  for (const line of res.stdout.split("\n")) {
    if (!line.startsWith("{")) continue
    const ev = JSON.parse(line)
    if (ev.type === "metric") metrics[ev.name] = ev.value
    if (ev.type === "log") logs.push(ev.message)
  }
  if (res.exitCode !== 0) {
    const last = res.stderr.split("\n").filter((l) => l.trim().length > 0).slice(-1)[0] ?? `exit ${res.exitCode}`
    throw new Error(last)
  }
  return stepOutcome(output, metrics, logs)
}

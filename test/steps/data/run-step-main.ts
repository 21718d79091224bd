/**
 * Runs one data step in its own process, for tests that kill it: `node --import tsx run-step-main.ts
 * <kind> <inputs.json> <params.json> <output> <resumeDir> <cpus>`.
 */
import * as fs from "node:fs"
import { Effect, Schema } from "effect"
import { runImplementation, type StepDefinition } from "../../../engine/step.ts"
import * as steps from "../../../steps/data/index.ts"

const [kind, inputs, params, output, resumeDir, cpus] = process.argv.slice(2)
const step = Object.values(steps).find((s) => (s as { definition?: { kind?: string } }).definition?.kind === kind) as { definition: StepDefinition }
const def = step.definition
fs.mkdirSync(output!, { recursive: true })
const ctx = {
  step: kind, key: "test", params: Schema.decodeUnknownSync(def.params as Schema.Codec<unknown, unknown>)(JSON.parse(params!)),
  inputs: JSON.parse(inputs!), output, resumeDir, gpus: [], cpus: Number(cpus), seed: 0,
  signal: new AbortController().signal, progress: () => {}, metric: () => {}, log: (m: string) => process.stderr.write(`${m}\n`)
}
await Effect.runPromise(runImplementation(def, ctx as never))

/**
 * A training step's spec as the engine writes it (params decoded and encoded back with defaults, the
 * step's own command, ANNEAL_SPEC), in a fresh temp dir: to run it through an executor, as the warm
 * worker tests and bench/python-startup.ts do.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { StepSpec } from "../../../engine/spec.ts"
import type { StepDefinition } from "../../../engine/step.ts"
import { specParams, tempDir } from "./helpers.ts"

export const trainingSpec = (
  step: { readonly definition: unknown },
  inputs: Record<string, unknown>,
  params: Record<string, unknown>,
  resumeDir?: string
): StepSpec => {
  const def = step.definition as StepDefinition
  const dir = tempDir("anneal-warm-")
  const encoded = specParams(step, params)
  const specPath = path.join(dir, "spec.json")
  const cmd = def.implementation.command!({ params: encoded, specPath, step: def.kind, gpus: [], cpus: 1 } as never)
  const spec: StepSpec = {
    specVersion: 1, runId: 1, step: def.kind, kind: def.kind, version: def.version, key: "warm-test", params: encoded,
    inputs: inputs as never, inputHashes: {}, output: path.join(dir, "output"), resumeDir: resumeDir ?? path.join(dir, "resume"),
    logPath: path.join(dir, "log"), devices: { gpus: [], cpus: 1 }, seed: Number(encoded.seed ?? 0), recipe: "",
    implementation: { type: "command", argv: cmd.argv, env: { ...cmd.env, ANNEAL_SPEC: specPath } }
  }
  for (const d of [spec.output, spec.resumeDir]) fs.mkdirSync(d, { recursive: true })
  fs.writeFileSync(specPath, JSON.stringify(spec))
  return spec
}

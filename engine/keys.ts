/**
 * Step keys and traces. A key is sha256 of the canonical JSON of the trace: the step's kind, its
 * implementation version, its decoded params (minus execution-only ones) and the content hashes of its
 * inputs. Upstream *keys* are deliberately not part of it: an upstream step that reruns and produces a
 * byte-identical artifact leaves this key unchanged, which is early cutoff.
 *
 * The trace is stored with every run, so staleness can be explained as a diff against the last
 * successful build of the same step id.
 */
import { canonicalJson, sha256 } from "../cache/hash.ts"
import type { Trace } from "../cache/trace.ts"
import type { PlannedStep } from "./graph.ts"
import type { StepDefinition } from "./step.ts"

export type { Trace }

export const keyParams = (step: PlannedStep): Record<string, unknown> => {
  const only = step.def.executionOnly
  if (only === undefined || only.length === 0) return step.params
  const skip = new Set(only)
  return Object.fromEntries(Object.entries(step.params).filter(([k]) => !skip.has(k)))
}

/** Whether a kind declares a `seed` param (every kind that samples must: engine/params.ts `seedParam`). */
export const declaresSeed = (def: StepDefinition): boolean => {
  const fields = (def.params as { readonly fields?: Record<string, unknown> }).fields
  return fields !== undefined && Object.hasOwn(fields, "seed")
}

/**
 * The seed a step runs with (the spec's `seed`, `ctx.seed`): its declared `seed` param, which the key
 * holds like any param. A kind that declares none gets no seed, never an implicit one.
 */
export const stepSeed = (step: PlannedStep): number | undefined =>
  declaresSeed(step.def) ? (step.params.seed as number) : undefined

export const makeTrace = (step: PlannedStep, inputHashes: Record<string, string | ReadonlyArray<string>>): Trace => ({
  kind: step.def.kind,
  version: step.def.version,
  params: keyParams(step),
  inputs: inputHashes
})

/** The trace as a record stores it (canonical JSON), and the key: that text's sha256. */
export const traceText = (trace: Trace): string =>
  // canonicalJson(trace) spelled out, its keys in sorted order: every step's trace is written on every
  // plan, and the generic walk (sorting the four keys) was a tenth of a null rerun's plan
  `{"inputs":${canonicalJson(trace.inputs)},"kind":${canonicalJson(trace.kind)},"params":${canonicalJson(trace.params)},"version":${canonicalJson(trace.version)}}`
export const keyOf = (text: string): string => sha256(text)

const short = (h: string) => h.slice(0, 10) + ".."

const show = (v: unknown): string => {
  if (v === undefined) return "(unset)"
  const s = typeof v === "string" ? JSON.stringify(v) : canonicalJson(v)
  return s.length > 60 ? s.slice(0, 57) + "..." : s
}

/** Flattens nested params to dotted paths, so a diff names `params.lora.r`, not `params.lora`. */
const flatten = (value: unknown, prefix: string, out: Map<string, unknown>) => {
  if (value !== null && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) flatten(v, prefix === "" ? k : `${prefix}.${k}`, out)
  } else out.set(prefix, value)
  return out
}

/**
 * Why a step's trace differs from the one it was last built with, one human line per difference:
 * `params.lr: 0.0002 -> 0.0001`, `input dataset changed (3f2a.. -> 9c1d..)`, `implementation version 1 -> 2`.
 * `inputs` may be partial (unknown while an upstream step is stale); only known inputs are compared.
 */
export const diffTraces = (
  previous: Trace,
  current: { kind: string; version: number; params: Record<string, unknown>; inputs?: Record<string, string | ReadonlyArray<string>> }
): Array<string> => {
  const reasons: Array<string> = []
  if (previous.kind !== current.kind) reasons.push(`kind ${previous.kind} -> ${current.kind}`)
  if (previous.version !== current.version) reasons.push(`implementation version ${previous.version} -> ${current.version}`)
  const a = flatten(previous.params, "", new Map())
  const b = flatten(current.params, "", new Map())
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(k)
    const y = b.get(k)
    if (canonicalJson(x) !== canonicalJson(y)) reasons.push(`params.${k}: ${show(x)} -> ${show(y)}`)
  }
  if (current.inputs !== undefined) {
    for (const port of new Set([...Object.keys(previous.inputs), ...Object.keys(current.inputs)])) {
      const x = previous.inputs[port]
      const y = current.inputs[port]
      if (canonicalJson(x) === canonicalJson(y)) continue
      if (x === undefined) reasons.push(`input ${port} added`)
      else if (y === undefined) reasons.push(`input ${port} removed`)
      else if (typeof x === "string" && typeof y === "string") reasons.push(`input ${port} changed (${short(x)} -> ${short(y)})`)
      else {
        const xs = Array.isArray(x) ? x : [x]
        const ys = Array.isArray(y) ? y : [y]
        reasons.push(`input ${port} changed (${xs.length} -> ${ys.length} artifacts, ${ys.filter((h) => !xs.includes(h)).length} new)`)
      }
    }
  }
  return reasons
}

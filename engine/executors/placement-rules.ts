/**
 * Per-step placement under a cluster executor: cheap steps run on the driver, heavy ones on the
 * cluster, so a recipe does not pay a job's submission and scheduling overhead (seconds) for a step
 * that takes milliseconds. The routing executor (placement.ts, in front of the cluster's executor and
 * the local one) chooses per step by the cluster section's "placement" in anneal.config.json, in the
 * spirit of Snakemake's `localrules` and Nextflow's per-process executor:
 *
 * ```json
 * "slurm": { "placement": { "local": ["clean", "dedup-*"], "cluster": ["eval-big"], "default": "auto" } }
 * ```
 *
 * A pattern names a step id or a step kind, with `*` for any run of characters. The most specific
 * match wins: an exact step id, then an id pattern, then an exact kind, then a kind pattern (at equal
 * rank, "cluster"). With no match, `default` decides: "cluster" (every step is a job), "local", or
 * "auto" (the default): a TS step that asks for no GPU, one CPU and no memory figure runs on the driver;
 * every command (Python) step and every step that declares resources is a job. A step call's own
 * option, `{ executor: "local" }` or `{ executor: "cluster" }` (the spec's `placement`), wins over all.
 *
 * Steps routed to the driver share its CPUs (`localCpus`, default this machine's): the run's scheduler
 * counts the cluster's capacity, not the driver's, so the routing executor keeps its own count. A step that
 * asks for GPUs is never run on the driver (its GPU ids are cluster slots, not devices here): a rule
 * that places one there is an error naming the step.
 *
 * This module holds the rules alone (the config's schema, where a step goes, `anneal plan`'s line): it
 * loads with every command, the routing executor only for a run on a cluster.
 */
import * as Schema from "effect/Schema"
import type { StepSpec } from "../spec.ts"
import { lookupKind } from "../step.ts"

export type Placement = "local" | "cluster"

export interface PlacementRules {
  /** step ids or kinds (with `*`) that run on the driver */
  readonly local?: ReadonlyArray<string> | undefined
  /** step ids or kinds (with `*`) that run on the cluster */
  readonly cluster?: ReadonlyArray<string> | undefined
  /** where a step no pattern names runs; default "auto" */
  readonly default?: "auto" | "local" | "cluster" | undefined
  /** CPU slots the driver gives steps placed on it; default this machine's CPUs */
  readonly localCpus?: number | undefined
}

export const PlacementConfig = Schema.Struct({
  local: Schema.optional(Schema.Array(Schema.String)),
  cluster: Schema.optional(Schema.Array(Schema.String)),
  default: Schema.optional(Schema.Literals(["auto", "local", "cluster"])),
  localCpus: Schema.optional(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)))
})

/** What placement knows of a step: its id, its kind, whether it runs in-process (TS), what it asks for. */
export interface PlacedStep {
  readonly step: string
  readonly kind: string
  readonly ts: boolean
  readonly gpus: number
  readonly cpus: number
  readonly memoryGb?: number | undefined
  /** the call's `executor` option, which wins over every rule */
  readonly option?: Placement | undefined
}

const globToRegExp = (pattern: string) =>
  new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`)

/** How specifically a pattern names a step: 4 its exact id, 3 an id pattern, 2 its exact kind, 1 a kind pattern, 0 not. */
const rank = (pattern: string, step: string, kind: string): number => {
  const glob = pattern.includes("*")
  if (!glob) return pattern === step ? 4 : pattern === kind ? 2 : 0
  const re = globToRegExp(pattern)
  return re.test(step) ? 3 : re.test(kind) ? 1 : 0
}

const best = (patterns: ReadonlyArray<string> | undefined, step: string, kind: string) =>
  Math.max(0, ...(patterns ?? []).map((p) => rank(p, step, kind)))

/** Where a step runs, and why (for the plan and the step's log). */
export const placeStep = (rules: PlacementRules | undefined, s: PlacedStep): { readonly where: Placement; readonly why: string } => {
  if (s.option !== undefined) return { where: s.option, why: `the step's executor option is "${s.option}"` }
  const local = best(rules?.local, s.step, s.kind)
  const cluster = best(rules?.cluster, s.step, s.kind)
  if (local > 0 || cluster > 0) {
    return local > cluster ? { where: "local", why: "placement.local names it" } : { where: "cluster", why: "placement.cluster names it" }
  }
  const policy = rules?.default ?? "auto"
  if (policy !== "auto") return { where: policy, why: `placement.default is "${policy}"` }
  const light = s.ts && s.gpus === 0 && s.cpus <= 1 && (s.memoryGb === undefined || s.memoryGb <= 0)
  return light
    ? { where: "local", why: "a TS step asking for no GPU, one CPU and no memory figure" }
    : { where: "cluster", why: s.ts ? "it declares resources" : "a command step" }
}

/** The placement of a step known only by kind and resources (`anneal plan`): TS when its kind has a `run`. */
export const placeByKind = (
  rules: PlacementRules | undefined,
  step: string,
  kind: string,
  resources: { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined }
) => placeStep(rules, { step, kind, ts: lookupKind(kind)?.implementation.run !== undefined, ...resources })

export const placedStepOf = (spec: StepSpec): PlacedStep => ({
  step: spec.step,
  kind: spec.kind,
  ts: spec.implementation.type === "ts",
  gpus: spec.devices.gpus.length,
  cpus: spec.devices.cpus,
  memoryGb: spec.devices.memoryGb,
  option: spec.placement
})

/** `anneal plan`'s line for a step under a cluster executor: the driver and why, or the cluster's own words. */
export const describePlaced = (
  rules: PlacementRules | undefined,
  step: string,
  kind: string,
  resources: { readonly gpus: number; readonly cpus: number; readonly memoryGb?: number | undefined },
  onCluster: () => string
): string => {
  const placed = placeByKind(rules, step, kind, resources)
  return placed.where === "local" && resources.gpus === 0
    ? `local (on the driver: ${placed.why}): ${resources.cpus} CPU`
    : onCluster()
}

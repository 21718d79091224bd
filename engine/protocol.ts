/**
 * The command-step contract as effect/Schema: the spec file a command step receives (engine/spec.ts
 * `StepSpec`) and the JSON lines it may print on stdout. schema/*.schema.json are generated from these
 * (`npm run docs:schemas`) and a test fails when they are stale, so the published JSON Schemas, the
 * engine's types and what the engine writes and reads cannot drift apart. docs/command-steps.md
 * explains the contract with examples.
 */
import * as Schema from "effect/Schema"
import type { StepSpec } from "./spec.ts"

const describe = <S extends Schema.Top>(schema: S, description: string) => schema.annotate({ description })
const PathOrPaths = Schema.Union([Schema.String, Schema.Array(Schema.String)])
const NonNegativeInt = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

export const CommandStepSpec = Schema.Struct({
  specVersion: describe(Schema.Literal(1), "the contract's version; a breaking change to this schema bumps it"),
  runId: describe(Schema.Int, "the run this execution belongs to (the store's run id)"),
  step: describe(Schema.String, "the step id in the recipe, e.g. \"sft-neftune\""),
  kind: describe(Schema.String, "the step kind, e.g. \"sft\""),
  version: describe(Schema.Int, "the kind's implementation version"),
  key: describe(Schema.String, "the step key (sha256 hex of its trace): kind, version, params, input hashes"),
  params: describe(
    Schema.Record(Schema.String, Schema.Json),
    "the decoded params with every default filled in, encoded back to JSON; names are camelCase"
  ),
  inputs: describe(
    Schema.Record(Schema.String, PathOrPaths),
    "input port -> absolute path of the artifact directory (or source file); a many-port maps to a list"
  ),
  inputHashes: describe(Schema.Record(Schema.String, PathOrPaths), "input port -> content hash(es) of the inputs"),
  output: describe(
    Schema.String,
    "an empty directory to fill; committed to the store only when the program exits 0"
  ),
  resumeDir: describe(
    Schema.String,
    "a directory that survives interruption, keyed by the step key: checkpoint here to resume a rerun"
  ),
  logPath: describe(Schema.String, "the step's log file (stderr goes there; do not write it yourself)"),
  devices: describe(
    Schema.Struct({
      gpus: describe(Schema.Array(NonNegativeInt), "GPU ids assigned, also exported as CUDA_VISIBLE_DEVICES; empty on CPU"),
      cpus: describe(Schema.Int.check(Schema.isGreaterThan(0)), "CPU slots granted: use this many threads"),
      memoryGb: Schema.optionalKey(describe(Schema.Finite, "memory budget in GiB, when the step declared one"))
    }),
    "what the scheduler granted"
  ),
  seed: Schema.optionalKey(describe(Schema.Int, "the step's seed param (part of the key); absent when the kind declares none")),
  recipe: describe(Schema.String, "the recipe module's path"),
  placement: Schema.optionalKey(
    describe(Schema.Literals(["local", "cluster"]), "the call's executor option: on the driver or as a cluster job (cluster executors only)")
  ),
  implementation: describe(
    Schema.Union([
      Schema.Struct({ type: Schema.Literal("ts") }),
      Schema.Struct({
        type: Schema.Literal("command"),
        argv: describe(Schema.Array(Schema.String), "the argument array the engine started (never a shell string)"),
        env: describe(Schema.Record(Schema.String, Schema.String), "environment added to the engine's, ANNEAL_SPEC included"),
        cwd: Schema.optionalKey(describe(Schema.String, "working directory"))
      })
    ]),
    "how the step runs: in-process TS, or this command"
  )
}).annotate({
  title: "anneal command-step spec",
  description: "The JSON file a command step receives: its path is the ANNEAL_SPEC environment variable (and "
    + "usually an argument). Exit 0 only when `output` holds the complete artifact; exit 2 for bad input."
})

const Finite = Schema.Finite

export const ProgressLine = Schema.Struct({
  type: Schema.Literal("progress"),
  current: describe(Finite, "units done so far"),
  total: Schema.optionalKey(describe(Finite, "units in all, when known")),
  unit: Schema.optionalKey(describe(Schema.String, "what is counted: steps, rows, tensors, tokens, ...")),
  loss: Schema.optionalKey(describe(Finite, "training loss at this point")),
  lr: Schema.optionalKey(describe(Finite, "learning rate at this point")),
  rate: Schema.optionalKey(describe(Finite, "units per second")),
  tokens_per_second: Schema.optionalKey(describe(Finite, "throughput in tokens per second (tokensPerSecond also accepted)")),
  tokensPerSecond: Schema.optionalKey(describe(Finite, "throughput in tokens per second")),
  eta: Schema.optionalKey(describe(Finite, "seconds left, if the program knows better than the engine's estimate")),
  phase: Schema.optionalKey(describe(Schema.String, "what the step does from now on (\"loading model\", \"training\", ...); a line that only announces a phase has current 0 and no total"))
}).annotate({ title: "progress", description: "progress of the step; shown live, never stored" })

export const MetricLine = Schema.Struct({
  type: Schema.Literal("metric"),
  name: Schema.String,
  value: describe(Schema.Union([Finite, Schema.String]), "the last value of a name is stored with the run (anneal show)")
}).annotate({ title: "metric", description: "a final metric, e.g. train_loss or an eval score" })

export const LogLine = Schema.Struct({
  type: Schema.Literal("log"),
  level: Schema.optionalKey(Schema.Literals(["debug", "info", "warn", "error"])),
  message: Schema.String
}).annotate({ title: "log", description: "a message for the user; the last error-level one is the step's error" })

export const WorkerEvent = Schema.Union([ProgressLine, MetricLine, LogLine]).annotate({
  title: "anneal worker event",
  description: "One line a command step prints on stdout (JSON, one object per line). Other stdout lines "
    + "are ignored; human logs go to stderr, which the engine stores in the step's log."
})

// The published schema and the engine's StepSpec type must agree: the same fields, and every spec the
// schema accepts is a StepSpec (a compile error here when they drift; the test checks real specs).
type SpecType = typeof CommandStepSpec.Type
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false
export const specAgrees: [
  SameKeys<StepSpec, SpecType>,
  SameKeys<StepSpec["devices"], SpecType["devices"]>,
  (s: SpecType) => StepSpec
] = [true, true, (s) => s]

/** A standalone JSON Schema (draft 2020-12) document for a schema, as published in schema/. */
export const jsonSchemaOf = (schema: Schema.Top): Record<string, unknown> => {
  const doc = Schema.toJsonSchemaDocument(schema)
  const defs = Object.keys(doc.definitions).length > 0 ? { $defs: doc.definitions } : {}
  return { $schema: "https://json-schema.org/draft/2020-12/schema", ...doc.schema, ...defs }
}

/** The files under schema/ and what each holds. */
export const publishedSchemas = {
  "command-step-spec.schema.json": jsonSchemaOf(CommandStepSpec),
  "worker-event.schema.json": jsonSchemaOf(WorkerEvent)
} as const

/** The text of a published schema file, as `npm run docs:schemas` writes it. */
export const schemaFileText = (name: keyof typeof publishedSchemas): string =>
  JSON.stringify(publishedSchemas[name], null, 2) + "\n"

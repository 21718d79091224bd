/**
 * Defining step kinds. Built-in steps and users' custom steps use this same API:
 *
 * ```ts
 * const shout = defineStep({
 *   kind: "shout",
 *   version: 1,                       // bump when the implementation's output would change
 *   params: Schema.Struct({ times: Schema.Int }),
 *   inputs: { data: Port.dataset(Text) },
 *   output: Port.dataset(Text),
 *   run: async (ctx) => { ... read ctx.inputs.data, write into ctx.output ... }
 * })
 * // in a recipe: const loud = shout({ data: texts }, { times: 2 })
 * ```
 *
 * or, for an external program, `command: (ctx) => ({ argv: [...] })` instead of `run`.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { AnyDataset, AnyHandle, ArtifactKind, Dataset, Handle } from "./artifact.ts"
import { makeHandle } from "./artifact.ts"
import type { Row } from "./rows.ts"
import { currentBuilder } from "./graph.ts"
import { RecipeError } from "./errors.ts"
import type { EngineEvent, ProgressEvent } from "./events.ts"

// ---------------------------------------------------------------------------------------------
// Ports

export interface Port<H extends AnyHandle> {
  readonly _tag: "Port"
  readonly kind: H["kind"]
  readonly many: false
  readonly optional: boolean
  /** row schema a dataset port expects, checked at run time by data steps */
  readonly rows?: Schema.Top | undefined
  /** what the port is for, printed by `anneal steps` (set with Port.describe) */
  readonly description?: string | undefined
  readonly _H?: (h: H) => H
}
export interface ManyPort<H extends AnyHandle> {
  readonly _tag: "Port"
  readonly kind: H["kind"]
  readonly many: true
  readonly optional: boolean
  readonly description?: string | undefined
  readonly _H?: (h: H) => H
}
export type AnyPort = Port<any> | ManyPort<any>

const port = <H extends AnyHandle>(kind: ArtifactKind, rows?: Schema.Top): Port<H> => ({
  _tag: "Port",
  kind,
  many: false,
  optional: false,
  rows
})

export const Port = {
  dataset: <S extends Schema.Top>(rows?: S): Port<Dataset<S["Type"] & Row>> => port("dataset", rows),
  anyDataset: (): Port<Handle<"dataset", any>> => port("dataset"),
  model: (): Port<Handle<"model">> => port("model"),
  adapter: (): Port<Handle<"adapter">> => port("adapter"),
  tokenizer: (): Port<Handle<"tokenizer">> => port("tokenizer"),
  report: (): Port<Handle<"report">> => port("report"),
  files: (): Port<Handle<"file">> => port("file"),
  /** a list of handles of one kind, e.g. the models a merge combines */
  many: <H extends AnyHandle>(p: Port<H>): ManyPort<H> => ({ _tag: "Port", kind: p.kind, many: true, optional: false }),
  /** a port the recipe may leave out */
  optional: <H extends AnyHandle>(p: Port<H>): Port<H> & { readonly optional: true } => ({ ...p, optional: true }),
  /** the port with a doc, which `anneal steps` and docs/steps.md print */
  describe: <P extends AnyPort>(p: P, description: string): P => ({ ...p, description })
}

type HandleOf<P> = P extends Port<infer H> ? H : P extends ManyPort<infer H> ? ReadonlyArray<H> : never
type PathOf<P> = P extends ManyPort<any> ? ReadonlyArray<string> : P extends { optional: true } ? string | undefined
  : string

type OptionalPortKeys<I> = { [K in keyof I]: I[K] extends { optional: true } ? K : never }[keyof I]
type RequiredPortKeys<I> = Exclude<keyof I, OptionalPortKeys<I>>

/** What a recipe passes: handles for the ports, optional ports may be omitted. */
export type InputsOf<I extends Record<string, AnyPort>> =
  & { readonly [K in RequiredPortKeys<I>]: HandleOf<I[K]> }
  & { readonly [K in OptionalPortKeys<I>]?: HandleOf<I[K]> | undefined }

/** What a step implementation receives: artifact paths for the ports. */
export type InputPathsOf<I extends Record<string, AnyPort>> = { readonly [K in keyof I]: PathOf<I[K]> }

// ---------------------------------------------------------------------------------------------
// Running

export interface Resources {
  /** CPU slots the step occupies (of `--jobs`) */
  readonly cpus?: number
  /** GPUs the step wants; it fails fast with fewer unless CPU fallback is allowed */
  readonly gpus?: number
  /** memory the step may use, in GiB; the scheduler keeps the sum under the machine's budget */
  readonly memoryGb?: number
  /** true when the step can run (slowly) on CPU if no GPU is available and `--allow-cpu` is given */
  readonly cpuFallback?: boolean
}

/** What a step reports with ctx.progress: a ProgressEvent without the step id the engine adds. */
export type ProgressReport = Omit<ProgressEvent, "event" | "step">

export interface StepContext<P, I extends Record<string, AnyPort>> {
  readonly step: string
  readonly key: string
  readonly params: P
  readonly inputs: InputPathsOf<I>
  /** the staging directory to fill; it exists and is empty */
  readonly output: string
  readonly resumeDir: string
  readonly gpus: ReadonlyArray<number>
  readonly cpus: number
  /**
   * The step's `seed` param (declare it with `seedParam()`), which is part of its key; undefined for a
   * kind that declares none: such a kind must not sample.
   */
  readonly seed: number | undefined
  /** aborted when the run is interrupted; long loops should check it */
  readonly signal: AbortSignal
  readonly progress: (p: ProgressReport) => void
  readonly metric: (name: string, value: number | string) => void
  readonly log: (message: string, level?: "debug" | "info" | "warn" | "error") => void
}

/** What a command step's `command` function gets when the engine builds its argument array. */
export interface CommandContext<P> {
  readonly params: P
  /** the spec JSON (engine/spec.ts) the program should read; also in the ANNEAL_SPEC env var */
  readonly specPath: string
  readonly step: string
  /** GPU ids assigned (already exported as CUDA_VISIBLE_DEVICES); empty on CPU */
  readonly gpus: ReadonlyArray<number>
  readonly cpus: number
}

export interface CommandSpec {
  /** the program and its arguments; it runs in `cwd`, so relative paths mean the recipe's directory */
  readonly argv: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  /** working directory, resolved against the recipe's directory (the default) */
  readonly cwd?: string
}

export type Implementation<P, I extends Record<string, AnyPort>> =
  | {
    /** in-process TS: fill ctx.output; throw (or fail) to fail the step */
    readonly run: (ctx: StepContext<P, I>) => Promise<void> | Effect.Effect<void, unknown> | void
    readonly command?: never
  }
  | {
    /** an external program: argument array (never a shell string); it gets the spec path in ANNEAL_SPEC */
    readonly command: (ctx: CommandContext<P>) => CommandSpec
    readonly run?: never
  }

export interface StepDefinition<
  P = any,
  I extends Record<string, AnyPort> = Record<string, AnyPort>,
  O extends AnyHandle = AnyHandle,
  PIn = any
> {
  readonly kind: string
  /** part of every key of this kind: bump it when a change to the implementation can change outputs */
  readonly version: number
  readonly params: Schema.Codec<P, PIn>
  readonly inputs: I
  readonly output: Port<O>
  readonly resources?: Resources | ((params: P) => Resources)
  /** param names that cannot change the result (worker counts, log cadence): left out of the key */
  readonly executionOnly?: ReadonlyArray<string>
  /**
   * files whose content fingerprints the implementation, e.g. a Python worker script; relative paths
   * resolve against the recipe's directory, and a missing file is an error when the recipe loads
   */
  readonly sourceFiles?: ReadonlyArray<string>
  /** one-line description for `--help`-style listings and docs */
  readonly description?: string
  /**
   * Checks of decoded params that need to know the inputs (how many handles each port was given):
   * run when the recipe loads, so a param a method requires fails `plan`, not a run hours later.
   */
  readonly checkParams?: (params: P, inputCounts: { readonly [K in keyof I]: number }) => ParamProblem | undefined
  readonly implementation: Implementation<P, I>
}

/** What `checkParams` finds wrong: the param path (e.g. "models.1.parameters.weight") and one line. */
export interface ParamProblem {
  readonly param: string
  readonly message: string
}

/** Options a recipe may give any step call; none of them are part of the key. */
export interface CallOptions {
  /** stable, human-readable step id; defaults to the kind */
  readonly id?: string
  /** GPUs to ask for, overriding the step's default resources */
  readonly gpus?: number
  readonly cpus?: number
  readonly memoryGb?: number
  /** allow this step to run on CPU when there are not enough GPUs */
  readonly allowCpu?: boolean
  /**
   * under a cluster executor: "local" runs the step on the driver, "cluster" as a job, whatever the
   * config's placement rules say (engine/executors/placement.ts); no effect on a local run
   */
  readonly executor?: "local" | "cluster"
  /** run after these step ids even without a data dependency */
  readonly after?: ReadonlyArray<string>
}

export type StepFunction<I extends Record<string, AnyPort>, O extends AnyHandle, PIn> = ((
  inputs: InputsOf<I>,
  params?: PIn,
  options?: CallOptions
) => O) & { readonly definition: StepDefinition<any, I, O, PIn> }

/** Any step function, whatever its ports (StepFunction<any, ...> is not: its inputs are contravariant). */
export type AnyStepFunction = ((inputs: any, params?: any, options?: CallOptions) => AnyHandle) & {
  readonly definition: StepDefinition<any, any, any, any>
}

/**
 * Types a filtering step (rows in, fewer rows of the same shape out) so its output keeps the input's row
 * type: `clean({ data: d })` with `d: Dataset<Instruction>` is a `Dataset<Instruction>`, and the next
 * step's port still checks it. The step itself is declared with `Port.anyDataset()` ports.
 */
export const preservingRows = <I extends { readonly data: AnyPort }, PIn>(step: StepFunction<I, AnyDataset, PIn>) =>
  Object.assign(
    <R extends Row>(
      inputs: Omit<InputsOf<I>, "data"> & { readonly data: Dataset<R> },
      params?: PIn,
      options?: CallOptions
    ): Dataset<R> => step(inputs as unknown as InputsOf<I>, params, options),
    { definition: step.definition }
  )

// One registry per process, shared by every instance of this module (see graph.ts's builder state).
const registry = ((globalThis as Record<symbol, unknown>)[Symbol.for("anneal/step-registry")] ??= new Map()) as Map<
  string,
  StepDefinition
>

/** The registered definition of a kind (built-ins register on import; custom kinds when their module loads). */
export const lookupKind = (kind: string): StepDefinition | undefined => registry.get(kind)
export const registeredKinds = (): ReadonlyArray<StepDefinition> => [...registry.values()]

/** What `defineStep` takes: a definition with its implementation given as `run` or `command`. */
export type DefineStepArgs<P, I extends Record<string, AnyPort>, O extends AnyHandle, PIn> =
  & Omit<StepDefinition<P, I, O, PIn>, "implementation">
  & {
    readonly run?: (ctx: StepContext<P, I>) => Promise<void> | Effect.Effect<void, unknown> | void
    readonly command?: (ctx: CommandContext<P>) => CommandSpec
  }

const kindPattern = /^[a-z][a-z0-9-]*(\/[a-z0-9-]+)*$/

export const defineStep = <P, I extends Record<string, AnyPort>, O extends AnyHandle, PIn>(
  args: DefineStepArgs<P, I, O, PIn>
): StepFunction<I, O, PIn> => {
  if (!kindPattern.test(args.kind)) {
    throw new Error(`step kind "${args.kind}" must be lower-case kebab-case (e.g. "my-step")`)
  }
  if (!Number.isInteger(args.version) || args.version < 1) {
    throw new Error(`step kind "${args.kind}": version must be a positive integer`)
  }
  if (args.executionOnly?.includes("seed") === true) {
    throw new Error(`step kind "${args.kind}": seed cannot be execution-only (it must be part of the key)`)
  }
  if ((args.run === undefined) === (args.command === undefined)) {
    throw new Error(`step kind "${args.kind}": give exactly one of run or command`)
  }
  const implementation = (args.run !== undefined ? { run: args.run } : { command: args.command! }) as Implementation<
    P,
    I
  >
  const definition: StepDefinition<P, I, O, PIn> = {
    kind: args.kind,
    version: args.version,
    params: args.params,
    inputs: args.inputs,
    output: args.output,
    resources: args.resources,
    executionOnly: args.executionOnly,
    sourceFiles: args.sourceFiles,
    description: args.description,
    checkParams: args.checkParams,
    implementation
  } as StepDefinition<P, I, O, PIn>
  registry.set(args.kind, definition as unknown as StepDefinition)
  const call = (inputs: InputsOf<I>, params?: PIn, options?: CallOptions): O => {
    const builder = currentBuilder("step " + args.kind)
    const node = builder.addStep(
      withSourceFilesOf(definition as unknown as StepDefinition, builder.recipeFile, options?.id),
      inputs as Record<string, unknown>,
      params ?? {},
      options ?? {}
    )
    return makeHandle<O>(args.output.kind, node)
  }
  return Object.assign(call, { definition })
}

// kind definition -> recipe directory -> the definition with its sourceFiles resolved from there
const resolvedDefinitions = new WeakMap<StepDefinition, Map<string, StepDefinition>>()

/**
 * The definition as a recipe uses it: relative `sourceFiles` resolve against the recipe's directory (as
 * sources do), and every entry must exist, or the recipe does not load. Resolved once per directory, so
 * the fingerprint computed from the files is computed once.
 */
const withSourceFilesOf = (def: StepDefinition, recipeFile: string, id: string | undefined): StepDefinition => {
  const files = def.sourceFiles ?? []
  if (files.length === 0) return def
  const dir = path.dirname(recipeFile)
  let byDir = resolvedDefinitions.get(def)
  if (byDir === undefined) resolvedDefinitions.set(def, (byDir = new Map()))
  const known = byDir.get(dir)
  if (known !== undefined) return known
  const resolved = files.map((f) => path.resolve(dir, f))
  const missing = resolved.findIndex((f) => !fs.existsSync(f))
  if (missing >= 0) {
    throw new RecipeError({
      message: `recipe ${path.relative(process.cwd(), recipeFile) || recipeFile}: step "${id ?? def.kind}" (${def.kind}): sourceFiles entry ${JSON.stringify(files[missing])} does not exist (looked for ${resolved[missing]})`,
      step: id ?? def.kind,
      file: recipeFile
    })
  }
  const out = files.every((f, i) => f === resolved[i]) ? def : { ...def, sourceFiles: resolved }
  byDir.set(dir, out)
  return out
}

/** Convenience for TS steps that emit engine events directly. */
export type Emit = (event: EngineEvent) => void

/**
 * Runs a TS step's implementation. A synchronous throw and a rejected promise are failures (never
 * defects). An Effect returned by the step is interrupted like any effect; a promise cannot be, so when
 * interrupted this calls `abort` (the step's signal) and waits for the promise to settle: whatever the
 * step writes into its output happens before the engine discards the staging directory.
 */
export const runImplementation = <P, I extends Record<string, AnyPort>>(
  def: StepDefinition<P, I>,
  ctx: StepContext<P, I>,
  abort: () => void = () => undefined
): Effect.Effect<void, unknown> => {
  const impl = def.implementation
  if (impl.run === undefined) return Effect.die(new Error(`step kind ${def.kind} is a command step`))
  const run = impl.run
  return Effect.callback<void, unknown>((resume) => {
    let out: ReturnType<typeof run>
    try {
      out = run(ctx)
    } catch (e) {
      resume(Effect.fail(e))
      return
    }
    if (Effect.isEffect(out)) return resume(out as Effect.Effect<void, unknown>)
    if (!isPromiseLike(out)) return resume(Effect.void)
    const settled = Promise.resolve(out).then(
      () => resume(Effect.void),
      (e: unknown) => resume(Effect.fail(e))
    )
    return Effect.promise(() => {
      abort()
      return settled
    })
  })
}

const isPromiseLike = (u: unknown): u is PromiseLike<unknown> =>
  typeof u === "object" && u !== null && typeof (u as { then?: unknown }).then === "function"

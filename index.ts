/**
 * anneal's public API: what a recipe imports (`import { recipe, source, sft } from "anneal"`). Importing
 * it registers every built-in step kind (steps/), exactly as a user's module registers its own kinds.
 * The package ships this module compiled (dist/index.js + .d.ts); inside anneal's repository the
 * "anneal-dev" export condition resolves `"anneal"` to this file.
 */
export { recipe, source } from "./engine/graph.ts"
export type { Recipe } from "./engine/graph.ts"
export { defineStep, Port } from "./engine/step.ts"
export type { StepContext, CallOptions, Resources, CommandSpec, StepDefinition } from "./engine/step.ts"
export { seedParam, withDefault } from "./engine/params.ts"
export type { Adapter, AnyDataset, AnyHandle, ArtifactKind, Dataset, Files, Handle, Model, Report, Tokenizer } from "./engine/artifact.ts"
export { Instruction, Message, Messages, Preference, PromptCompletion, Text } from "./engine/rows.ts"
export type { Row } from "./engine/rows.ts"
export { pythonWorker } from "./engine/python.ts"
export * from "./steps/index.ts"
/** A schema for counts (steps, examples, variants): an integer greater than 0. */
export { PositiveInt } from "./steps/train/common.ts"
/** Re-exported so recipes outside this package can declare params without their own effect install. */
export * as Effect from "effect/Effect"
export * as Schema from "effect/Schema"

/**
 * anneal's public API: what a recipe imports (`import { recipe, source, sft } from "anneal"`).
 */
export { recipe, source } from "./engine/graph.ts"
export type { Recipe } from "./engine/graph.ts"
export { defineStep, Port } from "./engine/step.ts"
export type { StepContext, CallOptions, Resources, CommandSpec, StepDefinition } from "./engine/step.ts"
export type { Adapter, Dataset, Files, Handle, Model, Report, Tokenizer } from "./engine/artifact.ts"
export { Instruction, Message, Messages, Preference, PromptCompletion, Text } from "./engine/rows.ts"
export type { Row } from "./engine/rows.ts"
export { pythonWorker } from "./engine/python.ts"
export * from "./steps/index.ts"
/** Re-exported so recipes outside this package can declare params without their own effect install. */
export { Effect, Schema } from "effect"

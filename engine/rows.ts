/**
 * Row schemas: the shapes a `Dataset<Row>` can hold. They are the formats TRL's trainers accept
 * (language modeling `{text}`, prompt-completion, conversational `{messages}`, preference), plus the
 * Alpaca `Instruction` shape that most open instruction sets (Open-Platypus included) ship in.
 */
import * as Schema from "effect/Schema"

export const Text = Schema.Struct({ text: Schema.String })
export type Text = typeof Text.Type

export const Instruction = Schema.Struct({
  instruction: Schema.String,
  input: Schema.optionalKey(Schema.String),
  output: Schema.String
})
export type Instruction = typeof Instruction.Type

export const PromptCompletion = Schema.Struct({ prompt: Schema.String, completion: Schema.String })
export type PromptCompletion = typeof PromptCompletion.Type

export const Message = Schema.Struct({
  role: Schema.Literals(["system", "user", "assistant", "tool"]),
  content: Schema.String
})
export type Message = typeof Message.Type

/** A conversation of at least one message (an empty one has nothing to train on, dedup or clean). */
export const Messages = Schema.Struct({ messages: Schema.Array(Message).check(Schema.isMinLength(1)) })
export type Messages = typeof Messages.Type

export const Preference = Schema.Struct({ prompt: Schema.String, chosen: Schema.String, rejected: Schema.String })
export type Preference = typeof Preference.Type

/** A row format's name, as written into a dataset artifact's `dataset.json`. */
export type RowFormat = "text" | "instruction" | "prompt-completion" | "messages" | "preference" | "any"

export const rowSchemas = {
  text: Text,
  instruction: Instruction,
  "prompt-completion": PromptCompletion,
  messages: Messages,
  preference: Preference
} as const

/** The union of every row shape; `Dataset<Row>` is a dataset whose format is only known at run time. */
export type Row = Text | Instruction | PromptCompletion | Messages | Preference

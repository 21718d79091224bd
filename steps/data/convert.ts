/**
 * Row format conversions, where they are well defined:
 *
 * | from \ to         | text | instruction | prompt-completion | messages |
 * |-------------------|------|-------------|-------------------|----------|
 * | instruction       | yes  | =           | yes               | yes      |
 * | prompt-completion | yes  | yes         | =                 | yes      |
 * | messages          | no   | single turn | single turn       | =        |
 * | preference        | yes  | chosen      | chosen            | chosen   |
 *
 * Nothing converts from `text` (it has no question/answer split) or to `preference` (no rejected
 * answer to invent). `messages` to `text` needs a tokenizer's chat template, so it is refused. A
 * "single turn" conversation is an optional system message, one user turn and one assistant turn.
 */
import type { ConcreteFormat } from "./formats.ts"

export type Template = "plain" | "alpaca"

// Alpaca's two prompts (tatsu-lab/stanford_alpaca), as Platypus used them; the same text as
// python/anneal_worker/templates.py, which the training workers apply.
const alpacaWithInput = (instruction: string, input: string) =>
  "Below is an instruction that describes a task, paired with an input that provides further context. " +
  "Write a response that appropriately completes the request.\n\n" +
  `### Instruction:\n${instruction}\n\n### Input:\n${input}\n\n### Response:\n`
const alpacaNoInput = (instruction: string) =>
  "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n" +
  `### Instruction:\n${instruction}\n\n### Response:\n`

export const instructionPrompt = (instruction: string, input: string | undefined, template: Template): string => {
  const hasInput = input !== undefined && input.length > 0
  if (template === "alpaca") return hasInput ? alpacaWithInput(instruction, input) : alpacaNoInput(instruction)
  return hasInput ? `${instruction}\n\n${input}` : instruction
}

export interface ConvertOptions {
  readonly template: Template
  readonly system?: string | undefined
}

type AnyRow = Record<string, unknown>
interface Qa {
  readonly prompt: string
  readonly answer: string
  readonly instruction: string
  readonly input?: string | undefined
}

/** Why `from` cannot become `to`, or undefined when it can. */
export const unsupported = (from: ConcreteFormat, to: ConcreteFormat): string | undefined => {
  if (from === to) return undefined
  if (from === "text") return "text rows have no question/answer split to convert"
  if (to === "preference") return "a preference row needs a rejected answer, which no other format has"
  if (from === "messages" && to === "text") return "messages need a tokenizer's chat template to become text; train on messages directly"
  return undefined
}

/** The question/answer of a row, or an error message when the row cannot be converted. */
const qaOf = (row: AnyRow, from: ConcreteFormat, o: ConvertOptions): Qa | string => {
  switch (from) {
    case "instruction": {
      const instruction = row.instruction as string
      const input = row.input as string | undefined
      return { prompt: instructionPrompt(instruction, input, o.template), answer: row.output as string, instruction, input }
    }
    case "prompt-completion":
      return { prompt: row.prompt as string, answer: row.completion as string, instruction: row.prompt as string }
    case "preference":
      return { prompt: row.prompt as string, answer: row.chosen as string, instruction: row.prompt as string }
    case "messages": {
      const msgs = (row.messages as Array<{ role: string; content: string }>).filter((m) => m.role !== "system")
      if (msgs.length !== 2 || msgs[0]!.role !== "user" || msgs[1]!.role !== "assistant") {
        return `only a single-turn conversation (user, assistant) converts; this one has roles ${msgs.map((m) => m.role).join(", ")}`
      }
      return { prompt: msgs[0]!.content, answer: msgs[1]!.content, instruction: msgs[0]!.content }
    }
    case "text":
      return "text rows have no question/answer split to convert"
  }
}

/** Converts one row; returns a string (the reason) when the row cannot be converted. */
export const convertRow = (row: AnyRow, from: ConcreteFormat, to: ConcreteFormat, o: ConvertOptions): AnyRow | string => {
  if (from === to) return row
  const qa = qaOf(row, from, o)
  if (typeof qa === "string") return qa
  switch (to) {
    case "text":
      // TRL joins prompt and completion as they are; a plain instruction gets a blank line before its answer
      return { text: from === "instruction" && o.template === "plain" ? `${qa.prompt}\n\n${qa.answer}` : qa.prompt + qa.answer }
    case "prompt-completion":
      return { prompt: qa.prompt, completion: qa.answer }
    case "instruction":
      return qa.input === undefined ? { instruction: qa.instruction, output: qa.answer } : { instruction: qa.instruction, input: qa.input, output: qa.answer }
    case "messages": {
      const user = from === "instruction" ? instructionPrompt(qa.instruction, qa.input, "plain") : qa.prompt
      const system = o.system !== undefined ? [{ role: "system", content: o.system }] : []
      return { messages: [...system, { role: "user", content: user }, { role: "assistant", content: qa.answer }] }
    }
    case "preference":
      return "a preference row needs a rejected answer"
  }
}

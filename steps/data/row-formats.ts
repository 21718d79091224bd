/**
 * The one definition of the row formats, for TypeScript and Python alike. The shapes are the
 * effect/Schema structs of `engine/rows.ts`; this module adds what a reader needs beyond a shape and
 * writes both into `python/anneal_worker/row_formats.json` (JSON Schema for the shapes), which the
 * Python workers read (`anneal_worker/row_formats.py`). A test fails when that file is stale; rewrite
 * it with `npx tsx scripts/gen-row-formats.ts`.
 *
 * Which format a row is: the first format in `precedence` whose required fields are all present. So a
 * row with `messages` and `prompt`/`completion` is a conversation (its other fields pass through), and a
 * row with `prompt`, `chosen` and `rejected` is a preference even though it has a prompt. The row is
 * then checked against that format's schema: `messages: []` is an invalid messages row, not some other
 * format.
 */
import * as path from "node:path"
import * as Schema from "effect/Schema"
import { projectRoot } from "../../engine/python.ts"
import { rowSchemas } from "../../engine/rows.ts"

export type ConcreteFormat = keyof typeof rowSchemas

/** Most specific first; a row is the first format whose required fields it has. */
export const precedence: ReadonlyArray<ConcreteFormat> = ["messages", "preference", "instruction", "prompt-completion", "text"]

/**
 * Field roles, by name (`messages` is every message's content, `messages:ROLE` those of one role):
 * - text: every text field (what cleaning rewrites and length rules measure);
 * - question: the prompt side (dedup keys, decontamination; Platypus: instruction + input);
 * - answer: the field compared for "keep the longer answer" and with a benchmark's answer;
 * - nonEmpty: fields that must hold text after cleaning (an instruction's input may be empty).
 */
export interface FieldRoles {
  readonly text: ReadonlyArray<string>
  readonly question: ReadonlyArray<string>
  readonly answer: string
  readonly nonEmpty: ReadonlyArray<string>
}

export const fieldRoles: Record<ConcreteFormat, FieldRoles> = {
  text: { text: ["text"], question: ["text"], answer: "text", nonEmpty: ["text"] },
  instruction: { text: ["instruction", "input", "output"], question: ["instruction", "input"], answer: "output", nonEmpty: ["instruction", "output"] },
  "prompt-completion": { text: ["prompt", "completion"], question: ["prompt"], answer: "completion", nonEmpty: ["prompt", "completion"] },
  messages: { text: ["messages"], question: ["messages:user"], answer: "messages:assistant", nonEmpty: ["messages"] },
  preference: { text: ["prompt", "chosen", "rejected"], question: ["prompt"], answer: "chosen", nonEmpty: ["prompt", "chosen", "rejected"] }
}

interface JsonSchemaObject {
  readonly required?: ReadonlyArray<string>
  readonly [k: string]: unknown
}

const jsonSchemaOf = (f: ConcreteFormat): JsonSchemaObject => Schema.toJsonSchemaDocument(rowSchemas[f]).schema as JsonSchemaObject

let identifying: Record<ConcreteFormat, ReadonlyArray<string>> | undefined
/**
 * The fields whose presence identifies a format: its schema's required fields. Worked out at the first
 * use, not when the module loads (every start of the CLI loads it; the JSON Schemas take a few ms).
 */
export const identifyingFields = (): Record<ConcreteFormat, ReadonlyArray<string>> =>
  (identifying ??= Object.fromEntries(precedence.map((f) => [f, jsonSchemaOf(f).required ?? []])) as Record<ConcreteFormat, ReadonlyArray<string>>)

/** The format a row's keys imply (see the module doc), or undefined when none fits. */
export const inferFormat = (row: Record<string, unknown>): ConcreteFormat | undefined => {
  const fields = identifyingFields()
  return precedence.find((f) => fields[f].every((k) => k in row))
}

/** Everything both languages need, as the JSON document shipped beside the Python code. */
export const rowFormatSpec = () => ({
  generatedBy: "steps/data/row-formats.ts from engine/rows.ts; regenerate with npx tsx scripts/gen-row-formats.ts",
  precedence,
  formats: Object.fromEntries(precedence.map((f) => [f, { identify: identifyingFields()[f], ...fieldRoles[f], schema: jsonSchemaOf(f) }]))
})

export const rowFormatSpecText = (): string => JSON.stringify(rowFormatSpec(), null, 2) + "\n"

export const rowFormatSpecFile = path.join(projectRoot, "python", "anneal_worker", "row_formats.json")
